"""The fargate-scheduler against the real control plane, kwok acting as the kubelet of its virtual nodes:
pods created by a Deployment go through the webhook (registered with the apiserver), are placed on
`fargate-ip-...` nodes of their own and reach Running; pods Fargate cannot run get EKS's FailedScheduling
text; a profile being deleted takes its pods with it; a kill -9 loses nothing; two replicas never
double-bind. Everything asserted is what the apiserver stored."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import (
    ENV, PROFILE_KEY, ROLE, Process, apply, aws_cli, delete_pods, ensure_namespace, free_port, http_ok, http_text,
    kjson, kubectl, metric_sum, register, start_webhook, unregister, wait_until,
)

REGION = "us-west-2"
NODE_NAME = re.compile(r"^fargate-ip-10-\d+-\d+-\d+\.us-west-2\.compute\.internal$")
PROFILES = [
    {"fargateProfileName": "apps", "podExecutionRoleArn": ROLE,
     "subnets": ["subnet-0420a37ee456daf3f", "subnet-09a8afb8db4f02d21"], "selectors": [{"namespace": "sched-apps"}]},
    # Both select sched-move; the tie-break sends pods to a-old until it is deleted.
    {"fargateProfileName": "a-old", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "sched-move"}]},
    {"fargateProfileName": "b-new", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "sched-move"}]},
]
NAMESPACES = ["sched-apps", "sched-move", "sched-bad", "sched-offline", "sched-daemon"] + [f"sched-five-{i}" for i in range(5)]
PROFILES.append({"fargateProfileName": "bad", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "sched-bad"}]})


class Scheduler(Process):
    """A `fargate-webhook scheduler` process reading the webhook's file store (or what `extra` says);
    `env` is added to its environment (another KUBECONFIG, POD_NAMESPACE)."""

    def __init__(self, state_dir, *extra, identity="sched-1", lease_name="fargate-scheduler-test", env=None):
        self.port = free_port()
        super().__init__(
            [os.environ["FARGATE_WEBHOOK_BIN"], "scheduler", "--state-dir", state_dir,
             "--metrics-addr", f"127.0.0.1:{self.port}", "--identity", identity,
             "--lease-name", lease_name, "--lease-duration", "3s", "--retry-interval", "1s",
             "--fault-injection", *extra],
            os.path.join(os.path.dirname(state_dir), f"scheduler-{identity}.log"),
            env={"KUBECONFIG": ENV["KUBECONFIG"], "RUST_LOG": "fargate_webhook=info", **(env or {})},
            name=f"the scheduler {identity}")
        self.start()

    def start(self):
        super().start()
        self.wait_ready("the scheduler's /readyz", self.ready, timeout=30)
        return self

    def ready(self):
        return http_ok(f"http://127.0.0.1:{self.port}/readyz")

    def metric(self, name, **labels):
        return metric_sum(http_text(f"http://127.0.0.1:{self.port}/metrics", timeout=5), name, **labels)

    def stop(self, sig=signal.SIGTERM):
        super().stop(sig, timeout=20)


@pytest.fixture(scope="module")
def setup():
    for ns in NAMESPACES:
        ensure_namespace(ns)
    hook = start_webhook("--delete-delay", "3s", "--create-delay", "1s", profiles=PROFILES)
    register(hook, name="fargate-webhook-scheduler-test")
    sched = Scheduler(os.path.join(hook.base, "state"))
    yield hook, sched
    sched.stop()
    unregister("fargate-webhook-scheduler-test")
    hook.stop()
    for ns in NAMESPACES:
        kubectl("delete", "deployment", "--all", "-n", ns, "--wait=false", check=False)
        delete_pods(ns)


def pods(namespace, selector=None):
    args = ["get", "pods", "-n", namespace, "-o", "json"]
    if selector:
        args += ["-l", selector]
    return kjson(*args)["items"]


def node(name):
    return kjson("get", "node", name, "-o", "json")


def virtual_nodes():
    return kjson("get", "nodes", "-l", "fargate-webhook.io/virtual-node=true", "-o", "json")["items"]


def events_of(namespace, pod_name):
    """The events about the pod of that name now (by its UID: not those of an earlier pod of the same name,
    which outlive it for an hour), or about any pod of that name once it is gone."""
    got = kubectl("get", "pod", pod_name, "-n", namespace, "-o", "json", check=False)
    uid = json.loads(got.stdout)["metadata"]["uid"] if got.code == 0 else None
    items = kjson("get", "events.events.k8s.io", "-n", namespace, "-o", "json")["items"]
    return [e for e in items if e["regarding"]["name"] == pod_name and uid in (None, e["regarding"].get("uid"))]


def deployment(name, namespace, replicas, containers, init=None):
    spec = {"containers": containers}
    if init:
        spec["initContainers"] = init
    apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}})


def running(namespace, selector, count):
    items = [p for p in pods(namespace, selector) if "deletionTimestamp" not in p["metadata"]]
    ok = len(items) == count and all(p["status"].get("phase") == "Running" for p in items)
    return items if ok else None


def test_deployment_pods_run_on_fargate_nodes_of_their_own(setup):
    deployment("web", "sched-apps", 3, [
        {"name": "web", "image": "registry.example/web:1", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
        {"name": "proxy", "image": "registry.example/proxy:1", "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}},
    ], init=[{"name": "migrate", "image": "registry.example/migrate:1",
              "resources": {"requests": {"cpu": "2", "memory": "512Mi"}}}])
    items = wait_until("3 pods Running", lambda: running("sched-apps", "app=web", 3), timeout=60)
    nodes = {p["spec"]["nodeName"] for p in items}
    assert len(nodes) == 3, "one node per pod"
    for p in items:
        meta, spec = p["metadata"], p["spec"]
        assert spec["schedulerName"] == "fargate-scheduler"
        assert NODE_NAME.match(spec["nodeName"]), spec["nodeName"]
        # CPU: the init container's 2 vCPU beats the sum 0.75; memory: 1.25 GiB + 256 MB → 2 vCPU 4 GB.
        assert meta["annotations"]["CapacityProvisioned"] == "2vCPU 4GB", meta["annotations"]
        assert meta["annotations"]["Logging"] == "LoggingDisabled: LOGGING_CONFIGMAP_NOT_FOUND"
        # kube-controller-manager taints a new node not-ready until kwok reports it Ready, and lifts the
        # taint a moment after the pod may already run: wait for it to go, then only EKS's taint is left.
        eks_taint = {"key": "eks.amazonaws.com/compute-type", "value": "fargate", "effect": "NoSchedule"}
        n = wait_until(f"{spec['nodeName']} with EKS's taint alone", lambda: (
            lambda n: n if n["spec"].get("taints") == [eks_taint] else None)(node(spec["nodeName"])), timeout=30)
        labels = n["metadata"]["labels"]
        ip = spec["nodeName"][len("fargate-ip-"):].split(".")[0]
        assert labels["eks.amazonaws.com/compute-type"] == "fargate"
        assert labels["kubernetes.io/hostname"] == f"ip-{ip}.{REGION}.compute.internal"
        assert labels["topology.kubernetes.io/region"] == REGION
        assert labels["topology.kubernetes.io/zone"] in (f"{REGION}a", f"{REGION}b")
        assert n["status"]["capacity"]["cpu"] == "2" or n["status"]["capacity"]["cpu"] == "2000m"
        assert n["status"]["capacity"]["memory"] == "4Gi"
        assert n["status"]["capacity"]["pods"] == "1"
        # A Fargate node's providerID and System Info, which tools parse (docs/eks-behaviour.md §9).
        assert re.fullmatch(rf"aws:///{labels['topology.kubernetes.io/zone']}/[0-9a-f]{{10}}-[0-9a-f]{{32}}/"
                            rf"{re.escape(spec['nodeName'])}", n["spec"]["providerID"]), n["spec"]["providerID"]
        assert n["status"]["nodeInfo"]["osImage"] == "Amazon Linux 2", n["status"]["nodeInfo"]
        # The control plane's version in EKS's shape: v1.35.4 -> v1.35.4-eks-7c9bda.
        server = kubectl("version", "-o", "json").json["serverVersion"]["gitVersion"]
        assert n["status"]["nodeInfo"]["kubeletVersion"] == re.split(r"[-+]", server)[0] + "-eks-7c9bda", \
            (server, n["status"]["nodeInfo"])
        assert [c["status"] for c in n["status"]["conditions"] if c["type"] == "Ready"] == ["True"]
        # The pod's address is its node's (one micro-VM per pod).
        assert p["status"]["podIP"] == ip.replace("-", ".")
        # Events are recorded beside the binding, not before it: wait for them.
        scheduled = wait_until("the Scheduled event", lambda: [
            e for e in events_of("sched-apps", meta["name"]) if e["reason"] == "Scheduled"], timeout=15)
        assert scheduled[0]["note"] == f"Successfully assigned sched-apps/{meta['name']} to {spec['nodeName']}"
        assert scheduled[0]["reportingController"] == "fargate-scheduler"
    assert setup[1].metric("fargate_webhook_scheduler_pods_bound_total", placement="virtual") >= 3

    # Scaling down removes the pods and, with them, their nodes.
    kubectl("scale", "deployment", "web", "-n", "sched-apps", "--replicas", "1")
    wait_until("two nodes gone", lambda: len(nodes & {n["metadata"]["name"] for n in virtual_nodes()}) == 1, timeout=30)


def test_the_logging_configmap_turns_logging_on(setup):
    ensure_namespace("aws-observability")
    apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "aws-logging", "namespace": "aws-observability"},
           "data": {"output.conf": "[OUTPUT]\n    Name cloudwatch_logs\n    Match *\n"}})
    try:
        deployment("logged", "sched-apps", 1, [{"name": "app", "image": "registry.example/app:1"}])
        [p] = wait_until("the pod Running", lambda: running("sched-apps", "app=logged", 1), timeout=60)
        assert p["metadata"]["annotations"]["Logging"] == "LoggingEnabled"
        # No requests: the smallest size.
        assert p["metadata"]["annotations"]["CapacityProvisioned"] == "0.25vCPU 0.5GB"
        reasons = wait_until("the LoggingEnabled event", lambda: (lambda r: r if "LoggingEnabled" in r else None)(
            {e["reason"]: e.get("note") for e in events_of("sched-apps", p["metadata"]["name"])}), timeout=15)
        assert reasons.get("LoggingEnabled") == "Successfully enabled logging for pod", reasons
    finally:
        kubectl("delete", "configmap", "aws-logging", "-n", "aws-observability", check=False)


def test_an_invalid_logging_configmap_disables_logging(setup):
    # An output EKS does not support (loki): the pod runs, with logging disabled and EKS's event.
    ensure_namespace("aws-observability")
    apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "aws-logging", "namespace": "aws-observability"},
           "data": {"output.conf": "[OUTPUT]\n    Name loki\n    Match *\n"}})
    try:
        wait_until("the watch sees the ConfigMap",
                   lambda: setup[1].metric("fargate_webhook_scheduler_logging_configmap") == 1, timeout=15)
        deployment("unlogged", "sched-apps", 1, [{"name": "app", "image": "registry.example/app:1"}])
        [p] = wait_until("the pod Running", lambda: running("sched-apps", "app=unlogged", 1), timeout=60)
        assert p["metadata"]["annotations"]["Logging"] == "LoggingDisabled: LOGGING_CONFIGMAP_INVALID"
        notes = wait_until("the LoggingDisabled event", lambda: [
            e for e in events_of("sched-apps", p["metadata"]["name"]) if e["reason"] == "LoggingDisabled"], timeout=15)
        assert notes[0]["type"] == "Warning"
        assert notes[0]["note"] == ("Disabled logging for pod due to invalid configmap. loki is not a supported "
                                    "output plugin. Please fix the logging configmap"), notes
    finally:
        kubectl("delete", "configmap", "aws-logging", "-n", "aws-observability", check=False)
        kubectl("delete", "deployment", "unlogged", "-n", "sched-apps", check=False)


def test_a_gated_pod_waits_until_its_gates_are_removed(setup):
    kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gated", "namespace": "sched-apps"},
         "spec": {"schedulingGates": [{"name": "example.com/quota"}],
                  "containers": [{"name": "app", "image": "registry.example/app:1"}]}}))
    try:
        p = kjson("get", "pod", "gated", "-n", "sched-apps")
        assert p["spec"]["schedulerName"] == "fargate-scheduler", "the webhook sent it to Fargate"
        time.sleep(3)  # several retry ticks (--retry-interval 1s)
        p = kjson("get", "pod", "gated", "-n", "sched-apps")
        assert not p["spec"].get("nodeName")
        assert not [n for n in virtual_nodes() if n["metadata"]["annotations"].get("fargate-webhook.io/pod") == "sched-apps/gated"]
        assert not [e for e in events_of("sched-apps", "gated") if e["reason"] == "FailedScheduling"]
        sched = setup[1]
        wait_until("the gated pod counted as waiting", lambda: sched.metric(
            "fargate_webhook_scheduler_pods_waiting", reason="gated") == 1, timeout=10)
        kubectl("patch", "pod", "gated", "-n", "sched-apps", "--type=json",
                "-p", '[{"op": "remove", "path": "/spec/schedulingGates"}]')
        p = wait_until("gated bound once ungated",
                       lambda: (lambda p: p if p["spec"].get("nodeName") else None)(kjson("get", "pod", "gated", "-n", "sched-apps")),
                       timeout=30)
        assert NODE_NAME.match(p["spec"]["nodeName"]), p["spec"]["nodeName"]
        wait_until("no gated pod counted", lambda: sched.metric(
            "fargate_webhook_scheduler_pods_waiting", reason="gated") == 0, timeout=10)
    finally:
        kubectl("delete", "pod", "gated", "-n", "sched-apps", "--force", "--grace-period=0", check=False)


def versions_of(namespace, name, since):
    """Every version of the pod the apiserver's watch gives from resourceVersion `since`, in order."""
    raw = kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/pods?watch=1&resourceVersion={since}"
                  f"&fieldSelector=metadata.name%3D{name}&timeoutSeconds=2").stdout
    return [json.loads(line)["object"] for line in raw.splitlines() if line.strip()]


