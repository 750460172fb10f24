"""`explain` against what a user really has in a cluster: the FargateProfile resources (through the kubectl
plugin, `kubectl fargate explain -f ...`, found by the real kubectl on PATH) and, with `--what-if`, the pods
that run there; kubectl's `--kubeconfig`, `--context`, `-n` and `-h` given to the plugin, with a kubeconfig
of two contexts."""

import copy
import json
import os
import subprocess

import pytest
import yaml

from conftest import ENV, ROLE, apply, ensure_namespace, free_port, kubectl, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFEST = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "explain-a"},
    "spec": {"selector": {"matchLabels": {"app": "api"}}, "template": {
        "metadata": {"labels": {"app": "api"}},
        "spec": {"containers": [{"name": "api", "image": "registry.example/api:1",
                                 "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}}},
}


def plugin(*args, kubeconfig=None):
    """`kubectl fargate ARGS` with the plugin and fargate-webhook on PATH; KUBECONFIG is the cluster's unless
    `kubeconfig` names another file."""
    path = os.pathsep.join([os.path.join(ROOT, "plugins"), os.path.dirname(os.environ["FARGATE_WEBHOOK_BIN"]),
                            ENV["CLUSTER_BIN"], os.environ.get("PATH", "")])
    env = dict(os.environ, PATH=path, KUBECONFIG=kubeconfig or ENV["KUBECONFIG"],
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
    # A kubeconfig of two contexts: the current one, `nowhere`, points at a closed port; `real` is the
    # cluster, in namespace explain-a.
    with open(ENV["KUBECONFIG"]) as f:
        config = yaml.safe_load(f)
    [cluster] = config["clusters"]
    [user] = config["users"]
    two = copy.deepcopy(config)
    two["clusters"].append({"name": "nowhere", "cluster": {**cluster["cluster"],
                                                           "server": f"https://127.0.0.1:{free_port()}"}})
    two["contexts"] = [
        {"name": "nowhere", "context": {"cluster": "nowhere", "user": user["name"]}},
        {"name": "real", "context": {"cluster": cluster["name"], "user": user["name"], "namespace": "explain-a"}},
    ]
    two["current-context"] = "nowhere"
    (d / "two-contexts").write_text(yaml.safe_dump(two))
    # KUBECONFIG for the tests that must reach the cluster only through --kubeconfig: a file that is not there.
    (d / "absent").mkdir()
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
    assert answer["scheduler"] == {"verdict": "run", "capacityProvisioned": "1vCPU 3GB", "ephemeralStorage": "20GiB"}
    # Text, and the CI switch: a namespace no profile selects fails it.
    text = plugin("explain", "-f", str(profiles / "api.yaml"))
    assert "fargate-scheduler: runs it as 1vCPU 3GB" in text.stdout, text.stdout + text.stderr
    other = profiles / "other.yaml"
    other.write_text(json.dumps({**MANIFEST, "metadata": {"name": "api", "namespace": "explain-b"}}))
    failing = plugin("explain", "-f", str(other), "--fail-unless-fargate")
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "not every pod would run on Fargate" in failing.stderr


def test_kubectl_flags_choose_the_kubeconfig_context_and_namespace(profiles):
    two, absent = str(profiles / "two-contexts"), str(profiles / "absent" / "kubeconfig")
    unnamed = profiles / "unnamed.yaml"  # no namespace: the context's, as `kubectl apply` would use
    unnamed.write_text(json.dumps({**MANIFEST, "metadata": {"name": "api"}}))

    def explain(*args, kubeconfig=absent):
        return plugin("explain", "-f", str(unnamed), "-o", "json", *args, kubeconfig=kubeconfig)

    # --context picks `real`, whose namespace explain-a the profile selects; the flags come before the
    # command as well as after it.
    r = plugin("--kubeconfig", two, "--context", "real", "explain", "-f", str(unnamed), "-o", "json",
               kubeconfig=absent)
    assert r.returncode == 0, r.stderr
    [answer] = json.loads(r.stdout)
    assert (answer["namespace"], answer["chosen"]) == ("explain-a", "explain-apps"), answer
    # -n wins over the context's namespace: explain-b has no profile.
    r = explain("--kubeconfig", two, "--context=real", "--namespace", "explain-b")
    assert r.returncode == 0, r.stderr
    [answer] = json.loads(r.stdout)
    assert (answer["namespace"], answer["chosen"]) == ("explain-b", None), answer
    # Without --context the current context is used, and it leads nowhere.
    r = explain("--kubeconfig", two)
    assert r.returncode != 0 and "FargateProfile" in r.stderr, r.stdout + r.stderr
    # --kubeconfig wins over KUBECONFIG (which here is the cluster's own, current context `local`).
    r = explain("--kubeconfig", two, kubeconfig=ENV["KUBECONFIG"])
    assert r.returncode != 0, r.stdout
    # A context the file lacks is named.
    r = explain("--kubeconfig", two, "--context", "staging")
    assert r.returncode != 0 and "staging" in r.stderr, r.stderr
    # -h through the real kubectl: the plugin's usage, exit 0, nothing asked of the cluster.
    for args in (("-h",), ("explain", "--help"), ("what-if", "-h")):
        r = plugin(*args, kubeconfig=absent)
        assert r.returncode == 0 and "--context NAME" in r.stdout and "-n, --namespace NS" in r.stdout, r


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
    # -n narrows what-if to one namespace's pods; the cluster through --kubeconfig and --context only.
    r = plugin("what-if", str(changed), "-o", "json", "--kubeconfig", str(profiles / "two-contexts"),
               "--context", "real", "-n", "explain-b", kubeconfig=str(profiles / "absent" / "kubeconfig"))
    assert r.returncode == 0, r.stderr
    moves = json.loads(r.stdout)
    assert {m["namespace"] for m in moves} == {"explain-b"} and {m["pod"] for m in moves} == {"plain"}, moves
