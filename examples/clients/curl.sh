#!/usr/bin/env bash
# curl (7.75 or later) signs with --aws-sigv4 "aws:amz:REGION:SERVICE"; the body of a POST
# is signed too, and a session's token goes in the x-amz-security-token header.
#
#   source phantom-data/demo.env && examples/clients/curl.sh
set -euo pipefail

sign=(--cacert "$AWS_CA_BUNDLE" --aws-sigv4 "aws:amz:$AWS_REGION:execute-api"
      --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY")
if [ -n "${AWS_SESSION_TOKEN:-}" ]; then
  sign+=(-H "x-amz-security-token: $AWS_SESSION_TOKEN")
fi

echo "# GET through the endpoint"
curl -sS --fail-with-body "${sign[@]}" "$PHANTOM_API_URL"
echo

echo "# POST through the endpoint"
curl -sS --fail-with-body "${sign[@]}" -H 'content-type: application/json' \
  --data '{"item": "book"}' "$PHANTOM_API_URL"
echo

echo "# the same key straight to the gateway, around the endpoint: refused"
curl -sS -o /dev/null -w '%{http_code}\n' "${sign[@]}" "https://$PHANTOM_GATEWAY_ADDR/prod/orders"
