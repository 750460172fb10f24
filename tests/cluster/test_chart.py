"""The Helm chart installed into the real apiserver: every object accepted, the self-signed CA kept across
upgrades (the chart's `lookup` sees the real Secret), and nothing left behind by `helm uninstall` once the
documented clean-up of FargateProfiles is done. No pod runs here (no kubelet): the Deployment is stored,
not started."""

import base64
import os
import subprocess

import yaml

from conftest import CHART, ROLE, apply, helm, kjson, kubectl, wait_until


def manifest_objects(release, namespace):
    docs = yaml.safe_load_all(helm("get", "manifest", release, "-n", namespace).stdout)
    return [(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in docs if d]


def exists(kind, name, namespace):
    args = ["get", kind, name] + (["-n", namespace] if namespace else [])
    return kubectl(*args, check=False).code == 0


CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration", "CustomResourceDefinition"}


def install_and_check(release, namespace, *values):
    args = ["install", release, CHART, "-n", namespace, "--create-namespace"]
    for v in values:
        args += ["--set", v]
    helm(*args)
    objects = manifest_objects(release, namespace)
    kinds = {k for k, _, _ in objects}
    assert {"Deployment", "Service", "MutatingWebhookConfiguration", "ServiceAccount", "ClusterRole",
            "ClusterRoleBinding", "PodDisruptionBudget"} <= kinds, kinds
    for kind, name, ns in objects:
        assert exists(kind, name, None if kind in CLUSTER_SCOPED else (ns or namespace)), f"{kind} {name} not stored"
    return objects


def uninstall_and_check(release, namespace, objects):
    helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "60s")
    for kind, name, ns in objects:
        wait_until(f"{kind} {name} to be gone",
                   lambda: not exists(kind, name, None if kind in CLUSTER_SCOPED else (ns or namespace)), timeout=60)
    # Helm never deletes what it installed from crds/: the CRD stays, by Helm's design.
    assert exists("crd", "fargateprofiles.fargate-webhook.io", None)
    kubectl("delete", "namespace", namespace, "--wait=false")


def test_self_signed_install_upgrade_uninstall():
    release, ns = "fw-self", "fw-self"
    objects = install_and_check(release, ns)
    secret = kjson("get", "secret", "fw-self-fargate-webhook-tls", "-n", ns)
    mwc = kjson("get", "mutatingwebhookconfiguration", "0500-fw-self-fargate-webhook")
    ca = secret["data"]["ca.crt"]
    assert mwc["webhooks"][0]["clientConfig"]["caBundle"] == ca
    assert base64.b64decode(ca).startswith(b"-----BEGIN CERTIFICATE-----")
    # The release namespace is excluded, by the apiserver's own label on namespaces.
    expr = mwc["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]
    assert expr == {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [ns]}, expr

    helm("upgrade", release, CHART, "-n", ns, "--set", "logLevel=debug")
    after = kjson("get", "secret", "fw-self-fargate-webhook-tls", "-n", ns)
    assert after["data"] == secret["data"], "helm upgrade regenerated the self-signed certificate"
    mwc = kjson("get", "mutatingwebhookconfiguration", "0500-fw-self-fargate-webhook")
    assert mwc["webhooks"][0]["clientConfig"]["caBundle"] == ca
    deploy = kjson("get", "deployment", "fw-self-fargate-webhook", "-n", ns)
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--log-level=debug" in args, args

    # A profile the API created carries the store's finalizer; with no replica left to release it, the
    # documented clean-up (charts/fargate-webhook/README.md, "Uninstall") is what removes it.
    apply({"apiVersion": "fargate-webhook.io/v1alpha1", "kind": "FargateProfile",
           "metadata": {"name": "chart-held", "finalizers": ["fargate-webhook.io/lifecycle"]},
           "spec": {"podExecutionRoleArn": ROLE, "selectors": [{"namespace": "default"}]}})
    uninstall_and_check(release, ns, objects)
    kubectl("delete", "fp", "chart-held", "--wait=false")
    assert kjson("get", "fp", "chart-held")["metadata"]["deletionTimestamp"], "held by the finalizer"
    kubectl("patch", "fp", "chart-held", "--type=json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    wait_until("FargateProfile chart-held to be gone", lambda: not exists("fp", "chart-held", None))


def test_existing_secret_install(tmpdir_clean):
    release, ns = "fw-existing", "fw-existing"
    certs = os.path.join(tmpdir_clean, "certs")
    subprocess.run([os.environ["FARGATE_WEBHOOK_BIN"], "certs", "generate", "--dns",
                    f"{release}-fargate-webhook.{ns}.svc", "--out", certs], check=True, capture_output=True)
    kubectl("create", "namespace", ns)
    kubectl("create", "secret", "tls", "fw-serving", "-n", ns, "--cert", os.path.join(certs, "tls.crt"),
            "--key", os.path.join(certs, "tls.key"))
    with open(os.path.join(certs, "ca.crt"), "rb") as f:
        ca = base64.b64encode(f.read()).decode()
    objects = install_and_check(release, ns, "tls.mode=existingSecret", "tls.existingSecret.name=fw-serving",
                                f"tls.existingSecret.caBundle={ca}", "api.service.enabled=true")
    assert any(k == "Service" and n.endswith("-api") for k, n, _ in objects), objects
    mwc = kjson("get", "mutatingwebhookconfiguration", f"0500-{release}-fargate-webhook")
    assert mwc["webhooks"][0]["clientConfig"]["caBundle"] == ca
    deploy = kjson("get", "deployment", f"{release}-fargate-webhook", "-n", ns)
    volumes = deploy["spec"]["template"]["spec"]["volumes"]
    assert any(v.get("secret", {}).get("secretName") == "fw-serving" for v in volumes), volumes
    uninstall_and_check(release, ns, objects)