def in_order(events):
    return [e["reason"] for e in sorted(events, key=lambda e: (e.get("eventTime") or "", e["metadata"]["creationTimestamp"]))]


def test_eks_order_annotated_while_pending_logging_before_scheduled_and_a_provisioning_delay(setup):
    # Without a delay: the apiserver's own history of the pod shows it annotated while still unbound.
    created = kubectl("create", "-f", "-", "-o", "json", input=json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ordered", "namespace": "sched-apps"},
         "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}})).json
    hook, sched = setup
    try:
        wait_until("ordered bound", lambda: kjson("get", "pod", "ordered", "-n", "sched-apps")["spec"].get("nodeName"),
                   timeout=30)
        history = versions_of("sched-apps", "ordered", created["metadata"]["resourceVersion"])
        annotated = [v for v in history if "CapacityProvisioned" in v["metadata"].get("annotations", {})]
        assert annotated and not annotated[0]["spec"].get("nodeName"), \
            [(v["metadata"].get("annotations"), v["spec"].get("nodeName")) for v in history]
        wait_until("two events", lambda: len(events_of("sched-apps", "ordered")) >= 2, timeout=15)
        assert in_order(events_of("sched-apps", "ordered"))[:2] == ["LoggingDisabled", "Scheduled"]
    finally:
        kubectl("delete", "pod", "ordered", "-n", "sched-apps", "--force", "--grace-period=0", check=False)

    # With --provisioning-delay 4s: Pending and annotated for about that long, the logging event first.
    sched.stop()
    slow = Scheduler(os.path.join(hook.base, "state"), "--provisioning-delay", "4s", identity="sched-slow")
    try:
        kubectl("create", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "slow", "namespace": "sched-apps"},
             "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}))
        p = wait_until("slow annotated", lambda: (lambda p: p if "CapacityProvisioned" in p["metadata"].get(
            "annotations", {}) else None)(kjson("get", "pod", "slow", "-n", "sched-apps")), timeout=30)
        annotated_at = time.monotonic()
        assert not p["spec"].get("nodeName") and p["status"]["phase"] == "Pending"
        wait_until("the logging event", lambda: [e for e in events_of("sched-apps", "slow")
                                                  if e["reason"] == "LoggingDisabled"], timeout=15)
        wait_until("counted as provisioning", lambda: slow.metric(
            "fargate_webhook_scheduler_pods_waiting", reason="provisioning") == 1, timeout=2.5)
        wait_until("slow bound", lambda: kjson("get", "pod", "slow", "-n", "sched-apps")["spec"].get("nodeName"),
                   timeout=30, interval=0.2)
        assert time.monotonic() - annotated_at >= 3, "bound before the provisioning delay"
        wait_until("Scheduled", lambda: [e for e in events_of("sched-apps", "slow") if e["reason"] == "Scheduled"],
                   timeout=15)
        assert in_order(events_of("sched-apps", "slow"))[:2] == ["LoggingDisabled", "Scheduled"]
    finally:
        kubectl("delete", "pod", "slow", "-n", "sched-apps", "--force", "--grace-period=0", check=False)
        slow.stop()
        sched.start()


def test_an_injected_provisioning_timeout_is_reported_as_eks_does_then_retried(setup):
    kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "flaky", "namespace": "sched-apps",
            "annotations": {"fargate-webhook.io/inject-fault": "provisioning-timeout:2"}},
         "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}))
    try:
        wait_until("flaky bound", lambda: kjson("get", "pod", "flaky", "-n", "sched-apps")["spec"].get("nodeName"),
                   timeout=30)
        # Two failures: two events, or one event whose series counts two (the Recorder folds a repeat into
        # the first event's series when it comes soon enough).
        def occurrences(events, reason):
            return sum((e.get("series") or {}).get("count", 1) for e in events if e["reason"] == reason)
        wait_until("two failures and the Scheduled event", lambda: (lambda ev: occurrences(
            ev, "FailedScheduling") >= 2 and occurrences(ev, "Scheduled") >= 1)(events_of("sched-apps", "flaky")),
            timeout=15)
        events = sorted(events_of("sched-apps", "flaky"),
                        key=lambda e: (e.get("eventTime") or "", e["metadata"]["creationTimestamp"]))
        failed = [e for e in events if e["reason"] == "FailedScheduling"]
        assert occurrences(events, "FailedScheduling") == 2, failed
        assert {e["note"] for e in failed} == {"Pod provisioning timed out (will retry) for pod: sched-apps/flaky"}
        assert [e["reason"] for e in events][0] == "LoggingDisabled" and events[-1]["reason"] == "Scheduled"
        assert setup[1].metric("fargate_webhook_scheduler_launch_failures_total", reason="provisioning-timeout") >= 2
    finally:
        kubectl("delete", "pod", "flaky", "-n", "sched-apps", "--force", "--grace-period=0", check=False)


