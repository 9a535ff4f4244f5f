"""Drive Phantom's STS with botocore, as boto3 and the AWS CLI do.

Usage: botocore_sts.py ENDPOINT CA_FILE ALICE_KEY ALICE_SECRET BOB_KEY BOB_SECRET ROLE_ARN PARTNER_ARN
Prints one JSON object with what each call returned (no secrets) and exits 0, or raises.
"""
import json
import sys

import botocore.session
from botocore.exceptions import ClientError


def client(endpoint, ca, key, secret, token=None):
    s = botocore.session.Session()
    s.set_config_variable("config_file", "/dev/null")
    s.set_config_variable("credentials_file", "/dev/null")
    return s.create_client("sts", region_name="us-east-1", endpoint_url=endpoint, verify=ca,
                           aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token)


def error_of(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        return {"code": e.response["Error"]["Code"], "message": e.response["Error"]["Message"],
                "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
                "request_id": e.response["ResponseMetadata"].get("RequestId", "")}
    raise AssertionError("call succeeded: %r" % (kw,))


def main():
    endpoint, ca, akey, asecret, bkey, bsecret, role, partner = sys.argv[1:9]
    out = {}
    alice = client(endpoint, ca, akey, asecret)
    out["identity"] = {k: v for k, v in alice.get_caller_identity().items() if k != "ResponseMetadata"}

    r = alice.assume_role(RoleArn=role, RoleSessionName="botocore", DurationSeconds=900,
                          Tags=[{"Key": "team", "Value": "payments"}], TransitiveTagKeys=["team"],
                          SourceIdentity="alice", PolicyArns=[{"arn": "arn:aws:iam::123456789012:policy/ReadOnly"}],
                          Policy=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:*", "Resource": "*"}]}))
    c = r["Credentials"]
    out["assumed"] = {"arn": r["AssumedRoleUser"]["Arn"], "id": r["AssumedRoleUser"]["AssumedRoleId"],
                      "key_prefix": c["AccessKeyId"][:4], "expiration_tz": str(c["Expiration"].tzinfo),
                      "packed": r.get("PackedPolicySize"), "source_identity": r.get("SourceIdentity")}
    role_client = client(endpoint, ca, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    out["role_identity"] = role_client.get_caller_identity()["Arn"]

    t = alice.get_session_token(DurationSeconds=900)["Credentials"]
    out["session_identity"] = client(endpoint, ca, t["AccessKeyId"], t["SecretAccessKey"], t["SessionToken"]).get_caller_identity()["Arn"]

    bob = client(endpoint, ca, bkey, bsecret)
    out["denials"] = {
        "untrusted": error_of(bob.assume_role, RoleArn=role, RoleSessionName="bob"),
        "external_id": error_of(alice.assume_role, RoleArn=partner, RoleSessionName="pp", ExternalId="wrong-id"),
        "duration": error_of(alice.assume_role, RoleArn=role, RoleSessionName="pp", DurationSeconds=7200),
        "session_name": error_of(alice.assume_role, RoleArn=role, RoleSessionName="no/slash"),
        "policy": error_of(alice.assume_role, RoleArn=role, RoleSessionName="pp", Policy="{not json"),
        "unknown_key": error_of(client(endpoint, ca, "AKIAUNKNOWNUNKNOWN00", "x").get_caller_identity),
        "session_get_session_token": error_of(role_client.get_session_token),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
