"""Failure injection (`serve --fault-injection`, `PUT /fault-injection`): code written against EKS — boto3's
waiters, the AWS CLI's `wait` — meets EKS's failures unchanged: a profile that ends CREATE_FAILED or
DELETE_FAILED with `health.issues`, slow transitions, and 409 while "the cluster has an update in progress"."""

import json
import time
import urllib.error
import urllib.request

import botocore.exceptions
import pytest

from conftest import CLUSTER
from test_eks_api import create_boto, create_cli, expect_cli_error


def put_faults(server, faults, method="PUT"):
    req = urllib.request.Request(f"{server.url}/fault-injection", data=json.dumps(faults).encode(), method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_off_by_default(fresh_server):
    server = fresh_server()
    with pytest.raises(urllib.error.HTTPError) as e:
        put_faults(server, {"rules": [{"profile": "*", "createFailure": {"code": "AccessDenied"}}]})
    assert e.value.code == 404
    assert e.value.headers["x-amzn-ErrorType"] == "UnknownOperationException"


def test_create_failed_makes_the_waiters_fail_as_against_aws(fresh_server):
    server = fresh_server("--fault-injection", "true", "--create-delay", "1s", "--delete-delay", "1s")
    answer = put_faults(server, {"rules": [
        {"profile": "doomed", "createFailure": {"code": "PodExecutionRoleAlreadyInUse"}, "createDelay": "2s",
         "deleteFailure": {"code": "InternalFailure", "message": "the Fargate infrastructure is unavailable"}},
    ]})
    assert answer["rules"][0]["profile"] == "doomed"
    client = server.client()
    created = client.create_fargate_profile(**create_boto("doomed", selectors=[{"namespace": "a"}]))
    assert created["fargateProfile"]["status"] == "CREATING"
    # boto3's waiter: a terminal failure on CREATE_FAILED, exactly as against EKS.
    with pytest.raises(botocore.exceptions.WaiterError) as e:
        client.get_waiter("fargate_profile_active").wait(
            clusterName=CLUSTER, fargateProfileName="doomed", WaiterConfig={"Delay": 1, "MaxAttempts": 20})
    assert "terminal failure state" in str(e.value) and "CREATE_FAILED" in str(e.value), str(e.value)
    described = client.describe_fargate_profile(clusterName=CLUSTER, fargateProfileName="doomed")["fargateProfile"]
    assert described["status"] == "CREATE_FAILED"
    assert described["health"]["issues"][0]["code"] == "PodExecutionRoleAlreadyInUse"
    assert described["health"]["issues"][0]["message"]
    # The CLI's wait fails the same way.
    waited = server.aws("wait", "fargate-profile-active", "--cluster-name", CLUSTER, "--fargate-profile-name", "doomed")
    assert waited.code == 255 and "Waiter FargateProfileActive failed" in waited.stderr, waited.stderr
    # A failed profile does not hold up others, and can be deleted: here that fails too.
    assert server.aws(*create_cli("fine", "--selectors", "namespace=b")).code == 0
    client.get_waiter("fargate_profile_active").wait(
        clusterName=CLUSTER, fargateProfileName="fine", WaiterConfig={"Delay": 1, "MaxAttempts": 20})
    deleted = client.delete_fargate_profile(clusterName=CLUSTER, fargateProfileName="doomed")
    assert deleted["fargateProfile"]["status"] == "DELETING"
    with pytest.raises(botocore.exceptions.WaiterError) as e:
        client.get_waiter("fargate_profile_deleted").wait(
            clusterName=CLUSTER, fargateProfileName="doomed", WaiterConfig={"Delay": 1, "MaxAttempts": 20})
    assert "DELETE_FAILED" in str(e.value), str(e.value)
    described = client.describe_fargate_profile(clusterName=CLUSTER, fargateProfileName="doomed")["fargateProfile"]
    assert described["health"]["issues"] == [{"code": "InternalFailure",
                                              "message": "the Fargate infrastructure is unavailable"}]
    # Cleared faults: the retried delete goes through.
    put_faults(server, {}, method="DELETE")
    client.delete_fargate_profile(clusterName=CLUSTER, fargateProfileName="doomed")
    client.get_waiter("fargate_profile_deleted").wait(
        clusterName=CLUSTER, fargateProfileName="doomed", WaiterConfig={"Delay": 1, "MaxAttempts": 20})


def test_slow_transitions_and_an_update_in_progress(fresh_server):
    server = fresh_server("--fault-injection", "true", "--create-delay", "1s", "--delete-delay", "1s")
    put_faults(server, {"rules": [{"profile": "*", "createDelay": "4s"}], "updateInProgressFor": "6s"})
    started = time.monotonic()
    expect_cli_error(
        server, create_cli("p", "--selectors", "namespace=a"), "CreateFargateProfile", "ResourceInUseException",
        "Cannot create Fargate Profile p because cluster fargate currently has an update in progress",
        boto=("create_fargate_profile", create_boto("p", selectors=[{"namespace": "a"}])), status=409)
    # A Terraform-style retry loop gets through once the window closes.
    client = server.client()
    while True:
        try:
            client.create_fargate_profile(**create_boto("p", selectors=[{"namespace": "a"}]))
            break
        except client.exceptions.ResourceInUseException:
            assert time.monotonic() - started < 15, "the update window never closed"
            time.sleep(0.5)
    assert time.monotonic() - started >= 5.5
    created = time.monotonic()
    client.get_waiter("fargate_profile_active").wait(
        clusterName=CLUSTER, fargateProfileName="p", WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    assert time.monotonic() - created >= 3.5, "the injected create delay holds"