def test_a_pod_asking_for_a_zone_lands_in_it(setup):
    # The profile's two subnets are two zones; four pods asking for the second all land there, on nodes
    # that carry the zone's label (what a topology spread or a zonal volume relies on).
    for i in range(4):
        kubectl("create", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"zonal-{i}", "namespace": "sched-apps"},
             "spec": {"nodeSelector": {"topology.kubernetes.io/zone": f"{REGION}b"},
                      "containers": [{"name": "app", "image": "registry.example/app:1"}]}}))
    try:
        for i in range(4):
            p = wait_until(f"zonal-{i} bound", lambda: (lambda p: p if p["spec"].get("nodeName") else None)(
                kjson("get", "pod", f"zonal-{i}", "-n", "sched-apps")), timeout=30)
            assert node(p["spec"]["nodeName"])["metadata"]["labels"]["topology.kubernetes.io/zone"] == f"{REGION}b"
    finally:
        for i in range(4):
            kubectl("delete", "pod", f"zonal-{i}", "-n", "sched-apps", "--force", "--grace-period=0", check=False)


def refused_with(name, message, reason="POD_UNSUPPORTED_ON_FARGATE"):
    def check():
        p = kjson("get", "pod", name, "-n", "sched-bad", "-o", "json")
        notes = [e["note"] for e in events_of("sched-bad", name) if e["reason"] == "FailedScheduling"]
        conditions = [c for c in p["status"].get("conditions", []) if c["type"] == "PodScheduled"]
        if notes and conditions:
            return p, notes, conditions[0]
        return None
    p, notes, condition = wait_until(f"{name} refused", check, timeout=30)
    assert notes == [message], notes
    assert condition["status"] == "False" and condition["reason"] == reason and condition["message"] == message
    assert not p["spec"].get("nodeName"), "never bound"


