"""boto3 against Phantom: STS with the phantom-demo profile of the AWS config phantom up
writes (its credentials are sessions of the Service-A role, from credential_process), then
the orders API, signed for execute-api by botocore.

    source phantom-data/demo.env && python3 examples/clients/boto3_client.py
"""
import os
import ssl
import sys
import urllib.error
import urllib.request

# Before the session is made: botocore reads AWS_CONFIG_FILE when it starts.
os.environ.setdefault("AWS_CONFIG_FILE", os.environ["PHANTOM_AWS_CONFIG"])

import boto3  # noqa: E402
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402

session = boto3.Session(profile_name="phantom-demo")
# The profile sends STS calls to Phantom's STS and trusts its CA (ca_bundle).
print("caller:", session.client("sts").get_caller_identity()["Arn"])

url = os.environ["PHANTOM_API_URL"]
req = AWSRequest(method="GET", url=url)
SigV4Auth(session.get_credentials(), "execute-api", session.region_name).add_auth(req)
tls = ssl.create_default_context(cafile=os.environ["AWS_CA_BUNDLE"])
try:
    with urllib.request.urlopen(urllib.request.Request(url, headers=dict(req.headers)), context=tls) as resp:
        print(resp.status, resp.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.headers.get("x-amzn-ErrorType"), e.read().decode())
    sys.exit(1)
