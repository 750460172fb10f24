"""The fargate-scheduler's node-pool placement against the real control plane: pods the webhook sends to
Fargate are bound to existing nodes chosen by a label selector (here two nodes kwok runs, as a kind worker
labelled for Fargate would be), spread by free room and never beyond a node's allocatable; a pod no pool
node can hold waits with a FailedScheduling event and is placed once room appears."""

import os

import pytest

from conftest import ROLE, apply, delete_pods, ensure_namespace, kjson, kubectl, register, start_webhook, unregister, wait_until
from test_scheduler import Scheduler, events_of

NAMESPACE = "sched-pool"
PROFILES = [{"fargateProfileName": "pool", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": NAMESPACE}]}]
POOL = ["pool-worker-1", "pool-worker-2"]


def pool_node(name, cpu, memory):
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"fargate-webhook.io/pool": "true", "kubernetes.io/os": "linux"}},
            "status": {"capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                       "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}}


@pytest.fixture(scope="module")
def pool():
    ensure_namespace(NAMESPACE)
    for name in POOL:
        kubectl("create", "-f", "-", input=__import__("json").dumps(pool_node(name, "2", "8Gi")))
    wait_until("the pool nodes Ready", lambda: all(
        any(c["type"] == "Ready" and c["status"] == "True"
            for c in kjson("get", "node", n, "-o", "json")["status"].get("conditions", [])) for n in POOL), timeout=30)
    hook = start_webhook(profiles=PROFILES)
    register(hook, name="fargate-webhook-pool-test")
    sched = Scheduler(os.path.join(hook.base, "state"), "--placement", "pool",
                      "--pool-selector", "fargate-webhook.io/pool=true", identity="pool-1", lease_name="pool-test")
    yield hook, sched
    sched.stop()
    unregister("fargate-webhook-pool-test")
    hook.stop()
    kubectl("delete", "deployment", "--all", "-n", NAMESPACE, "--wait=false", check=False)
    delete_pods(NAMESPACE)
    kubectl("delete", "node", *POOL, check=False)


def deploy(name, replicas, cpu):
    apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NAMESPACE},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                        {"name": "app", "image": "registry.example/app:1",
                         "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}]}}}})


def placed(name):
    return [p for p in kjson("get", "pods", "-n", NAMESPACE, "-l", f"app={name}", "-o", "json")["items"]
            if "deletionTimestamp" not in p["metadata"]]


def test_pods_spread_over_the_pool_within_its_capacity(pool):
    deploy("spread", 4, "250m")

    def running():
        items = placed("spread")
        return items if len(items) == 4 and all(p["status"].get("phase") == "Running" for p in items) else None
    items = wait_until("4 pods Running on the pool", running, timeout=60)
    per_node = {}
    for p in items:
        per_node.setdefault(p["spec"]["nodeName"], []).append(p)
        # Sized as on Fargate: 0.25 vCPU, 256 MiB + 256 MB → 0.5 GB.
        assert p["metadata"]["annotations"]["CapacityProvisioned"] == "0.25vCPU 0.5GB"
    assert set(per_node) == set(POOL) and all(len(v) == 2 for v in per_node.values()), \
        {k: len(v) for k, v in per_node.items()}
    assert not kjson("get", "nodes", "-l", "fargate-webhook.io/virtual-node=true", "-o", "json")["items"], \
        "no virtual nodes in pool mode"
    assert pool[1].metric("fargate_webhook_scheduler_pods_bound_total", placement="pool") >= 4


def test_a_pod_no_pool_node_can_hold_waits_until_there_is_room(pool):
    # 2 vCPU nodes hold 1.5 vCPU more at most after the first test's 0.5 each.
    deploy("big", 1, "1900m")
    wait_until("a FailedScheduling event for the big pod", lambda: any(
        e["reason"] == "FailedScheduling" and "nodes of the Fargate pool have room for 2vCPU 4GB" in e.get("note", "")
        for p in placed("big") for e in events_of(NAMESPACE, p["metadata"]["name"])), timeout=30)
    assert not any(p["spec"].get("nodeName") for p in placed("big"))
    # Room appears: the small pods go away, the big one is placed on the next try.
    kubectl("scale", "deployment", "spread", "-n", NAMESPACE, "--replicas", "0")
    wait_until("the big pod Running", lambda: [p for p in placed("big") if p["status"].get("phase") == "Running"],
               timeout=60)


def test_a_burst_fills_the_pool_exactly_and_never_beyond(pool):
    """Placements are decided from the caches plus the pods assumed but not yet seen bound, by several
    workers at once, with no lock held across the Binding: a burst of 20 pods of 0.25 vCPU onto two
    2-vCPU nodes binds 8 per node, and the 4 left wait."""
    kubectl("delete", "deployment", "--all", "-n", NAMESPACE, "--wait=false")
    wait_until("the earlier pods gone", lambda: not kjson("get", "pods", "-n", NAMESPACE, "-o", "json")["items"],
               timeout=60)
    deploy("burst", 20, "250m")

    def settled():
        items = placed("burst")
        bound = [p for p in items if p["spec"].get("nodeName")]
        return (items, bound) if len(items) == 20 and len(bound) == 16 else None
    items, bound = wait_until("16 of 20 pods bound", settled, timeout=60)
    per_node = {}
    for p in bound:
        per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
    assert per_node == {name: 8 for name in POOL}, per_node
    # And it stays so: the 4 others wait (a FailedScheduling each), none is bound later.
    waiting = [p["metadata"]["name"] for p in items if not p["spec"].get("nodeName")]
    wait_until("the waiting pods told why", lambda: all(any(
        e["reason"] == "FailedScheduling" and "nodes of the Fargate pool have room" in e.get("note", "")
        for e in events_of(NAMESPACE, name)) for name in waiting), timeout=30)
    assert len([p for p in placed("burst") if p["spec"].get("nodeName")]) == 16