def bad_pod(name, **spec):
    spec.setdefault("containers", [{"name": "app", "image": "registry.example/app:1"}])
    kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Pod",
                                                    "metadata": {"name": name, "namespace": "sched-bad"}, "spec": spec}))


def test_pods_fargate_cannot_run_get_eks_failed_scheduling_texts(setup):
    bad_pod("host", hostNetwork=True, containers=[{
        "name": "app", "image": "registry.example/app:1", "ports": [{"containerPort": 80, "hostPort": 80}],
        "securityContext": {"privileged": True}}])
    refused_with("host", "Pod not supported on Fargate: fields not supported: HostNetwork, invalid SecurityContext "
                         "fields: Privileged, port contains HostIP or HostPort")
    # Capabilities outside the runtime's default set are named as written, container by container.
    bad_pod("caps", initContainers=[{"name": "init", "image": "registry.example/app:1",
                                     "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}}],
            containers=[{"name": "app", "image": "registry.example/app:1",
                         "securityContext": {"capabilities": {"add": ["CAP_CHOWN", "CHOWN"]}}}])
    refused_with("caps", "Pod not supported on Fargate: invalid SecurityContext fields: Capabilities added: "
                         "NET_ADMIN,Capabilities added: CAP_CHOWN")
    bad_pod("docker", volumes=[{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}])
    refused_with("docker", "Pod not supported on Fargate: volumes not supported: docker")

    # A claim that does not exist, one nothing binds, one bound to a volume without CSI, and one bound
    # to an EBS volume: only EFS CSI volumes run on Fargate.
    bad_pod("noclaim", volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "absent"}}])
    refused_with("noclaim", "Pod not supported on Fargate: volumes not supported: data not supported because: "
                            'persistentvolumeclaim "absent" not found')
    apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "pending", "namespace": "sched-bad"},
           "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "none",
                    "resources": {"requests": {"storage": "1Gi"}}}})
    bad_pod("unbound", volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "pending"}}])
    refused_with("unbound", "Pod not supported on Fargate: volumes not supported: data not supported because: "
                            "PVC pending not bound")
    apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "ebs-pv"},
           "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "ebs",
                    "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-0123456789abcdef0"},
                    "claimRef": {"namespace": "sched-bad", "name": "ebs-claim"}}})
    apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "ebs-claim", "namespace": "sched-bad"},
           "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "ebs", "volumeName": "ebs-pv",
                    "resources": {"requests": {"storage": "1Gi"}}}})
    wait_until("the EBS claim Bound", lambda: kjson("get", "pvc", "ebs-claim", "-n", "sched-bad", "-o", "json")
               ["status"].get("phase") == "Bound", timeout=60)
    bad_pod("ebs", volumes=[{"name": "logs", "persistentVolumeClaim": {"claimName": "ebs-claim"}}])
    refused_with("ebs", "Pod not supported on Fargate: volumes not supported: logs not supported because: PVC "
                        "ebs-claim bound to invalid PV ebs-pv with CSI Driver: ebs.csi.aws.com")
    apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "host-pv"},
           "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "host",
                    "hostPath": {"path": "/tmp/host-pv"},
                    "claimRef": {"namespace": "sched-bad", "name": "host-claim"}}})
    apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "host-claim", "namespace": "sched-bad"},
           "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "host", "volumeName": "host-pv",
                    "resources": {"requests": {"storage": "1Gi"}}}})
    wait_until("the hostPath claim Bound", lambda: kjson("get", "pvc", "host-claim", "-n", "sched-bad", "-o", "json")
               ["status"].get("phase") == "Bound", timeout=60)
    bad_pod("hostpv", volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "host-claim"}}])
    refused_with("hostpv", "Pod not supported on Fargate: volumes not supported: data not supported because: PVC "
                           "host-claim bound to invalid PV host-pv with nil CSI spec")

    bad_pod("huge", containers=[{"name": "app", "image": "registry.example/app:1",
                                 "resources": {"requests": {"cpu": "16", "memory": "120Gi"}}}])
    refused_with("huge", "Your pod's cpu/memory requirements exceed the max Fargate configuration",
                 reason="POD_CPU_MEM_EXCEEDS_MAX_FARGATE_SIZE")
    bad_pod("gpu", containers=[{"name": "app", "image": "registry.example/app:1",
                                "resources": {"limits": {"nvidia.com/gpu": "1"}}}])
    refused_with("gpu", "Pod not supported on Fargate: GPU resources not supported: nvidia.com/gpu")
    # A node selector no Fargate node satisfies (they are amd64) is refused with EKS's text.
    bad_pod("arm", nodeSelector={"kubernetes.io/arch": "arm64"})
    refused_with("arm", "MatchNodeSelector failed: Fargate profile bad cannot satisfy pod's node "
                        "selector/affinity requirements", reason="Unschedulable")
    # Refused once, not retried: one event each, even after retry ticks.
    time.sleep(2.5)
    for name in ("host", "huge"):
        assert len([e for e in events_of("sched-bad", name) if e["reason"] == "FailedScheduling"]) == 1
        assert events_of("sched-bad", name)[0].get("series") is None, "no repeats"
    assert setup[1].metric("fargate_webhook_scheduler_pods_refused_total", reason="unsupported") >= 5


