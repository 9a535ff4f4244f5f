"""Service A on the demo node: a workload with no keys of its own. botocore's default
credential chain finds the node's role session at the credential agent (IMDSv2 at
AWS_EC2_METADATA_SERVICE_ENDPOINT, or container credentials at
AWS_CONTAINER_CREDENTIALS_FULL_URI), the orders API call is signed with SigV4, and
everything goes out through the egress proxy (HTTPS_PROXY), which lets the node reach the
orders API and nothing else. The API is called by its name, PHANTOM_NODE_API_URL
(a1b2c3d4e5.execute-api.us-east-1.amazonaws.com): the proxy resolves it to the endpoint,
passes the tunnel only because the TLS server name names an API the node may call, and the
endpoint binds the connection to that API.

    source phantom-data/demo.env
    env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \\
        AWS_EC2_METADATA_SERVICE_ENDPOINT="$PHANTOM_IMDS_ENDPOINT" HTTPS_PROXY="$PHANTOM_EGRESS_PROXY" \\
        python3 examples/clients/service_a.py
"""
import os
import sys

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ProxyConnectionError
from botocore.httpsession import URLLib3Session
from botocore.utils import get_environ_proxies

session = boto3.Session()
creds = session.get_credentials()
if creds is None:
    sys.exit("no credentials: set AWS_EC2_METADATA_SERVICE_ENDPOINT to the agent (PHANTOM_IMDS_ENDPOINT)")
frozen = creds.get_frozen_credentials()
print("credentials:", creds.method, frozen.access_key)


def send(url, sign):
    req = AWSRequest(method="GET", url=url)
    if sign:
        SigV4Auth(frozen, "execute-api", session.region_name).add_auth(req)
    http = URLLib3Session(verify=os.environ["AWS_CA_BUNDLE"], proxies=get_environ_proxies(url))
    return http.send(req.prepare())


r = send(os.environ["PHANTOM_NODE_API_URL"], sign=True)
print("orders API:", r.status_code, r.content.decode().strip())
try:
    other = send("https://example.com/", sign=False)
    print("example.com:", other.status_code, "(the egress proxy should have refused it)")
    sys.exit(1)
except ProxyConnectionError:
    print("example.com: refused by the egress proxy")
sys.exit(0 if r.status_code == 200 else 1)
