"""`serve --store kubernetes` on real etcd: three replicas (processes) share FargateProfile resources and
the coordination ConfigMap, driven by the real AWS CLI and boto3 through different replicas."""

import datetime
import json
import random
import signal
import threading
import time

import botocore.exceptions
import pytest

from conftest import (
    ENV, ROLE, aws_cli, eks_client, ensure_namespace, kjson, kubectl, start_webhook, wait_until,
)

LOCK_NS = "fw-store"
MAX_PROFILES = 10


def kube_replica(delay="1s"):
    return start_webhook("--store", "kubernetes", "--create-delay", delay, "--delete-delay", delay,
                         env={"KUBECONFIG": ENV["KUBECONFIG"], "POD_NAMESPACE": LOCK_NS})


@pytest.fixture(scope="module")
def replicas(crd):
    ensure_namespace(LOCK_NS)
    kubectl("delete", "fp", "--all", "--wait=true", "--timeout=60s")
    rs = [kube_replica() for _ in range(3)]
    yield rs
    for r in rs:
        r.stop()
    kubectl("delete", "fp", "--all", "--wait=false")


def effective_status(item):
    """The lifecycle the store reads from a resource: its status, else the status it was created with."""
    status = (item.get("status") or {}).get("status")
    if status:
        return status
    initial = item["metadata"].get("annotations", {}).get("fargate-webhook.io/initial-status")
    return json.loads(initial).get("status") if initial else "ACTIVE"


def time_of(item):
    return datetime.datetime.fromisoformat(item["status"]["createdAt"].replace("Z", "+00:00")).timestamp()


def stored_profiles():
    return {i["metadata"]["name"]: i for i in kjson("get", "fp")["items"]}


def status_of(replica, name):
    try:
        return eks_client(replica.api_url).describe_fargate_profile(
            clusterName="fargate", fargateProfileName=name)["fargateProfile"]["status"]
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "ResourceNotFoundException", e
        return None


def delete_all(replicas):
    """Delete every profile through the API, one at a time (the rule), and wait until all are gone."""
    for name in list(stored_profiles()):
        def try_delete(name=name):
            try:
                eks_client(replicas[0].api_url).delete_fargate_profile(clusterName="fargate", fargateProfileName=name)
                return True
            except botocore.exceptions.ClientError as e:
                code = e.response["Error"]["Code"]
                if code == "ResourceNotFoundException":
                    return True
                assert code in ("ResourceInUseException", "InvalidRequestException"), e
                return False
        wait_until(f"delete of {name} accepted", try_delete, timeout=60, interval=0.3)
    wait_until("all profiles gone", lambda: not stored_profiles(), timeout=60, interval=0.3)


def test_aws_cli_through_different_replicas(replicas):
    r0, r1, r2 = replicas
    created = aws_cli(r0.api_url, "create-fargate-profile", "--cluster-name", "fargate",
                      "--fargate-profile-name", "cli-web", "--pod-execution-role-arn", ROLE,
                      "--selectors", "namespace=web,labels={infrastructure=fargate}")
    assert created.code == 0, created.stderr
    arn = created.json["fargateProfile"]["fargateProfileArn"]
    assert created.json["fargateProfile"]["status"] == "CREATING"
    described = aws_cli(r1.api_url, "describe-fargate-profile", "--cluster-name", "fargate",
                        "--fargate-profile-name", "cli-web")
    assert described.code == 0 and described.json["fargateProfile"]["fargateProfileArn"] == arn
    wait_until("cli-web ACTIVE on r2", lambda: status_of(r2, "cli-web") == "ACTIVE", timeout=20)
    listed = aws_cli(r2.api_url, "list-fargate-profiles", "--cluster-name", "fargate")
    assert listed.code == 0 and "cli-web" in listed.json["fargateProfileNames"]
    # What the apiserver stored: the EKS shape in spec, the lifecycle in status.
    stored = kjson("get", "fp", "cli-web")
    assert stored["spec"]["selectors"] == [{"namespace": "web", "labels": {"infrastructure": "fargate"}}]
    assert stored["status"]["status"] == "ACTIVE" and stored["status"]["fargateProfileArn"] == arn
    # Every replica's webhook matches with it.
    for r in replicas:
        patch = wait_until("the replica matching cli-web", lambda r=r: r.review(
            {"metadata": {"name": "p", "namespace": "web", "labels": {"infrastructure": "fargate"}},
             "spec": {"containers": [{"name": "c", "image": "i"}]}}), timeout=10)
        assert {"op": "add", "path": "/metadata/labels/eks.amazonaws.com~1fargate-profile", "value": "cli-web"} in patch
    deleted = aws_cli(r1.api_url, "delete-fargate-profile", "--cluster-name", "fargate", "--fargate-profile-name", "cli-web")
    assert deleted.code == 0 and deleted.json["fargateProfile"]["status"] == "DELETING", deleted.stderr
    gone = aws_cli(r0.api_url, "wait", "fargate-profile-deleted", "--cluster-name", "fargate",
                   "--fargate-profile-name", "cli-web")
    assert gone.code == 0, gone.stderr
    wait_until("cli-web removed from etcd", lambda: "cli-web" not in stored_profiles(), timeout=20)