def test_deleting_a_profile_deletes_its_pods_and_they_land_on_another(setup):
    hook, sched = setup
    deployment("mover", "sched-move", 2, [{"name": "app", "image": "registry.example/app:1"}])
    before = wait_until("2 pods Running on a-old", lambda: running("sched-move", "app=mover", 2), timeout=60)
    assert {p["metadata"]["labels"][PROFILE_KEY] for p in before} == {"a-old"}
    old_nodes = {p["spec"]["nodeName"] for p in before}
    deleted = aws_cli(hook.api_url, "delete-fargate-profile", "--cluster-name", "fargate",
                      "--fargate-profile-name", "a-old")
    assert deleted.code == 0, deleted.stderr

    def moved():
        items = running("sched-move", "app=mover", 2)
        if items and {p["metadata"]["labels"][PROFILE_KEY] for p in items} == {"b-new"}:
            return items
        return None
    try:
        after = wait_until("the ReplicaSet's new pods Running on b-new", moved, timeout=60)
    except AssertionError:
        state = [(p["metadata"]["name"], p["metadata"].get("labels", {}).get(PROFILE_KEY), p["spec"].get("nodeName"),
                  p["status"].get("phase"), p["metadata"].get("deletionTimestamp"), p["status"].get("conditions"))
                 for p in pods("sched-move")]
        raise AssertionError(f"the pods of sched-move: {state}\nevents: "
                             f"{[(e['regarding']['name'], e['reason'], e.get('note')) for e in kjson('get', 'events.events.k8s.io', '-n', 'sched-move')['items']]}")
    assert not {p["metadata"]["uid"] for p in after} & {p["metadata"]["uid"] for p in before}
    wait_until("the old pods' nodes removed", lambda: not old_nodes & {n["metadata"]["name"] for n in virtual_nodes()},
               timeout=30)
    assert sched.metric("fargate_webhook_scheduler_pods_removed_total", action="delete") >= 2


