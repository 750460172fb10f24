"""The EKS Fargate-profile API against the real AWS CLI v1 and boto3, unchanged.

Every error case checks: the code, the HTTP status, the CLI's exit status 255 and its printed
`An error occurred (...)` line, and that the client sent exactly one request (no retries: a
client fault must never be answered with a 5xx), counted on the server's /metrics.
"""

import datetime
import re
import time

import botocore.exceptions
import pytest

from conftest import CLUSTER, PUBLIC_SUBNET, ROLE, SUBNET_A, SUBNET_B

ARN_RE = re.compile(
    r"^arn:aws:eks:us-west-2:012345678910:fargateprofile/fargate/(?P<name>[A-Za-z0-9_-]+)/"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
REFERENCE = "default-with-infrastructure-label"


def create_cli(name, *extra):
    return [
        "create-fargate-profile",
        "--cluster-name", CLUSTER,
        "--fargate-profile-name", name,
        "--pod-execution-role-arn", ROLE,
        *extra,
    ]


def create_boto(name, **extra):
    kwargs = dict(clusterName=CLUSTER, fargateProfileName=name, podExecutionRoleArn=ROLE)
    kwargs.update(extra)
    return kwargs


def expect_cli_error(server, cli_args, operation, code, message, boto=None, status=None):
    """The CLI fails with 255 and the EKS line, after exactly one request; boto3 sees the status."""
    before = server.api_requests(operation, code)
    result = server.aws(*cli_args)
    assert result.code == 255, (result.code, result.stdout, result.stderr)
    expected = f"An error occurred ({code}) when calling the {operation} operation: {message}"
    assert result.error_line() == expected, result.stderr
    assert server.api_requests(operation, code) == before + 1, "the CLI retried a client fault"
    if boto is not None:
        method, kwargs = boto
        client = server.client()
        with pytest.raises(botocore.exceptions.ClientError) as info:
            getattr(client, method)(**kwargs)
        error = info.value.response
        assert error["Error"]["Code"] == code
        assert error["Error"]["Message"] == message
        assert error["ResponseMetadata"]["HTTPStatusCode"] == status
        assert error["ResponseMetadata"]["RequestId"]
        assert error["ResponseMetadata"].get("RetryAttempts", 0) == 0
        assert server.api_requests(operation, code) == before + 2, "boto3 retried a client fault"


def wait_for(predicate, timeout=15):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_reference_example_walkthrough(fresh_server):
    server = fresh_server()
    before = time.time()
    # The CreateFargateProfile reference example, verbatim.
    result = server.aws(
        "create-fargate-profile",
        "--cluster-name", "fargate",
        "--fargate-profile-name", "default-with-infrastructure-label",
        "--pod-execution-role-arn", "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole",
        "--subnets", "subnet-0420a37ee456daf3f", "subnet-09a8afb8db4f02d21",
        "--selectors", "namespace=default,labels={infrastructure=fargate}",
        "--client-request-token", "e188d61d-73b7-493c-9cd8-e39f242957eb",
    )
    assert result.code == 0, result.stderr
    profile = result.json["fargateProfile"]
    assert profile["fargateProfileName"] == REFERENCE
    assert profile["status"] == "CREATING"
    assert profile["clusterName"] == "fargate"
    assert profile["podExecutionRoleArn"] == ROLE
    assert profile["subnets"] == [SUBNET_A, SUBNET_B]
    assert profile["selectors"] == [{"namespace": "default", "labels": {"infrastructure": "fargate"}}]
    assert profile["tags"] == {}
    assert ARN_RE.match(profile["fargateProfileArn"]).group("name") == REFERENCE
    # CLI v1 prints createdAt as received: epoch seconds with a fraction.
    assert isinstance(profile["createdAt"], (int, float))
    assert abs(profile["createdAt"] - before) < 60
    arn = profile["fargateProfileArn"]

    # The same command again (same token, same request): the original profile, nothing new.
    again = server.aws(
        "create-fargate-profile",
        "--cluster-name", "fargate",
        "--fargate-profile-name", "default-with-infrastructure-label",
        "--pod-execution-role-arn", "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole",
        "--subnets", "subnet-0420a37ee456daf3f", "subnet-09a8afb8db4f02d21",
        "--selectors", "namespace=default,labels={infrastructure=fargate}",
        "--client-request-token", "e188d61d-73b7-493c-9cd8-e39f242957eb",
    )
    assert again.code == 0, again.stderr
    assert again.json["fargateProfile"]["fargateProfileArn"] == arn

    # The waiter polls Describe until ACTIVE.
    waited = server.aws("wait", "fargate-profile-active", "--cluster-name", "fargate",
                        "--fargate-profile-name", REFERENCE)
    assert waited.code == 0, waited.stderr

    described = server.aws("describe-fargate-profile", "--cluster-name", "fargate",
                           "--fargate-profile-name", REFERENCE)
    assert described.code == 0, described.stderr
    active = described.json["fargateProfile"]
    assert active["status"] == "ACTIVE"
    assert active["fargateProfileArn"] == arn
    assert active["createdAt"] == profile["createdAt"]

    # A second profile, then the CLI's auto-pagination with one name per page.
    second = server.aws(*create_cli("second", "--selectors", "namespace=second"))
    assert second.code == 0, second.stderr
    assert second.json["fargateProfile"]["subnets"] == [SUBNET_A, SUBNET_B]  # the private default
    client = server.client()
    client.get_waiter("fargate_profile_active").wait(
        clusterName=CLUSTER, fargateProfileName="second", WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    pages_before = server.api_requests("ListFargateProfiles")
    listed = server.aws("list-fargate-profiles", "--cluster-name", "fargate", "--page-size", "1")
    assert listed.code == 0, listed.stderr
    assert listed.json == {"fargateProfileNames": [REFERENCE, "second"]}
    assert server.api_requests("ListFargateProfiles") == pages_before + 2
    first_item = server.aws("list-fargate-profiles", "--cluster-name", "fargate", "--max-items", "1")
    assert first_item.json["fargateProfileNames"] == [REFERENCE]
    rest = server.aws("list-fargate-profiles", "--cluster-name", "fargate",
                      "--starting-token", first_item.json["NextToken"])
    assert rest.json["fargateProfileNames"] == ["second"]

    # Delete, and the waiter polls until Describe answers ResourceNotFoundException.
    deleted = server.aws("delete-fargate-profile", "--cluster-name", "fargate",
                         "--fargate-profile-name", REFERENCE)
    assert deleted.code == 0, deleted.stderr
    assert deleted.json["fargateProfile"]["status"] == "DELETING"
    assert deleted.json["fargateProfile"]["fargateProfileArn"] == arn
    gone = server.aws("wait", "fargate-profile-deleted", "--cluster-name", "fargate",
                      "--fargate-profile-name", REFERENCE)
    assert gone.code == 0, gone.stderr
    expect_cli_error(
        server,
        ["describe-fargate-profile", "--cluster-name", "fargate", "--fargate-profile-name", REFERENCE],
        "DescribeFargateProfile", "ResourceNotFoundException",
        f"No Fargate Profile found with name: {REFERENCE}.",
        boto=("describe_fargate_profile", dict(clusterName=CLUSTER, fargateProfileName=REFERENCE)),
        status=404,
    )
    listed = server.aws("list-fargate-profiles", "--cluster-name", "fargate")
    assert listed.json == {"fargateProfileNames": ["second"]}


def test_boto3_paginators_waiters_and_timestamps(fresh_server):
    server = fresh_server("--create-delay", "0s", "--max-profiles", "20")
    client = server.client()
    names = ["p3", "p1", "p5", "p2", "p4"]
    for name in names:
        answer = client.create_fargate_profile(**create_boto(name, selectors=[{"namespace": name}]))
        assert answer["fargateProfile"]["status"] == "CREATING"
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
        # botocore parses createdAt as a timestamp: it must be epoch seconds, not milliseconds.
        created = answer["fargateProfile"]["createdAt"]
        assert isinstance(created, datetime.datetime)
        assert abs(created.timestamp() - time.time()) < 60
    paginator = client.get_paginator("list_fargate_profiles")
    pages = list(paginator.paginate(clusterName=CLUSTER, PaginationConfig={"PageSize": 2}))
    assert [p["fargateProfileNames"] for p in pages] == [["p1", "p2"], ["p3", "p4"], ["p5"]]
    assert "nextToken" not in pages[-1]
    result = paginator.paginate(clusterName=CLUSTER, PaginationConfig={"MaxItems": 3, "PageSize": 1}).build_full_result()
    assert result["fargateProfileNames"] == ["p1", "p2", "p3"]
    rest = paginator.paginate(
        clusterName=CLUSTER, PaginationConfig={"StartingToken": result["NextToken"]}).build_full_result()
    assert rest["fargateProfileNames"] == ["p4", "p5"]
    everything = paginator.paginate(clusterName=CLUSTER).build_full_result()
    assert everything["fargateProfileNames"] == sorted(names)

    client.get_waiter("fargate_profile_active").wait(
        clusterName=CLUSTER, fargateProfileName="p1", WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    deleted = client.delete_fargate_profile(clusterName=CLUSTER, fargateProfileName="p1")
    assert deleted["fargateProfile"]["status"] == "DELETING"
    client.get_waiter("fargate_profile_deleted").wait(
        clusterName=CLUSTER, fargateProfileName="p1", WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    assert client.list_fargate_profiles(clusterName=CLUSTER)["fargateProfileNames"] == ["p2", "p3", "p4", "p5"]


# (id, CLI arguments, operation, code, HTTP status, message, boto3 method and arguments)
NAMESPACE_RULE = ("can never match a Kubernetes namespace (at most 63 lowercase letters, digits and '-', "
                  "with the wildcards '*' and '?').")
NEWLINE_ROLE = "arn:aws:iam::012345678910:role/Pod\nExecution"

STATELESS_ERRORS = [
    ("namespace-of-10000-characters",
     create_cli("p", "--selectors", "namespace=" + "n" * 10000),
     "CreateFargateProfile", "InvalidParameterException", 400,
     f"Selector namespace '{'n' * 64}…' {NAMESPACE_RULE}",
     ("create_fargate_profile", create_boto("p", selectors=[{"namespace": "n" * 10000}]))),
    ("namespace-with-capitals",
     create_cli("p", "--selectors", "namespace=Default"),
     "CreateFargateProfile", "InvalidParameterException", 400,
     f"Selector namespace 'Default' {NAMESPACE_RULE}",
     ("create_fargate_profile", create_boto("p", selectors=[{"namespace": "Default"}]))),
    ("role-with-a-newline",
     ["create-fargate-profile", "--cluster-name", CLUSTER, "--fargate-profile-name", "p",
      "--pod-execution-role-arn", NEWLINE_ROLE, "--selectors", "namespace=a"],
     "CreateFargateProfile", "InvalidParameterException", 400,
     "Invalid podExecutionRoleArn: arn:aws:iam::012345678910:role/Pod\\nExecution",
     ("create_fargate_profile", dict(clusterName=CLUSTER, fargateProfileName="p", podExecutionRoleArn=NEWLINE_ROLE,
                                     selectors=[{"namespace": "a"}]))),
    ("six-selectors",
     create_cli("p", "--selectors", *[f"namespace=n{i}" for i in range(6)]),
     "CreateFargateProfile", "InvalidParameterException", 400,
     "Request contains more than 5 Selectors",
     ("create_fargate_profile", create_boto("p", selectors=[{"namespace": f"n{i}"} for i in range(6)]))),
    ("six-labels",
     create_cli("p", "--selectors", "namespace=a,labels={a=1,b=2,c=3,d=4,e=5,f=6}"),
     "CreateFargateProfile", "InvalidParameterException", 400,
     "Request contains Selector with more than 5 Label pairs",
     ("create_fargate_profile", create_boto("p", selectors=[{"namespace": "a", "labels": {k: "1" for k in "abcdef"}}]))),
    ("no-selector",
     create_cli("p"),
     "CreateFargateProfile", "InvalidParameterException", 400,
     "Fargate Profile requires at least one selector.",
     ("create_fargate_profile", create_boto("p"))),
    ("no-namespace",
     create_cli("p", "--selectors", "labels={a=b}"),
     "CreateFargateProfile", "InvalidParameterException", 400,
     "Fargate Profile must have at least one selector with at least one namespace value.",
     ("create_fargate_profile", create_boto("p", selectors=[{"labels": {"a": "b"}}]))),
    ("long-name",
     create_cli("n" * 101, "--selectors", "namespace=a"),
     "CreateFargateProfile", "InvalidParameterException", 400,
     "The Fargate profile name parameter should not be greater than 100 characters.",
     ("create_fargate_profile", create_boto("n" * 101, selectors=[{"namespace": "a"}]))),
    ("reserved-prefix",
     create_cli("eks-mine", "--selectors", "namespace=a"),
     "CreateFargateProfile", "InvalidParameterException", 400,
     "The fargate profile name starts with the reserved prefix: 'eks-'.",
     ("create_fargate_profile", create_boto("eks-mine", selectors=[{"namespace": "a"}]))),
    ("public-subnet",
     create_cli("p", "--selectors", "namespace=a", "--subnets", SUBNET_A, PUBLIC_SUBNET),
     "CreateFargateProfile", "InvalidParameterException", 400,
     f"Subnet {PUBLIC_SUBNET} provided in Fargate Profile is not a private subnet",
     ("create_fargate_profile", create_boto("p", selectors=[{"namespace": "a"}], subnets=[PUBLIC_SUBNET]))),
    ("unknown-subnet",
     create_cli("p", "--selectors", "namespace=a", "--subnets", "subnet-00000000000000000"),
     "CreateFargateProfile", "InvalidParameterException", 400,
     "Subnet subnet-00000000000000000 provided in Fargate Profile is not a subnet of cluster fargate",
     ("create_fargate_profile", create_boto("p", selectors=[{"namespace": "a"}], subnets=["subnet-00000000000000000"]))),
    ("bad-role",
     ["create-fargate-profile", "--cluster-name", CLUSTER, "--fargate-profile-name", "p",
      "--pod-execution-role-arn", "not-an-arn", "--selectors", "namespace=a"],
     "CreateFargateProfile", "InvalidParameterException", 400,
     "Invalid podExecutionRoleArn: not-an-arn",
     ("create_fargate_profile", dict(clusterName=CLUSTER, fargateProfileName="p", podExecutionRoleArn="not-an-arn",
                                     selectors=[{"namespace": "a"}]))),
    ("long-tag-key",
     create_cli("p", "--selectors", "namespace=a", "--tags", "k" * 129 + "=v"),
     "CreateFargateProfile", "InvalidParameterException", 400,
     f"Tag key '{'k' * 129}' must be 1 to 128 characters.",
     ("create_fargate_profile", create_boto("p", selectors=[{"namespace": "a"}], tags={"k" * 129: "v"}))),
    ("reserved-tag",
     create_cli("p", "--selectors", "namespace=a", "--tags", "aws:owner=me"),
     "CreateFargateProfile", "InvalidParameterException", 400,
     "Tag key 'aws:owner' uses the reserved prefix 'aws:'.",
     ("create_fargate_profile", create_boto("p", selectors=[{"namespace": "a"}], tags={"aws:owner": "me"}))),
    ("reserved-tag-value",
     create_cli("p", "--selectors", "namespace=a", "--tags", "owner=AWS:team"),
     "CreateFargateProfile", "InvalidParameterException", 400,
     "Tag value for key 'owner' uses the reserved prefix 'aws:'.",
     ("create_fargate_profile", create_boto("p", selectors=[{"namespace": "a"}], tags={"owner": "AWS:team"}))),
    ("create-unknown-cluster",
     ["create-fargate-profile", "--cluster-name", "nope", "--fargate-profile-name", "p",
      "--pod-execution-role-arn", ROLE, "--selectors", "namespace=a"],
     "CreateFargateProfile", "ResourceNotFoundException", 404,
     "No cluster found for name: nope.",
     ("create_fargate_profile", dict(clusterName="nope", fargateProfileName="p", podExecutionRoleArn=ROLE,
                                     selectors=[{"namespace": "a"}]))),
    ("describe-unknown-profile",
     ["describe-fargate-profile", "--cluster-name", CLUSTER, "--fargate-profile-name", "missing"],
     "DescribeFargateProfile", "ResourceNotFoundException", 404,
     "No Fargate Profile found with name: missing.",
     ("describe_fargate_profile", dict(clusterName=CLUSTER, fargateProfileName="missing"))),
    ("describe-unknown-cluster",
     ["describe-fargate-profile", "--cluster-name", "nope", "--fargate-profile-name", "p"],
     "DescribeFargateProfile", "ResourceNotFoundException", 404,
     "No cluster found for name: nope.",
     ("describe_fargate_profile", dict(clusterName="nope", fargateProfileName="p"))),
    ("delete-unknown-profile",
     ["delete-fargate-profile", "--cluster-name", CLUSTER, "--fargate-profile-name", "missing"],
     "DeleteFargateProfile", "ResourceNotFoundException", 404,
     "No Fargate Profile found with name: missing.",
     ("delete_fargate_profile", dict(clusterName=CLUSTER, fargateProfileName="missing"))),
    ("delete-unknown-cluster",
     ["delete-fargate-profile", "--cluster-name", "nope", "--fargate-profile-name", "p"],
     "DeleteFargateProfile", "ResourceNotFoundException", 404,
     "No cluster found for name: nope.",
     ("delete_fargate_profile", dict(clusterName="nope", fargateProfileName="p"))),
    ("list-unknown-cluster",
     ["list-fargate-profiles", "--cluster-name", "nope"],
     "ListFargateProfiles", "ResourceNotFoundException", 404,
     "No cluster found for name: nope.",
     ("list_fargate_profiles", dict(clusterName="nope"))),
    ("list-max-results-101",
     ["list-fargate-profiles", "--cluster-name", CLUSTER, "--max-results", "101"],
     "ListFargateProfiles", "InvalidParameterException", 400,
     "maxResults must be an integer from 1 to 100, got '101'.",
     ("list_fargate_profiles", dict(clusterName=CLUSTER, maxResults=101))),
    ("list-bad-next-token",
     ["list-fargate-profiles", "--cluster-name", CLUSTER, "--next-token", "not-a-token"],
     "ListFargateProfiles", "InvalidParameterException", 400,
     "The nextToken is not valid: use a token returned by a previous ListFargateProfiles call.",
     ("list_fargate_profiles", dict(clusterName=CLUSTER, nextToken="not-a-token"))),
    ("tag-unknown-arn",
     ["tag-resource", "--resource-arn",
      "arn:aws:eks:us-west-2:012345678910:fargateprofile/fargate/missing/00000000-0000-0000-0000-000000000000",
      "--tags", "a=b"],
     "TagResource", "NotFoundException", 404,
     "No Fargate Profile found with ARN: "
     "arn:aws:eks:us-west-2:012345678910:fargateprofile/fargate/missing/00000000-0000-0000-0000-000000000000.",
     ("tag_resource", dict(resourceArn="arn:aws:eks:us-west-2:012345678910:fargateprofile/fargate/missing/"
                                       "00000000-0000-0000-0000-000000000000", tags={"a": "b"}))),
    ("untag-bad-arn",
     ["untag-resource", "--resource-arn", "not-an-arn", "--tag-keys", "a"],
     "UntagResource", "BadRequestException", 400,
     "Invalid ARN: not-an-arn",
     ("untag_resource", dict(resourceArn="not-an-arn", tagKeys=["a"]))),
    ("list-tags-unknown-arn",
     ["list-tags-for-resource", "--resource-arn",
      "arn:aws:eks:us-west-2:012345678910:fargateprofile/fargate/x/00000000-0000-0000-0000-000000000000"],
     "ListTagsForResource", "NotFoundException", 404,
     "No Fargate Profile found with ARN: "
     "arn:aws:eks:us-west-2:012345678910:fargateprofile/fargate/x/00000000-0000-0000-0000-000000000000.",
     ("list_tags_for_resource", dict(resourceArn="arn:aws:eks:us-west-2:012345678910:fargateprofile/fargate/x/"
                                                 "00000000-0000-0000-0000-000000000000"))),
]


@pytest.mark.parametrize(
    "cli_args,operation,code,status,message,boto",
    [case[1:] for case in STATELESS_ERRORS],
    ids=[case[0] for case in STATELESS_ERRORS],
)
def test_client_faults(server, cli_args, operation, code, status, message, boto):
    expect_cli_error(server, cli_args, operation, code, message, boto=boto, status=status)
    # Nothing was created by any of them.
    assert server.client().list_fargate_profiles(clusterName=CLUSTER)["fargateProfileNames"] == []


def test_conflicts_quota_and_token_reuse(fresh_server):
    # Each CLI call starts a Python interpreter (about 1 s on a loaded 2-core machine): the
    # transitions must outlast the five calls made while "first" must still be CREATING.
    server = fresh_server("--create-delay", "10s", "--delete-delay", "10s", "--max-profiles", "2")
    created = server.aws(*create_cli("first", "--selectors", "namespace=a", "--client-request-token", "tok-1"))
    assert created.code == 0, created.stderr
    expect_cli_error(
        server, create_cli("first", "--selectors", "namespace=a"),
        "CreateFargateProfile", "ResourceInUseException",
        "A Fargate Profile already exists with this name in this cluster.",
        boto=("create_fargate_profile", create_boto("first", selectors=[{"namespace": "a"}])), status=409)
    expect_cli_error(
        server, create_cli("second", "--selectors", "namespace=b"),
        "CreateFargateProfile", "ResourceInUseException",
        "Cannot create Fargate Profile second because cluster fargate currently has Fargate profile first in status CREATING",
        boto=("create_fargate_profile", create_boto("second", selectors=[{"namespace": "b"}])), status=409)
    expect_cli_error(
        server, ["delete-fargate-profile", "--cluster-name", CLUSTER, "--fargate-profile-name", "first"],
        "DeleteFargateProfile", "InvalidRequestException",
        "Fargate Profile is currently not in Active State.",
        boto=("delete_fargate_profile", dict(clusterName=CLUSTER, fargateProfileName="first")), status=400)
    # The same token with a different request: 400, nothing created.
    expect_cli_error(
        server, create_cli("other", "--selectors", "namespace=a", "--client-request-token", "tok-1"),
        "CreateFargateProfile", "InvalidParameterException",
        "The client request token tok-1 was already used with a different request.",
        boto=("create_fargate_profile", create_boto("other", selectors=[{"namespace": "a"}], clientRequestToken="tok-1")),
        status=400)
    # The same token with the same request: the original.
    replay = server.aws(*create_cli("first", "--selectors", "namespace=a", "--client-request-token", "tok-1"))
    assert replay.code == 0, replay.stderr
    assert replay.json["fargateProfile"]["fargateProfileArn"] == created.json["fargateProfile"]["fargateProfileArn"]

    assert server.aws("wait", "fargate-profile-active", "--cluster-name", CLUSTER,
                      "--fargate-profile-name", "first").code == 0
    assert server.aws(*create_cli("second", "--selectors", "namespace=b")).code == 0
    server.client().get_waiter("fargate_profile_active").wait(
        clusterName=CLUSTER, fargateProfileName="second", WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    expect_cli_error(
        server, create_cli("third", "--selectors", "namespace=c"),
        "CreateFargateProfile", "ResourceLimitExceededException",
        "Fargate Profile limit exceeded for cluster.",
        boto=("create_fargate_profile", create_boto("third", selectors=[{"namespace": "c"}])), status=400)

    assert server.aws("delete-fargate-profile", "--cluster-name", CLUSTER, "--fargate-profile-name", "first").code == 0
    expect_cli_error(
        server, ["delete-fargate-profile", "--cluster-name", CLUSTER, "--fargate-profile-name", "second"],
        "DeleteFargateProfile", "ResourceInUseException",
        "Cannot Delete Fargate Profile second because cluster fargate currently has Fargate profile first in status DELETING",
        boto=("delete_fargate_profile", dict(clusterName=CLUSTER, fargateProfileName="second")), status=409)
    # A retried delete of the profile being deleted: 400, as real EKS answers.
    expect_cli_error(
        server, ["delete-fargate-profile", "--cluster-name", CLUSTER, "--fargate-profile-name", "first"],
        "DeleteFargateProfile", "InvalidRequestException",
        "Fargate Profile is currently not in Active State.",
        boto=("delete_fargate_profile", dict(clusterName=CLUSTER, fargateProfileName="first")), status=400)
    assert server.client().list_fargate_profiles(clusterName=CLUSTER)["fargateProfileNames"] == ["first", "second"]


def test_tags_with_the_cli(fresh_server):
    server = fresh_server("--create-delay", "0s")
    created = server.aws(*create_cli("tagged", "--selectors", "namespace=a", "--tags", "team=a,env=dev"))
    assert created.code == 0, created.stderr
    assert created.json["fargateProfile"]["tags"] == {"team": "a", "env": "dev"}
    arn = created.json["fargateProfile"]["fargateProfileArn"]
    assert server.aws("tag-resource", "--resource-arn", arn, "--tags", "env=prod,owner=me").code == 0
    listed = server.aws("list-tags-for-resource", "--resource-arn", arn)
    assert listed.json == {"tags": {"team": "a", "env": "prod", "owner": "me"}}
    assert server.aws("untag-resource", "--resource-arn", arn, "--tag-keys", "team", "owner").code == 0
    assert server.client().list_tags_for_resource(resourceArn=arn)["tags"] == {"env": "prod"}
    described = server.aws("describe-fargate-profile", "--cluster-name", CLUSTER, "--fargate-profile-name", "tagged")
    assert described.json["fargateProfile"]["tags"] == {"env": "prod"}
    expect_cli_error(
        server, ["tag-resource", "--resource-arn", arn, "--tags", "aws:x=y"],
        "TagResource", "BadRequestException", "Tag key 'aws:x' uses the reserved prefix 'aws:'.",
        boto=("tag_resource", dict(resourceArn=arn, tags={"aws:x": "y"})), status=400)


def test_sigv4_verification(fresh_server):
    server = fresh_server("--sigv4-key", "AKIDEXAMPLE:secret", "--create-delay", "0s")
    ok = dict(access_key="AKIDEXAMPLE", secret_key="secret")
    listed = server.aws("list-fargate-profiles", "--cluster-name", CLUSTER, **ok)
    assert listed.code == 0, listed.stderr
    # A POST with a body, and an ARN percent-encoded in the path (signed double-encoded).
    created = server.aws(*create_cli("signed", "--selectors", "namespace=a"), **ok)
    assert created.code == 0, created.stderr
    arn = created.json["fargateProfile"]["fargateProfileArn"]
    assert server.aws("tag-resource", "--resource-arn", arn, "--tags", "a=b", **ok).code == 0
    assert server.aws("untag-resource", "--resource-arn", arn, "--tag-keys", "a", **ok).code == 0
    assert server.aws("list-fargate-profiles", "--cluster-name", CLUSTER, "--max-results", "5", **ok).code == 0
    good = server.client(access_key="AKIDEXAMPLE", secret_key="secret")
    assert good.describe_fargate_profile(clusterName=CLUSTER, fargateProfileName="signed")["fargateProfile"]["status"]

    # The right key with the wrong secret.
    before = server.api_requests("ListFargateProfiles", "InvalidSignatureException")
    bad = server.aws("list-fargate-profiles", "--cluster-name", CLUSTER, access_key="AKIDEXAMPLE", secret_key="wrong")
    assert bad.code == 255
    assert bad.error_line().startswith(
        "An error occurred (InvalidSignatureException) when calling the ListFargateProfiles operation: "
        "The request signature we calculated does not match the signature you provided."), bad.stderr
    assert server.api_requests("ListFargateProfiles", "InvalidSignatureException") == before + 1
    with pytest.raises(botocore.exceptions.ClientError) as info:
        server.client(access_key="AKIDEXAMPLE", secret_key="wrong").list_fargate_profiles(clusterName=CLUSTER)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"

    # A key the server does not know (the usual dummy keys).
    unknown = server.aws("list-fargate-profiles", "--cluster-name", CLUSTER)
    assert unknown.code == 255
    assert unknown.error_line() == (
        "An error occurred (AccessDeniedException) when calling the ListFargateProfiles operation: "
        "The security token included in the request is invalid."), unknown.stderr
