"""Support of the real-node suite (tests/cluster/node/test_*.py import its fixtures): a NODE=1 cluster (tests/cluster/up.sh:
containerd, a kubelet, kube-proxy, kube-scheduler), the project's image loaded on the node, and the chart
installed from it. Run by tests/cluster/run.sh after the loopback suite, on a cluster of its own.

Everything asserted here is what Kubernetes did: pods Ready and Running in containerd, EndpointSlices,
the apiserver's admission and its counters.
"""

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import CHART, ENV, ROOT, helm, kjson, kubectl, wait_until  # noqa: F401  (tests/cluster/conftest.py)

RELEASE = "fw"
NAMESPACE = "fargate-system"
FULLNAME = "fw-fargate-webhook"
POOL_LABEL = "fargate-webhook.io/pool"
PAUSE_IMAGE = "localhost/fargate-webhook-test/pause:1"


def node_env():
    if "NODE_NAME" not in ENV:
        pytest.fail("this suite needs a real node: NODE=1 bash tests/cluster/up.sh DIR (tests/cluster/run.sh does)")
    return ENV


class Api:
    """Direct calls to the apiserver as cluster-admin, for load (kubectl costs a process per call)."""

    def __init__(self):
        self.base = ENV["APISERVER"]
        self.ctx = ssl.create_default_context(cafile=ENV["CLUSTER_CA"])
        pki = os.path.dirname(ENV["CLUSTER_CA"])
        self.ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))

    def post(self, path, obj, timeout=30):
        """(status, body) of a POST; never raises for an HTTP status."""
        req = urllib.request.Request(self.base + path, data=json.dumps(obj).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")


def load_image():
    """The project's image made from FARGATE_WEBHOOK_BIN and imported into the node: (repository, tag)."""
    out = subprocess.run(["bash", os.path.join(ROOT, "tests", "cluster", "load-image.sh"), os.environ["FW_CLUSTER_DIR"]],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    ref = out.stdout.strip().splitlines()[-1]
    repository, tag = ref.rsplit(":", 1)
    return repository, tag


def component_pods(component):
    return kjson("get", "pods", "-n", NAMESPACE, "-l",
                 f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}")["items"]


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


@pytest.fixture(scope="session")
def image():
    node_env()
    return load_image()


@pytest.fixture(scope="session")
def release(image):
    """The chart installed as a platform engineer would on day one: 2 webhook replicas, the scheduler
    placing Fargate pods on the node labelled for the pool, the image from the node (pullPolicy Never)."""
    env = node_env()
    kubectl("label", "node", env["NODE_NAME"], f"{POOL_LABEL}=true", "--overwrite")
    repository, tag = image
    values = [f"image.repository={repository}", f"image.tag={tag}", "image.pullPolicy=Never", "replicaCount=2",
              "scheduler.enabled=true", "scheduler.placement=pool", f"scheduler.poolSelector={POOL_LABEL}=true"]
    args = ["install", RELEASE, CHART, "-n", NAMESPACE, "--create-namespace", "--wait", "--timeout", "180s"]
    for v in values:
        args += ["--set", v]
    helm(*args, timeout=240)
    yield values
    helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s", check=False, timeout=180)
