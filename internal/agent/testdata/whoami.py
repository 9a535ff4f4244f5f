"""Calls STS GetCallerIdentity with whatever credentials botocore's default chain finds
(the agent, through IMDS or the container endpoint), then again after SLEEP seconds in the
same process, printing one JSON line per call: the caller ARN and the access key used."""
import json
import os
import sys
import time

import boto3

session = boto3.session.Session()
sts = session.client("sts", endpoint_url=os.environ["STS_URL"], region_name="us-east-1")
calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1
pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0
for i in range(calls):
    if i:
        time.sleep(pause)
    who = sts.get_caller_identity()
    key = session.get_credentials().get_frozen_credentials().access_key
    print(json.dumps({"arn": who["Arn"], "key": key}), flush=True)
