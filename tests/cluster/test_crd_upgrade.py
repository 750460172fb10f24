"""The documented CRD upgrade path (charts/fargate-webhook/README.md, "Upgrading the CRD") on the real apiserver:
a release installed from a chart with an older FargateProfile CRD, which Helm itself created from crds/;
`helm upgrade` alone leaves that CRD as it was; the documented command, `helm show crds CHART | kubectl apply
--server-side --force-conflicts -f -`, replaces it with the new chart's CRD and keeps every FargateProfile.

The test owns the CRD while it runs (it deletes it so that Helm creates the old one), and leaves the chart's
current CRD installed and Established, as the session's `crd` fixture would."""

import os
import shutil
import subprocess

import yaml

from conftest import CHART, CRD, ENV, ROLE, apply, helm, kjson, kubectl, wait_until

NAME = "fargateprofiles.fargate-webhook.io"
RELEASE = NS = "fw-crd-upgrade"


def package(chart_dir, dest):
    out = helm("package", chart_dir, "--destination", dest).stdout
    return out.strip().rsplit(" ", 1)[-1]  # "Successfully packaged chart and saved it to: PATH"


def older_chart(tmp_path):
    """The chart as a release before this one might have shipped it: its CRD lacks the `Cluster` printer
    column (a change Helm would not carry to the cluster)."""
    old = tmp_path / "old" / "fargate-webhook"
    shutil.copytree(CHART, old)
    path = old / "crds" / "fargateprofiles.yaml"
    crd = yaml.safe_load(path.read_text())
    version = crd["spec"]["versions"][0]
    version["additionalPrinterColumns"] = [c for c in version["additionalPrinterColumns"] if c["name"] != "Cluster"]
    path.write_text(yaml.safe_dump(crd))
    return str(old)


def columns():
    return [c["name"] for c in kjson("get", "crd", NAME)["spec"]["versions"][0]["additionalPrinterColumns"]]


def shipped_version():
    with open(CRD) as f:
        return yaml.safe_load(f)["spec"]["versions"][0]


def show_crds_apply(tgz, *flags):
    """The documented pipe, as a user types it (bash, pipefail)."""
    kubectl_bin = os.path.join(ENV["CLUSTER_BIN"], "kubectl")
    line = (f'"$HELM_BIN" show crds "$TGZ" | "$KUBECTL" --kubeconfig "$KCFG" apply --server-side {" ".join(flags)} '
            "-f -")
    env = dict(os.environ, HELM_BIN=os.environ.get("HELM", "helm"), TGZ=tgz, KUBECTL=kubectl_bin,
               KCFG=ENV["KUBECONFIG"], KUBECONFIG=ENV["KUBECONFIG"])
    return subprocess.run(["bash", "-o", "pipefail", "-c", line], capture_output=True, text=True, env=env,
                          timeout=120)


def clear_crd():
    """Delete the CRD (and with it every FargateProfile, finalizers removed first so nothing holds it)."""
    if kubectl("get", "crd", NAME, check=False).code != 0:
        return
    for fp in kjson("get", "fp")["items"]:
        if fp["metadata"].get("finalizers"):
            kubectl("patch", "fp", fp["metadata"]["name"], "--type=json",
                    "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    kubectl("delete", "crd", NAME, "--wait=true", "--timeout=60s")


def test_show_crds_then_server_side_apply_upgrades_the_crd_and_keeps_the_profiles(tmp_path):
    old_tgz = package(older_chart(tmp_path), str(tmp_path))
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new_tgz = package(CHART, str(new_dir))
    clear_crd()
    try:
        helm("install", RELEASE, old_tgz, "-n", NS, "--create-namespace")
        kubectl("wait", "--for=condition=Established", f"crd/{NAME}", "--timeout=60s")
        assert "Cluster" not in columns(), "Helm created the old CRD"
        # Profiles made under the old CRD, one with tags and a status (as the API's store writes them).
        for name, tags in (("kept-a", {"team": "a"}), ("kept-b", None)):
            spec = {"podExecutionRoleArn": ROLE, "selectors": [{"namespace": f"{name}-*"}]}
            if tags:
                spec["tags"] = tags
            apply({"apiVersion": "fargate-webhook.io/v1alpha1", "kind": "FargateProfile",
                   "metadata": {"name": name, "labels": {"made": "before-upgrade"}}, "spec": spec})
        kubectl("patch", "fp", "kept-a", "--subresource=status", "--type=merge",
                "-p", '{"status": {"status": "ACTIVE", "clusterName": "fargate"}}')
        before = {n: kjson("get", "fp", n) for n in ("kept-a", "kept-b")}

        # Helm's own upgrade does not touch crds/: the old CRD stays.
        helm("upgrade", RELEASE, new_tgz, "-n", NS)
        assert "Cluster" not in columns(), "helm upgrade changed the CRD: the README's reason is gone"

        # Helm owns the fields it installed: without --force-conflicts the apply is refused, which is why
        # the README's command carries it.
        refused = show_crds_apply(new_tgz)
        assert refused.returncode != 0 and "conflict" in refused.stderr and '"helm"' in refused.stderr, refused

        applied = show_crds_apply(new_tgz, "--force-conflicts")
        assert applied.returncode == 0, applied.stderr
        assert f"{NAME} serverside-applied" in applied.stdout, applied.stdout
        helm("upgrade", RELEASE, new_tgz, "-n", NS)
        kubectl("wait", "--for=condition=Established", f"crd/{NAME}", "--timeout=60s")

        stored = kjson("get", "crd", NAME)["spec"]["versions"][0]
        shipped = shipped_version()
        assert stored["additionalPrinterColumns"] == shipped["additionalPrinterColumns"]
        assert stored["schema"] == shipped["schema"]
        assert columns()[:3] == ["Status", "Selectors", "Cluster"]
        # Every profile is still there, the same object: uid, spec, labels, status.
        for name, old in before.items():
            now = kjson("get", "fp", name)
            assert now["metadata"]["uid"] == old["metadata"]["uid"]
            assert now["spec"] == old["spec"]
            assert now["metadata"]["labels"] == {"made": "before-upgrade"}
            assert now.get("status") == old.get("status")
        # The new printer column reads the stored status.
        table = kubectl("get", "fp", "kept-a", "-o", "wide").stdout
        assert "fargate" in table.splitlines()[1], table
        # And the new CRD's rules are in force on them: spec stays immutable.
        changed = kubectl("patch", "fp", "kept-b", "--type=merge", "-p",
                          '{"spec": {"selectors": [{"namespace": "elsewhere"}]}}', check=False)
        assert changed.code != 0 and "spec is immutable" in changed.stderr, changed
    finally:
        helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "60s", check=False)
        kubectl("delete", "namespace", NS, "--wait=false", check=False)
        for name in ("kept-a", "kept-b"):
            kubectl("delete", "fp", name, "--ignore-not-found", check=False)
        # What the rest of the suite expects: the chart's CRD, Established.
        kubectl("apply", "--server-side", "--force-conflicts", "-f", CRD)
        kubectl("wait", "--for=condition=Established", f"crd/{NAME}", "--timeout=60s")
        wait_until("the CRD serves FargateProfiles", lambda: kubectl("get", "fp", check=False).code == 0)
