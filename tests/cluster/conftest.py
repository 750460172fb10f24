"""Fixtures of the suite that runs against a real control plane (tests/cluster/up.sh): kubectl and helm
against it, `fargate-webhook serve` processes on loopback, and the chart's MutatingWebhookConfiguration
registered with a `url` to them.

Environment (tests/cluster/run.sh sets both):
  FW_CLUSTER_DIR       the directory `up.sh` wrote (its `env` file names the apiserver and the binaries)
  FARGATE_WEBHOOK_BIN  the fargate-webhook binary
"""

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "aws"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from ekscli import ROLE, CliResult, aws_cli, eks_client, free_port  # noqa: E402,F401
from pysupport import Process, http_ok, http_text, metric_sum  # noqa: E402,F401  (tests/pysupport)

CHART = os.path.join(ROOT, "charts", "fargate-webhook")
CRD = os.path.join(CHART, "crds", "fargateprofiles.yaml")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
WEBHOOK_NAME = "fargate-mutation.fargate-webhook.io"
PROFILE_KEY = "eks.amazonaws.com/fargate-profile"


def cluster_env():
    d = os.environ.get("FW_CLUSTER_DIR")
    if not d:
        pytest.fail("FW_CLUSTER_DIR is not set: run this suite through tests/cluster/run.sh")
    with open(os.path.join(d, "env")) as f:
        return dict(line.strip().split("=", 1) for line in f if "=" in line)


ENV = cluster_env() if os.environ.get("FW_CLUSTER_DIR") else {}


def kubectl(*args, input=None, check=True, timeout=120):
    """kubectl (built with the control plane) as cluster-admin."""
    cmd = [os.path.join(ENV["CLUSTER_BIN"], "kubectl"), "--kubeconfig", ENV["KUBECONFIG"], *args]
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stderr}{p.stdout}")
    return CliResult(p.returncode, p.stdout, p.stderr)


def kjson(*args):
    return kubectl(*args, "-o", "json").json


def apply(obj, *args, check=True):
    """`kubectl apply --server-side` of one object (a dict)."""
    return kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", *args, input=json.dumps(obj), check=check)


def create(obj, check=True):
    """`kubectl create -o json`: the answer is the object exactly as the apiserver stored it."""
    return kubectl("create", "-f", "-", "-o", "json", input=json.dumps(obj), check=check)


