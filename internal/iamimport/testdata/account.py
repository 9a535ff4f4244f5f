"""Builds the import test account in an IAM endpoint with boto3, then prints what
`aws iam get-account-authorization-details` prints for it (every page, merged).

    python3 account.py ENDPOINT_URL > details.json

The account has users, groups and memberships, roles with trust policies, inline and
customer managed policies (one with two versions), AWS managed policies, permissions
boundaries, instance profiles, tags and a service-linked role: everything the importer
carries, and the few things it can only list. Run against a moto server by the Go test
(internal/iamimport); never against a real account.
"""
import json
import sys

import boto3

endpoint = sys.argv[1]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
account = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing").get_caller_identity()["Account"]
api = f"arn:aws:execute-api:us-east-1:{account}:a1b2c3d4e5"


def doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action, resource, **extra):
    return dict({"Effect": "Allow", "Action": action, "Resource": resource}, **extra)


def deny(action, resource, **extra):
    return dict({"Effect": "Deny", "Action": action, "Resource": resource}, **extra)


# Customer managed policies: one with a path and two versions (the second is the default),
# a boundary, one that denies.
read = iam.create_policy(PolicyName="ReadOrders", Path="/app/", Description="Read the orders API",
                         PolicyDocument=doc(allow("execute-api:Invoke", f"{api}/*/GET/orders")))["Policy"]["Arn"]
iam.create_policy_version(PolicyArn=read, SetAsDefault=True, PolicyDocument=doc(
    dict(allow("execute-api:Invoke", [f"{api}/*/GET/orders", f"{api}/*/GET/orders/*"]), Sid="ReadOrders")))
boundary = iam.create_policy(PolicyName="DeveloperBoundary", PolicyDocument=doc(
    allow(["execute-api:Invoke", "sts:AssumeRole", "sts:TagSession", "s3:GetObject"], "*"),
    dict(deny("iam:*", "*"), Sid="NoIAM")))["Policy"]["Arn"]
no_deletes = iam.create_policy(PolicyName="NoDeletes", PolicyDocument=doc(
    dict(deny("execute-api:Invoke", f"{api}/*/DELETE/*"), Sid="NoDeletes",
         Condition={"StringNotEquals": {"aws:PrincipalTag/team": "platform"}})))["Policy"]["Arn"]
# Attached to nothing: still carried, as IAM keeps it.
iam.create_policy(PolicyName="Unattached", PolicyDocument=doc(allow("s3:ListBucket", "arn:aws:s3:::reports")))

# Groups: developers (inline and managed), admins (an AWS managed policy), and an empty one.
iam.create_group(GroupName="developers", Path="/eng/")
iam.put_group_policy(GroupName="developers", PolicyName="assume-app", PolicyDocument=doc(
    allow("sts:AssumeRole", f"arn:aws:iam::{account}:role/app/*")))
iam.attach_group_policy(GroupName="developers", PolicyArn=read)
iam.create_group(GroupName="admins")
iam.attach_group_policy(GroupName="admins", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
iam.create_group(GroupName="auditors")

# Users.
iam.create_user(UserName="alice", Path="/eng/", Tags=[{"Key": "team", "Value": "payments"},
                                                      {"Key": "cost-center", "Value": "1234"}])
iam.add_user_to_group(GroupName="developers", UserName="alice")
iam.put_user_policy(UserName="alice", PolicyName="write-orders", PolicyDocument=doc(
    allow("execute-api:Invoke", f"{api}/prod/POST/orders",
          Condition={"Bool": {"aws:SecureTransport": "true"}, "IpAddress": {"aws:SourceIp": ["10.0.0.0/8"]}})))
# moto has no PutUserPermissionsBoundary: user boundaries are tested on testdata/documented.json.
iam.create_user(UserName="bob", Tags=[{"Key": "team", "Value": "équipe-ops"}])
iam.add_user_to_group(GroupName="developers", UserName="bob")
iam.add_user_to_group(GroupName="admins", UserName="bob")
iam.attach_user_policy(UserName="bob", PolicyArn=no_deletes)
iam.create_user(UserName="carol")
iam.attach_user_policy(UserName="carol", PolicyArn="arn:aws:iam::aws:policy/IAMUserChangePassword")

# Roles: one assumed by users (boundary, tags, 2h sessions), one for EC2 with an instance
# profile, one trusting another account with an external id, a service-linked role.
iam.create_role(RoleName="app", Path="/app/", Description="Service A", MaxSessionDuration=7200,
                Tags=[{"Key": "service", "Value": "service-a"}],
                PermissionsBoundary=boundary,
                AssumeRolePolicyDocument=doc({"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"],
                                              "Principal": {"AWS": [f"arn:aws:iam::{account}:user/eng/alice",
                                                                    f"arn:aws:iam::{account}:user/bob"]}}))
iam.put_role_policy(RoleName="app", PolicyName="invoke", PolicyDocument=doc(
    allow("execute-api:Invoke", f"{api}/*"),
    dict(deny("execute-api:Invoke", f"{api}/*/*/admin/*"), Sid="NoAdmin")))
iam.attach_role_policy(RoleName="app", PolicyArn=read)
iam.create_role(RoleName="worker", AssumeRolePolicyDocument=doc(
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}))
iam.attach_role_policy(RoleName="worker", PolicyArn="arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
iam.create_instance_profile(InstanceProfileName="worker", Tags=[{"Key": "fleet", "Value": "batch"}])
iam.add_role_to_instance_profile(InstanceProfileName="worker", RoleName="worker")
iam.create_role(RoleName="partner", AssumeRolePolicyDocument=doc(
    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"}, "Action": "sts:AssumeRole",
     "Condition": {"StringEquals": {"sts:ExternalId": "partner-7"}}}))
iam.put_role_policy(RoleName="partner", PolicyName="read", PolicyDocument=doc(
    allow("execute-api:Invoke", f"{api}/prod/GET/orders")))
iam.create_service_linked_role(AWSServiceName="elasticbeanstalk.amazonaws.com")

details = {}
for page in iam.get_paginator("get_account_authorization_details").paginate():
    page.pop("ResponseMetadata", None)
    page.pop("IsTruncated", None)
    page.pop("Marker", None)
    for k, v in page.items():
        details.setdefault(k, []).extend(v)
json.dump(details, sys.stdout, indent=2, sort_keys=True, default=str)
print()
