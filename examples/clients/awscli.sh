#!/usr/bin/env bash
# The AWS CLI against Phantom's STS and findings API: the demo user's key from demo.env,
# then the phantom-demo profile of the AWS config phantom up writes (sessions of the
# Service-A role through credential_process, refreshed by the CLI itself).
#
#   source phantom-data/demo.env && examples/clients/awscli.sh
set -euo pipefail

echo "# who am I, with the demo user's long-term key"
aws sts get-caller-identity --endpoint-url "$PHANTOM_STS_URL" --query Arn --output text

echo "# who am I, with the phantom-demo profile (credential_process: phantom credentials)"
AWS_CONFIG_FILE="$PHANTOM_AWS_CONFIG" aws sts get-caller-identity --profile phantom-demo --query Arn --output text

echo "# a session of the role by hand: an ASIA... key and its token"
aws sts assume-role --role-arn "$PHANTOM_DEMO_ROLE_ARN" --role-session-name awscli-example \
  --endpoint-url "$PHANTOM_STS_URL" --query Credentials.AccessKeyId --output text

echo "# the detector's findings, through GuardDuty's API"
aws guardduty list-findings --detector-id phantom --endpoint-url "$PHANTOM_FINDINGS_URL" --output json