def helm(*args, check=True, timeout=300):
    env = dict(os.environ, KUBECONFIG=ENV["KUBECONFIG"])
    p = subprocess.run([os.environ.get("HELM", "helm"), *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({p.returncode}):\n{p.stderr}{p.stdout}")
    return CliResult(p.returncode, p.stdout, p.stderr)


def wait_until(what, predicate, timeout=30.0, interval=0.1):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def ensure_namespace(name, timeout=30.0):
    apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    # Pods need the namespace's default ServiceAccount, which the controller-manager creates.
    wait_until(f"serviceaccount default in {name}", lambda: kubectl("get", "sa", "default", "-n", name, check=False).code == 0,
               timeout=timeout)


def delete_pods(namespace):
    """Delete every pod of a namespace now: with no kubelet, a pod bound to a node would otherwise stay
    Terminating until the pod garbage collector finds its node missing."""
    kubectl("delete", "pods", "--all", "-n", namespace, "--force", "--grace-period=0", "--wait=true")


def pod(name, namespace, labels=None, annotations=None, **spec):
    body = {"containers": [{"name": "app", "image": "registry.example/app:1"}]}
    body.update(spec)
    meta = {"name": name, "namespace": namespace}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}


def apiserver_metric(metric, **labels):
    """Sum of a counter on the apiserver's own /metrics for the series whose labels include `labels`."""
    return metric_sum(kubectl("get", "--raw", "/metrics").stdout, metric, **labels)


def fail_open_count():
    """Calls to the chart's webhook the apiserver let through unanswered (failurePolicy Ignore)."""
    return apiserver_metric("apiserver_admission_webhook_fail_open_count", name=WEBHOOK_NAME, type="admit")


class Webhook(Process):
    """A `fargate-webhook serve` process on loopback ports; `base` holds its certificates, state and log."""

    def __init__(self, base, webhook_port, metrics_port, api_port, args, env=None):
        super().__init__(args, os.path.join(base, "server.log"), cwd=base, env=env, name="fargate-webhook")
        self.base = base
        self.webhook_port = webhook_port
        self.metrics_port = metrics_port
        self.api_port = api_port

    @property
    def url(self):
        return f"https://127.0.0.1:{self.webhook_port}/mutate"

    @property
    def api_url(self):
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def ca(self):
        return os.path.join(self.base, "certs", "ca.crt")

    def metrics(self):
        return http_text(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def ready(self):
        return http_ok(f"http://127.0.0.1:{self.metrics_port}/readyz")

    def review(self, pod_obj):
        """Send an AdmissionReview for a pod CREATE straight to this replica; the decoded JSON patch."""
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "0b9e8a4e-0000-4000-8000-000000000001",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": pod_obj["metadata"]["namespace"],
                "operation": "CREATE",
                "object": pod_obj,
            },
        }
        ctx = ssl.create_default_context(cafile=self.ca)
        req = urllib.request.Request(self.url, data=json.dumps(review).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            resp = json.loads(r.read())["response"]
        return json.loads(base64.b64decode(resp["patch"])) if resp.get("patch") else []

    def start(self):
        """(Re)start the process with the same ports, flags and state."""
        super().start()
        self.wait_ready("the webhook's /readyz", self.ready, timeout=60)
        return self


def start_webhook(*extra, profiles=None, env=None):
    """`serve` with a certificate for 127.0.0.1 from `certs generate`; `profiles` (a list) goes to the file store."""
    binary = os.environ.get("FARGATE_WEBHOOK_BIN")
    if not binary:
        pytest.fail("FARGATE_WEBHOOK_BIN is not set: run this suite through tests/cluster/run.sh")
    # Beside the control plane: kept for a look after a failure, removed with it by the next run.
    work = os.path.join(os.environ["FW_CLUSTER_DIR"], "work")
    os.makedirs(work, exist_ok=True)
    base = tempfile.mkdtemp(prefix="fw-cluster-", dir=work)
    certs = os.path.join(base, "certs")
    subprocess.run([binary, "certs", "generate", "--ip", "127.0.0.1", "--dns", "localhost", "--out", certs],
                   check=True, capture_output=True)
    state = os.path.join(base, "state")
    os.makedirs(state)
    if profiles is not None:
        with open(os.path.join(state, "profiles.json"), "w") as f:
            json.dump({"fargateProfiles": profiles}, f)
    w, m, a = free_port(), free_port(), free_port()
    args = [binary, "serve", "--webhook-addr", f"127.0.0.1:{w}", "--metrics-addr", f"127.0.0.1:{m}",
            "--api-addr", f"127.0.0.1:{a}", "--state-dir", state,
            "--tls-cert", os.path.join(certs, "tls.crt"), "--tls-key", os.path.join(certs, "tls.key"), *extra]
    return Webhook(base, w, m, a, args, env=env).start()


def chart_webhook_configuration(release="fargate-webhook", namespace="fargate-system", values=()):
    """The MutatingWebhookConfiguration exactly as the chart renders it (helm template)."""
    args = ["template", release, CHART, "-n", namespace, "--show-only", "templates/webhook.yaml"]
    for v in values:
        args += ["--set", v]
    docs = [d for d in yaml.safe_load_all(helm(*args).stdout) if d]
    [mwc] = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
    return mwc


def register(hook, name="fargate-webhook-test", values=()):
    """Register `hook` with the chart's configuration (rendered with `values`), its clientConfig replaced by
    a url and the hook's CA."""
    mwc = chart_webhook_configuration(values=values)
    mwc["metadata"]["name"] = name
    with open(hook.ca, "rb") as f:
        ca = base64.b64encode(f.read()).decode()
    for wh in mwc["webhooks"]:
        wh["clientConfig"] = {"url": hook.url, "caBundle": ca}
    apply(mwc)
    return mwc


def unregister(name="fargate-webhook-test"):
    kubectl("delete", "mutatingwebhookconfiguration", name, "--ignore-not-found")


@pytest.fixture(scope="session")
def crd():
    """The chart's CRD, applied server-side and Established."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", CRD)
    kubectl("wait", "--for=condition=Established", "crd/fargateprofiles.fargate-webhook.io", "--timeout=60s")
    return "fargateprofiles.fargate-webhook.io"


def served_certificate(port):
    """The DER certificate a TLS server on 127.0.0.1:`port` presents, not verified."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s, ctx.wrap_socket(s) as t:
        return t.getpeercert(binary_form=True)


def clear_profiles():
    """Remove every FargateProfile resource, also those whose store's finalizer no running replica will
    drop any more (a suite that stopped its replicas), so that the next suite starts from none."""
    for item in kjson("get", "fp")["items"]:
        if item["metadata"].get("finalizers"):
            kubectl("patch", "fp", item["metadata"]["name"], "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}', check=False)
    kubectl("delete", "fp", "--all", "--wait=true", "--timeout=60s")
    assert not kjson("get", "fp")["items"], "profiles left behind"


@pytest.fixture
def tmpdir_clean():
    d = tempfile.mkdtemp(prefix="fw-cluster-")
    yield d
    shutil.rmtree(d, ignore_errors=True)
