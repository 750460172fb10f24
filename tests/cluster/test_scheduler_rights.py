"""The fargate-scheduler with the chart's rights and nothing more: the ServiceAccount, ClusterRole and Role
that `helm template --set scheduler.enabled=true` renders are applied, and the scheduler runs with a token
of that ServiceAccount. It reads FargateProfile resources, watches the logging ConfigMap, binds pods with
EKS's annotations, refuses a pod (condition and event), and deletes the pods of a deleted profile."""

import json

import pytest
import yaml

from conftest import CHART, ENV, PROFILE_KEY, apply, delete_pods, ensure_namespace, helm, kjson, kubectl, pod, wait_until
from test_scheduler import Scheduler, events_of

RELEASE = NAMESPACE = "fw-rights"
PODS = "sched-rights"
NAME = f"{RELEASE}-fargate-webhook-scheduler"
RBAC = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def scheduler_rbac():
    # Virtual placement, as the scheduler below runs (it makes and removes nodes; with pool placement the
    # chart grants nodes read-only, and the real-node suite runs the chart's pool scheduler in a pod).
    rendered = helm("template", RELEASE, CHART, "-n", NAMESPACE, "--set", "store=kubernetes",
                    "--set", "scheduler.enabled=true", "--set", "scheduler.placement=virtual").stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    chosen = [d for d in docs if d["kind"] in RBAC
              and d["metadata"]["labels"].get("app.kubernetes.io/component") == "scheduler"]
    assert {d["kind"] for d in chosen} == RBAC, [d["kind"] for d in chosen]
    return chosen


def token_kubeconfig(path):
    token = kubectl("create", "token", NAME, "-n", NAMESPACE, "--duration", "1h").stdout.strip()
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "sa",
              "clusters": [{"name": "c", "cluster": {"server": ENV["APISERVER"],
                                                     "certificate-authority": ENV["CLUSTER_CA"]}}],
              "users": [{"name": "sa", "user": {"token": token}}],
              "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": NAMESPACE}}]}
    with open(path, "w") as f:
        json.dump(config, f)
    return path


@pytest.fixture(scope="module")
def scheduler(crd, tmp_path_factory):
    for ns in (NAMESPACE, PODS, "aws-observability"):
        ensure_namespace(ns)
    rbac = scheduler_rbac()
    for doc in rbac:
        apply(doc)
    apply({"apiVersion": "fargate-webhook.io/v1alpha1", "kind": "FargateProfile", "metadata": {"name": "rights"},
           "spec": {"podExecutionRoleArn": "arn:aws:iam::123456789012:role/fargate-pods",
                    "selectors": [{"namespace": PODS}]}})
    apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "aws-logging", "namespace": "aws-observability"},
           "data": {"output.conf": "[OUTPUT]\n    Name cloudwatch_logs\n    Match *\n"}})
    base = tmp_path_factory.mktemp("rights")
    kubeconfig = token_kubeconfig(str(base / "kubeconfig"))
    # The chart's arguments (templates/scheduler.yaml), with the ServiceAccount's token instead of a pod's.
    sched = Scheduler(str(base / "state"), "--store=kubernetes", f"--lock-name={RELEASE}-fargate-webhook-lock",
                      identity="rights-1", lease_name=NAME,
                      env={"KUBECONFIG": kubeconfig, "POD_NAMESPACE": NAMESPACE, "POD_NAME": "rights-1"})
    yield sched
    sched.stop()
    delete_pods(PODS)
    kubectl("delete", "fp", "rights", "--ignore-not-found")
    kubectl("delete", "configmap", "aws-logging", "-n", "aws-observability", "--ignore-not-found")
    for doc in rbac:
        kubectl("delete", doc["kind"], doc["metadata"]["name"], *(["-n", NAMESPACE] if "namespace" in doc["metadata"] else []),
                "--ignore-not-found")


def fargate_pod(name, **spec):
    body = pod(name, PODS, labels={PROFILE_KEY: "rights"}, schedulerName="fargate-scheduler", **spec)
    kubectl("create", "-f", "-", input=json.dumps(body))


def stored(name):
    return kjson("get", "pod", name, "-n", PODS)


def test_the_charts_rights_are_all_the_scheduler_needs(scheduler):
    # Bound with EKS's annotations (in the Binding), the logging ConfigMap seen through the watch.
    wait_until("the watch sees the logging ConfigMap",
               lambda: scheduler.metric("fargate_webhook_scheduler_logging_configmap") == 1, timeout=15)
    fargate_pod("logged")
    p = wait_until("logged bound", lambda: (lambda p: p if p["spec"].get("nodeName") else None)(stored("logged")), timeout=30)
    assert p["metadata"]["annotations"]["CapacityProvisioned"] == "0.25vCPU 0.5GB"
    assert p["metadata"]["annotations"]["Logging"] == "LoggingEnabled"
    assert kjson("get", "node", p["spec"]["nodeName"])["metadata"]["labels"]["eks.amazonaws.com/compute-type"] == "fargate"
    reasons = wait_until("its events", lambda: (lambda r: r if {"Scheduled", "LoggingEnabled"} <= set(r) else None)(
        {e["reason"] for e in events_of(PODS, "logged")}), timeout=15)
    assert "LoggingEnabled" in reasons

    # The ConfigMap goes: the watch (list and watch by name) tells the next binding.
    kubectl("delete", "configmap", "aws-logging", "-n", "aws-observability")
    wait_until("the watch sees it gone",
               lambda: scheduler.metric("fargate_webhook_scheduler_logging_configmap") == 0, timeout=15)
    fargate_pod("unlogged")
    p = wait_until("unlogged bound", lambda: (lambda p: p if p["spec"].get("nodeName") else None)(stored("unlogged")), timeout=30)
    assert p["metadata"]["annotations"]["Logging"] == "LoggingDisabled: LOGGING_CONFIGMAP_NOT_FOUND"

    # A pod Fargate cannot run: the condition (pods/status) and the event.
    fargate_pod("host-net", hostNetwork=True)

    def refused():
        conditions = [c for c in stored("host-net")["status"].get("conditions", []) if c["type"] == "PodScheduled"]
        notes = [e["note"] for e in events_of(PODS, "host-net") if e["reason"] == "FailedScheduling"]
        return (conditions, notes) if conditions and notes else None
    conditions, notes = wait_until("host-net refused", refused, timeout=30)
    assert conditions[0]["status"] == "False" and conditions[0]["reason"] == "POD_UNSUPPORTED_ON_FARGATE"
    assert notes[0].startswith("Pod not supported on Fargate:"), notes

    # The profile is deleted: its bound pods are deleted with it.
    kubectl("delete", "fp", "rights")

    def gone_or_going(name):
        r = kubectl("get", "pod", name, "-n", PODS, "-o", "json", check=False)
        return r.code != 0 or "deletionTimestamp" in json.loads(r.stdout)["metadata"]
    wait_until("the profile's pods deleted", lambda: gone_or_going("logged") and gone_or_going("unlogged"), timeout=30)

    # Nothing was refused to it on the way.
    log = scheduler.log()
    assert "forbidden" not in log.lower(), log