def test_concurrent_creates_keep_the_rules_cluster_wide(replicas):
    delete_all(replicas)
    observed = {"max_transitioning": 0, "max_total": 0, "samples": 0}
    stop = threading.Event()

    def observe():
        while not stop.is_set():
            items = stored_profiles().values()
            moving = sum(1 for i in items if effective_status(i) in ("CREATING", "DELETING"))
            observed["max_transitioning"] = max(observed["max_transitioning"], moving)
            observed["max_total"] = max(observed["max_total"], len(items))
            observed["samples"] += 1

    results = {}

    def creator(i):
        client = eks_client(replicas[i % 3].api_url)
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                client.create_fargate_profile(
                    clusterName="fargate", fargateProfileName=f"c-{i:02d}", podExecutionRoleArn=ROLE,
                    selectors=[{"namespace": f"ns-{i}"}], clientRequestToken=f"token-{i:02d}")
                results[i] = "created"
                return
            except botocore.exceptions.ClientError as e:
                code = e.response["Error"]["Code"]
                if code == "ResourceInUseException":  # another profile is CREATING: retry, as Terraform does
                    time.sleep(random.uniform(0.05, 0.3))
                    continue
                results[i] = code
                return
        results[i] = "timeout"

    watcher = threading.Thread(target=observe)
    watcher.start()
    threads = [threading.Thread(target=creator, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_until("no profile CREATING", lambda: all(effective_status(i) == "ACTIVE"
                                                  for i in stored_profiles().values()), timeout=30)
    stop.set()
    watcher.join()

    created = sorted(i for i, r in results.items() if r == "created")
    assert len(created) == MAX_PROFILES, results
    assert all(r == "ResourceLimitExceededException" for i, r in results.items() if r != "created"), results
    assert len(stored_profiles()) == MAX_PROFILES
    assert observed["samples"] > 10, observed
    assert observed["max_transitioning"] <= 1, observed
    assert observed["max_total"] <= MAX_PROFILES, observed
    # Sampling can miss a short overlap; the creation times cannot: each create was accepted only once
    # the previous profile had spent its create delay (1 s) CREATING. `createdAt` is stamped when the
    # request arrives, before it queues behind the replica's other writers, so allow half of it.
    times = sorted(float(time_of(i)) for i in stored_profiles().values())
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.5, gaps

    # A reused clientRequestToken is honoured on every replica: same request → the original profile.
    name = f"c-{created[0]:02d}"
    original = kjson("get", "fp", name)["status"]["fargateProfileArn"]
    for r in replicas:
        again = eks_client(r.api_url).create_fargate_profile(
            clusterName="fargate", fargateProfileName=name, podExecutionRoleArn=ROLE,
            selectors=[{"namespace": f"ns-{created[0]}"}], clientRequestToken=f"token-{created[0]:02d}")
        assert again["fargateProfile"]["fargateProfileArn"] == original
        with pytest.raises(botocore.exceptions.ClientError) as e:
            eks_client(r.api_url).create_fargate_profile(
                clusterName="fargate", fargateProfileName=name, podExecutionRoleArn=ROLE,
                selectors=[{"namespace": "another"}], clientRequestToken=f"token-{created[0]:02d}")
        assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    assert len(stored_profiles()) == MAX_PROFILES
    delete_all(replicas)


def test_kill_9_mid_create_and_mid_delete(replicas):
    delete_all(replicas)
    victim = kube_replica(delay="3s")
    try:
        eks_client(victim.api_url).create_fargate_profile(
            clusterName="fargate", fargateProfileName="survivor", podExecutionRoleArn=ROLE,
            selectors=[{"namespace": "survivor"}])
        victim.stop(signal.SIGKILL)
        assert status_of(replicas[0], "survivor") == "CREATING"
        # Another replica's sweep takes over the transition; nothing stays CREATING.
        wait_until("survivor ACTIVE after the kill", lambda: status_of(replicas[1], "survivor") == "ACTIVE", timeout=30)

        victim.start()
        eks_client(victim.api_url).delete_fargate_profile(clusterName="fargate", fargateProfileName="survivor")
        victim.stop(signal.SIGKILL)
        assert status_of(replicas[2], "survivor") == "DELETING"
        wait_until("survivor gone after the kill", lambda: status_of(replicas[2], "survivor") is None, timeout=30)
        wait_until("survivor removed from etcd", lambda: "survivor" not in stored_profiles(), timeout=20)
        # And the cluster accepts the next create at once: nothing is left holding the lock.
        eks_client(replicas[0].api_url).create_fargate_profile(
            clusterName="fargate", fargateProfileName="next", podExecutionRoleArn=ROLE, selectors=[{"namespace": "n"}])
        wait_until("next ACTIVE", lambda: status_of(replicas[0], "next") == "ACTIVE", timeout=20)
    finally:
        victim.stop(signal.SIGKILL)
    delete_all(replicas)


def test_kubectl_apply_and_delete_reach_every_replica(replicas):
    pod = {"metadata": {"name": "p", "namespace": "gitops", "labels": {"app": "x"}},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    for r in replicas:
        assert r.review(pod) == []
    kubectl("apply", "-f", "-", input="""
apiVersion: fargate-webhook.io/v1alpha1
kind: FargateProfile
metadata: {name: gitops}
spec:
  podExecutionRoleArn: arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole
  selectors: [{namespace: gitops}]
""")
    for r in replicas:
        patch = wait_until("the replica matching gitops", lambda r=r: r.review(pod), timeout=10)
        assert {"op": "replace", "path": "/spec/schedulerName", "value": "fargate-scheduler"} in patch or \
            {"op": "add", "path": "/spec/schedulerName", "value": "fargate-scheduler"} in patch, patch
    wait_until("status ACTIVE written back", lambda: (kjson("get", "fp", "gitops").get("status") or {}).get("status") == "ACTIVE")
    kubectl("delete", "fp", "gitops", "--timeout=30s")
    for r in replicas:
        wait_until("the replica no longer matching gitops", lambda r=r: r.review(pod) == [], timeout=10)