def test_a_daemonset_pod_bound_to_a_fargate_node_is_refused_as_the_fargate_kubelet_does(setup):
    """On EKS a DaemonSet pod that tolerates every taint can be put on a Fargate node whose own pod has
    finished (the node stays; its one pod slot is free again), and the Fargate kubelet refuses it
    (docs/eks-behaviour.md §5). The DaemonSet controller makes the pod; there is no kube-scheduler here, so
    the test binds it as the default scheduler would."""
    _, sched = setup
    kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "finisher", "namespace": "sched-apps"},
         "spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": "registry.example/app:1"}]}}))
    daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "sched-daemon"},
                 "spec": {"selector": {"matchLabels": {"app": "agent"}},
                          "template": {"metadata": {"labels": {"app": "agent"}},
                                       "spec": {"tolerations": [{"operator": "Exists"}],
                                                "containers": [{"name": "agent", "image": "registry.example/agent:1"}]}}}}
    try:
        finisher = wait_until("finisher Running", lambda: (lambda p: p if p["status"].get("phase") == "Running" else None)(
            kjson("get", "pod", "finisher", "-n", "sched-apps")), timeout=60)
        node_name = finisher["spec"]["nodeName"]
        kubectl("patch", "pod", "finisher", "-n", "sched-apps", "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"phase": "Succeeded"}}))
        apply(daemonset)

        def daemon_pod_for_node():
            for p in pods("sched-daemon", "app=agent"):
                terms = p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                names = [v for t in terms["nodeSelectorTerms"] for f in t.get("matchFields", []) for v in f["values"]]
                if names == [node_name] and not p["spec"].get("nodeName"):
                    return p
            return None
        daemon = wait_until(f"the DaemonSet's pod for {node_name}", daemon_pod_for_node, timeout=60)
        name = daemon["metadata"]["name"]
        # The DaemonSet controller deletes a failed pod of its own at once (and makes another, as on EKS):
        # the pod's versions are read from a watch started before the binding.
        watch = subprocess.Popen(
            [os.path.join(ENV["CLUSTER_BIN"], "kubectl"), "--kubeconfig", ENV["KUBECONFIG"], "get", "pod", name,
             "-n", "sched-daemon", "-o", "json", "--watch", "--output-watch-events"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            time.sleep(1)
            kubectl("create", "--raw", f"/api/v1/namespaces/sched-daemon/pods/{name}/binding", "-f", "-",
                    input=json.dumps({"apiVersion": "v1", "kind": "Binding",
                                      "metadata": {"name": name, "namespace": "sched-daemon"},
                                      "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}))
            notes = wait_until("the Warning event", lambda: [e.get("note") for e in events_of("sched-daemon", name)
                                                              if e["reason"] == "PodNotSupported"], timeout=30)
            time.sleep(1)
        finally:
            watch.terminate()
            out, _ = watch.communicate(timeout=10)
        versions, at, decoder = [], 0, json.JSONDecoder()
        while out[at:].strip():
            event, at = decoder.raw_decode(out, at + len(out[at:]) - len(out[at:].lstrip()))
            versions.append(event["object"])
        phases = [v["status"].get("phase") for v in versions]
        assert "Running" not in phases, phases
        failed = [v for v in versions if v["status"].get("phase") == "Failed"]
        assert failed, phases
        assert failed[0]["spec"]["nodeName"] == node_name
        assert failed[0]["status"]["reason"] == "PodNotSupported", failed[0]["status"]
        assert failed[0]["status"]["message"] == \
            "Pod not supported: SchedulerName is not fargate-scheduler, DaemonSet not supported", failed[0]["status"]
        assert not failed[0]["status"].get("containerStatuses"), "it never ran"
        assert notes == [failed[0]["status"]["message"]], notes
        assert sched.metric("fargate_webhook_scheduler_kubelet_refusals_total") >= 1
        # The finished pod keeps its node; the Fargate pods around are untouched.
        assert kjson("get", "pod", "finisher", "-n", "sched-apps")["status"]["phase"] == "Succeeded"
        assert kubectl("get", "node", node_name, check=False).code == 0
    finally:
        kubectl("delete", "daemonset", "agent", "-n", "sched-daemon", "--ignore-not-found")
        kubectl("delete", "pod", "finisher", "-n", "sched-apps", "--ignore-not-found", "--wait=false")


def create_profile(hook, name, namespace):
    """Create through the API, once no other profile is CREATING or DELETING (EKS refuses it then)."""
    def made():
        out = aws_cli(hook.api_url, "create-fargate-profile", "--cluster-name", "fargate", "--fargate-profile-name", name,
                      "--pod-execution-role-arn", ROLE, "--selectors", json.dumps([{"namespace": namespace}]))
        assert out.code == 0 or "ResourceInUseException" in out.stderr, out.stderr
        return out.code == 0
    wait_until(f"profile {name} created", made, timeout=30, interval=0.5)
    wait_until(f"profile {name} ACTIVE", lambda: aws_cli(hook.api_url, "describe-fargate-profile", "--cluster-name", "fargate",
                                                         "--fargate-profile-name", name).json["fargateProfile"]["status"] == "ACTIVE",
               timeout=30, interval=0.3)


def delete_profile(hook, name):
    deleted = aws_cli(hook.api_url, "delete-fargate-profile", "--cluster-name", "fargate", "--fargate-profile-name", name)
    assert deleted.code == 0, deleted.stderr


def one_running_pod(namespace, name):
    apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
           "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}})

    def check():
        p = kjson("get", "pod", name, "-n", namespace)
        return p if p["status"].get("phase") == "Running" and p["spec"]["schedulerName"] == "fargate-scheduler" else None
    return wait_until(f"pod {namespace}/{name} Running on Fargate", check, timeout=60)


def gone(namespace, name, uid):
    p = kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    return p.code != 0 or p.json["metadata"]["uid"] != uid


def test_a_profile_deleted_while_no_scheduler_runs_loses_its_pods_when_one_starts(setup):
    """Level-based: the scheduler acts on what is when it starts, not on changes it saw."""
    hook, sched = setup
    create_profile(hook, "offline", "sched-offline")
    uid = one_running_pod("sched-offline", "held")["metadata"]["uid"]
    sched.stop()
    try:
        delete_profile(hook, "offline")
        wait_until("profile offline gone", lambda: aws_cli(hook.api_url, "describe-fargate-profile", "--cluster-name",
                                                           "fargate", "--fargate-profile-name", "offline").code != 0,
                   timeout=30, interval=0.3)
        time.sleep(1)
        assert not gone("sched-offline", "held", uid), "nothing removes the pod while no scheduler runs"
    finally:
        sched.start()
    wait_until("the pod of the deleted profile removed", lambda: gone("sched-offline", "held", uid), timeout=30)


def test_profiles_deleted_right_after_their_pods_run_lose_them_all(setup):
    """Five profiles, each deleted as soon as its pod is Running: every pod goes, whatever the timing."""
    hook, _ = setup
    uids = {}
    for i in range(5):
        create_profile(hook, f"five-{i}", f"sched-five-{i}")
        uids[i] = one_running_pod(f"sched-five-{i}", "p")["metadata"]["uid"]
        delete_profile(hook, f"five-{i}")
    wait_until("all five pods removed", lambda: all(gone(f"sched-five-{i}", "p", uid) for i, uid in uids.items()),
               timeout=60)


def create_pods(namespace, prefix, count):
    docs = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{prefix}-{i}", "namespace": namespace},
             "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}} for i in range(count)]
    kubectl("create", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))


def all_bound_once(namespace, prefix, count):
    items = [p for p in pods(namespace) if p["metadata"]["name"].startswith(prefix + "-")]
    if len(items) != count or not all(p["spec"].get("nodeName") for p in items):
        return None
    return items


def assert_no_leaked_or_shared_nodes():
    def settled():
        nodes = {n["metadata"]["name"]: n for n in virtual_nodes()}
        bound = {}
        for ns in NAMESPACES:
            for p in pods(ns):
                name = p["spec"].get("nodeName")
                if name and "deletionTimestamp" not in p["metadata"]:
                    bound.setdefault(name, []).append(p["metadata"]["name"])
        return (nodes, bound) if set(nodes) == set(bound) else None
    nodes, bound = wait_until("every virtual node has its pod and no other", settled, timeout=30)
    assert all(len(v) == 1 for v in bound.values()), bound


def test_the_sweep_removes_a_virtual_node_whose_pod_is_gone(setup):
    # As a crash between making a node and binding would leave it: a virtual node for a pod that is gone,
    # and one for a pod that exists but is another pod (a new UID) of the same name.
    kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "keeper", "namespace": "sched-apps"},
         "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}))
    keeper = wait_until("keeper bound", lambda: (lambda p: p if p["spec"].get("nodeName") else None)(
        kjson("get", "pod", "keeper", "-n", "sched-apps")), timeout=30)
    for name, owner in (("fargate-ip-10-255-0-1.us-west-2.compute.internal", "sched-apps/nobody"),
                        ("fargate-ip-10-255-0-2.us-west-2.compute.internal", "sched-apps/keeper")):
        kubectl("create", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": name, "labels": {"fargate-webhook.io/virtual-node": "true"},
                "annotations": {"fargate-webhook.io/pod": owner, "fargate-webhook.io/pod-uid": "not-the-pods-uid"}}}))
    try:
        wait_until("both orphans swept (every 10 s)", lambda: not {
            "fargate-ip-10-255-0-1.us-west-2.compute.internal", "fargate-ip-10-255-0-2.us-west-2.compute.internal"}
            & {n["metadata"]["name"] for n in virtual_nodes()}, timeout=30)
        # The pod's own node stays.
        assert kubectl("get", "node", keeper["spec"]["nodeName"], check=False).code == 0
    finally:
        kubectl("delete", "node", "fargate-ip-10-255-0-1.us-west-2.compute.internal",
                "fargate-ip-10-255-0-2.us-west-2.compute.internal", "--ignore-not-found")
        kubectl("delete", "pod", "keeper", "-n", "sched-apps", "--force", "--grace-period=0", check=False)


def test_kill_9_under_a_stream_of_pods_loses_none(setup):
    hook, sched = setup
    create_pods("sched-apps", "burst", 20)
    time.sleep(0.3)
    sched.stop(signal.SIGKILL)
    create_pods("sched-apps", "during", 10)
    sched.start()
    create_pods("sched-apps", "after", 10)
    for prefix, count in (("burst", 20), ("during", 10), ("after", 10)):
        wait_until(f"{prefix} pods bound", lambda: all_bound_once("sched-apps", prefix, count), timeout=60)
    assert_no_leaked_or_shared_nodes()


def test_two_replicas_never_double_bind_and_a_standby_takes_over(setup):
    hook, sched = setup
    second = Scheduler(os.path.join(hook.base, "state"), identity="sched-2")
    try:
        wait_until("one leader", lambda: sched.metric("fargate_webhook_scheduler_leader")
                   + second.metric("fargate_webhook_scheduler_leader") == 1, timeout=15)
        create_pods("sched-apps", "pair", 20)
        wait_until("pair pods bound", lambda: all_bound_once("sched-apps", "pair", 20), timeout=60)
        assert_no_leaked_or_shared_nodes()
        # The leader goes away without a word: the standby takes over after the Lease runs out.
        leader, standby = (sched, second) if sched.metric("fargate_webhook_scheduler_leader") == 1 else (second, sched)
        leader.stop(signal.SIGKILL)
        create_pods("sched-apps", "handover", 5)
        wait_until("handover pods bound by the standby", lambda: all_bound_once("sched-apps", "handover", 5), timeout=30)
        assert standby.metric("fargate_webhook_scheduler_leader") == 1
        assert_no_leaked_or_shared_nodes()
        if leader is sched:
            sched.start()
    finally:
        second.stop()
