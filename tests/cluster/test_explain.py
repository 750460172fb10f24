"""`explain` against what a user really has in a cluster: the FargateProfile resources (through the kubectl
plugin, `kubectl fargate explain -f ...`, found by the real kubectl on PATH) and, with `--what-if`, the pods
that run there."""

import json
import os
import subprocess

import pytest

from conftest import ENV, ROLE, apply, ensure_namespace, kubectl, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFEST = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "explain-a"},
    "spec": {"selector": {"matchLabels": {"app": "api"}}, "template": {
        "metadata": {"labels": {"app": "api"}},
        "spec": {"containers": [{"name": "api", "image": "registry.example/api:1",
                                 "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}}},
}


def plugin(*args):
    """`kubectl fargate ARGS` with the plugin and fargate-webhook on PATH."""
    path = os.pathsep.join([os.path.join(ROOT, "plugins"), os.path.dirname(os.environ["FARGATE_WEBHOOK_BIN"]),
                            ENV["CLUSTER_BIN"], os.environ.get("PATH", "")])
    env = dict(os.environ, PATH=path, KUBECONFIG=ENV["KUBECONFIG"],
               FARGATE_WEBHOOK=os.environ["FARGATE_WEBHOOK_BIN"])
    return subprocess.run([os.path.join(ENV["CLUSTER_BIN"], "kubectl"), "fargate", *args],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def profiles(crd, tmp_path_factory):
    for ns in ("explain-a", "explain-b"):
        ensure_namespace(ns)
    apply({"apiVersion": "fargate-webhook.io/v1alpha1", "kind": "FargateProfile", "metadata": {"name": "explain-apps"},
           "spec": {"podExecutionRoleArn": ROLE, "selectors": [{"namespace": "explain-a"}]}})
    d = tmp_path_factory.mktemp("explain")
    manifest = d / "api.yaml"
    manifest.write_text(json.dumps(MANIFEST))
    yield d
    kubectl("delete", "fargateprofile", "explain-apps", "--ignore-not-found", "--wait=false")
    for ns in ("explain-a", "explain-b"):
        kubectl("delete", "pods", "--all", "-n", ns, "--force", "--grace-period=0")


def test_kubectl_fargate_explain_reads_the_clusters_profiles(profiles):
    def answered():
        r = plugin("explain", "-f", str(profiles / "api.yaml"), "-o", "json")
        return r if r.returncode == 0 and json.loads(r.stdout)[0].get("chosen") == "explain-apps" else None
    r = wait_until("the plugin answers with the cluster's profile", answered, timeout=30, interval=0.5)
    [answer] = json.loads(r.stdout)
    assert answer["object"] == "Deployment/api"
    assert answer["scheduler"] == {"verdict": "run", "capacityProvisioned": "1vCPU 3GB"}
    # Text, and the CI switch: a namespace no profile selects fails it.
    text = plugin("explain", "-f", str(profiles / "api.yaml"))
    assert "fargate-scheduler: runs it as 1vCPU 3GB" in text.stdout, text.stdout + text.stderr
    other = profiles / "other.yaml"
    other.write_text(json.dumps({**MANIFEST, "metadata": {"name": "api", "namespace": "explain-b"}}))
    failing = plugin("explain", "-f", str(other), "--fail-unless-fargate")
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "not every pod would run on Fargate" in failing.stderr


def test_what_if_says_which_running_pods_move(profiles):
    # A pod placed on Fargate with explain-apps, and a plain pod in explain-b.
    for name, ns, extra in (("on-fargate", "explain-a", {"schedulerName": "fargate-scheduler"}),
                            ("plain", "explain-b", {})):
        labels = {"eks.amazonaws.com/fargate-profile": "explain-apps"} if extra else {}
        kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}], **extra}}))
    changed = profiles / "changed.json"
    changed.write_text(json.dumps({"fargateProfiles": [
        {"fargateProfileName": "explain-b-only", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "explain-b"}]}]}))
    r = plugin("what-if", str(changed), "-o", "json")
    assert r.returncode == 0, r.stderr
    moves = {m["pod"]: m for m in json.loads(r.stdout) if m["namespace"].startswith("explain-")}
    assert moves["on-fargate"]["verdict"] == "leavesFargate" and moves["on-fargate"]["now"] == "explain-apps"
    assert moves["plain"]["verdict"] == "joinsOnRecreate" and moves["plain"]["then"] == "explain-b-only"
    text = plugin("what-if", str(changed)).stdout
    assert "explain-a/on-fargate: explain-apps -> -: leaves Fargate" in text, text
    kept = profiles / "kept.json"
    kept.write_text(json.dumps({"fargateProfiles": [
        {"fargateProfileName": "explain-apps", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "explain-*"}]}]}))
    moves = {m["pod"]: m for m in json.loads(plugin("what-if", str(kept), "-o", "json").stdout)
             if m["namespace"].startswith("explain-")}
    assert moves["on-fargate"]["verdict"] == "stays"
    assert moves["plain"]["verdict"] == "joinsOnRecreate" and moves["plain"]["then"] == "explain-apps"
