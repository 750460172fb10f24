"""`scheduler --evict`: the pods of a deleted profile are removed through the Eviction API, so a
PodDisruptionBudget holds them until it allows their eviction (EKS deletes them regardless)."""

import os

import pytest

from conftest import ROLE, apply, aws_cli, delete_pods, ensure_namespace, kjson, kubectl, register, start_webhook, unregister, wait_until
from test_scheduler import Scheduler

NAMESPACE = "sched-evict"
PROFILES = [{"fargateProfileName": "guarded", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": NAMESPACE}]}]


@pytest.fixture(scope="module")
def evicting():
    ensure_namespace(NAMESPACE)
    hook = start_webhook("--delete-delay", "2s", profiles=PROFILES)
    register(hook, name="fargate-webhook-evict-test")
    sched = Scheduler(os.path.join(hook.base, "state"), "--evict", identity="evict-1", lease_name="evict-test")
    yield hook, sched
    sched.stop()
    unregister("fargate-webhook-evict-test")
    hook.stop()
    kubectl("delete", "deployment", "--all", "-n", NAMESPACE, "--wait=false", check=False)
    kubectl("delete", "pdb", "--all", "-n", NAMESPACE, check=False)
    delete_pods(NAMESPACE)


def bound_pods():
    return [p for p in kjson("get", "pods", "-n", NAMESPACE, "-l", "app=guarded", "-o", "json")["items"]
            if p["spec"].get("nodeName") and "deletionTimestamp" not in p["metadata"]]


def test_a_disruption_budget_holds_the_pods_of_a_deleted_profile_until_it_allows(evicting):
    hook, sched = evicting
    apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "guarded", "namespace": NAMESPACE},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "guarded"}},
                    "template": {"metadata": {"labels": {"app": "guarded"}},
                                 "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}}})
    apply({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guarded", "namespace": NAMESPACE},
           "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "guarded"}}}})
    wait_until("2 pods Running", lambda: len([p for p in bound_pods() if p["status"].get("phase") == "Running"]) == 2,
               timeout=60)
    wait_until("the budget sees 2 healthy pods", lambda: kjson("get", "pdb", "guarded", "-n", NAMESPACE, "-o", "json")
               .get("status", {}).get("currentHealthy") == 2, timeout=60)
    deleted = aws_cli(hook.api_url, "delete-fargate-profile", "--cluster-name", "fargate", "--fargate-profile-name", "guarded")
    assert deleted.code == 0, deleted.stderr
    # The budget allows no disruption: the pods stay, however often the scheduler tries.
    wait_until("an eviction refused", lambda: "eviction refused for now" in sched.log(), timeout=30)
    import time
    time.sleep(3)
    assert len(bound_pods()) == 2
    assert sched.metric("fargate_webhook_scheduler_pods_removed_total", action="evict") == 0
    # The budget goes: both are evicted on the next tries.
    kubectl("delete", "pdb", "guarded", "-n", NAMESPACE)
    wait_until("both pods evicted", lambda: not bound_pods(), timeout=30)
    assert sched.metric("fargate_webhook_scheduler_pods_removed_total", action="evict") == 2
