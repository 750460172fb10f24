"""The Helm chart installed into the real apiserver: every object accepted, the managed TLS mode's rights
limited to its one Secret and one configuration, the self-signed CA kept across upgrades (the chart's `lookup`
sees the real Secret), and nothing left behind by `helm uninstall` once the documented clean-up of
FargateProfiles is done. No pod runs here (no kubelet): the Deployment is stored, not started."""

import base64
import json
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


def can_i(sa, ns, verb, resource, namespace=None):
    args = ["auth", "can-i", verb, resource, f"--as=system:serviceaccount:{ns}:{sa}"]
    if namespace:
        args += ["-n", namespace]
    return kubectl(*args, check=False).stdout.strip() == "yes"


def test_managed_install_renders_no_certificate_and_grants_two_named_objects():
    release, ns = "fw-managed", "fw-managed"
    objects = install_and_check(release, ns)
    full = f"{release}-fargate-webhook"
    assert not any(k == "Secret" for k, _, _ in objects), objects
    mwc = kjson("get", "mutatingwebhookconfiguration", f"0500-{full}")
    assert "caBundle" not in mwc["webhooks"][0]["clientConfig"], "the webhook sets it at run time"
    # The rights, as the real authorizer reads them.
    sa, secret, config = full, f"{full}-tls", f"0500-{full}"
    assert can_i(sa, ns, "get", f"secret/{secret}", ns)
    assert can_i(sa, ns, "update", f"secret/{secret}", ns)
    assert can_i(sa, ns, "create", "secrets", ns)
    assert not can_i(sa, ns, "get", "secret/another", ns)
    assert not can_i(sa, ns, "list", "secrets", ns)
    assert not can_i(sa, ns, "get", f"secret/{secret}", "default")
    assert can_i(sa, ns, "get", f"mutatingwebhookconfiguration/{config}")
    assert can_i(sa, ns, "patch", f"mutatingwebhookconfiguration/{config}")
    assert not can_i(sa, ns, "patch", "mutatingwebhookconfiguration/another")
    assert not can_i(sa, ns, "list", "mutatingwebhookconfigurations")
    uninstall_and_check(release, ns, objects)


def test_self_signed_install_upgrade_uninstall():
    release, ns = "fw-self", "fw-self"
    objects = install_and_check(release, ns, "tls.mode=selfSigned")
    secret = kjson("get", "secret", "fw-self-fargate-webhook-tls", "-n", ns)
    mwc = kjson("get", "mutatingwebhookconfiguration", "0500-fw-self-fargate-webhook")
    ca = secret["data"]["ca.crt"]
    assert mwc["webhooks"][0]["clientConfig"]["caBundle"] == ca
    assert base64.b64decode(ca).startswith(b"-----BEGIN CERTIFICATE-----")
    # No namespaceSelector from the chart: the replica holding the Lease writes it at run time, with the release
    # namespace among the namespaces it never sends (the apiserver's own label on namespaces).
    hook = mwc["webhooks"][0]
    assert hook.get("namespaceSelector") in (None, {}), hook  # the apiserver defaults an absent one to {}
    args = kjson("get", "deployment", "fw-self-fargate-webhook", "-n", ns)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--namespace-selector-exclude={ns}" in args, args
    # What that replica writes (a merge patch of the webhooks, as another field manager: the namespaceSelector,
    # the condition, the pin webhook) must not make the next `helm upgrade` (server-side apply) conflict.
    written = dict(hook, namespaceSelector={"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [ns]},
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["apps"]}]},
        matchConditions=[{"name": "fargate-webhook.io/selected-by-a-profile", "expression": "true"}])
    pins = dict(hook, name="pins." + hook["name"], objectSelector={"matchExpressions": [
        {"key": "eks.amazonaws.com/fargate-profile", "operator": "Exists"}]})
    kubectl("patch", "mutatingwebhookconfiguration", "0500-fw-self-fargate-webhook", "--type=merge",
            "--field-manager=fargate-webhook", "-p", json.dumps({"webhooks": [written, pins]}))

    helm("upgrade", release, CHART, "-n", ns, "--set", "logLevel=debug", "--set", "tls.mode=selfSigned")
    kept = kjson("get", "mutatingwebhookconfiguration", "0500-fw-self-fargate-webhook")["webhooks"]
    assert [h["name"] for h in kept] == [hook["name"], "pins." + hook["name"]], kept
    assert kept[0]["namespaceSelector"] == written["namespaceSelector"], kept[0]
    assert kept[0]["matchConditions"] == written["matchConditions"], kept[0]
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


MONITORING_CRDS = [("servicemonitors", "ServiceMonitor"), ("prometheusrules", "PrometheusRule")]


def monitoring_crd(plural, kind):
    """A stand-in for prometheus-operator's CRD: the kind exists, its spec is not checked (the chart's
    own tests run `promtool check rules` on the rules)."""
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.monitoring.coreos.com"},
            "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                     "names": {"plural": plural, "kind": kind, "singular": kind.lower()},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]}}


def test_every_option_is_accepted_by_the_apiserver(tmpdir_clean):
    """Every value that adds or reshapes an object, on at once, installed for real: the apiserver's own
    validation (NetworkPolicy, PDB, matchConditions CEL, hostNetwork, security contexts) accepts it all,
    and `helm test` creates its probe pod (which stays Pending: no kubelet here)."""
    release, ns = "fw-all", "fw-all"
    for plural, kind in MONITORING_CRDS:
        apply(monitoring_crd(plural, kind))
    for plural, _ in MONITORING_CRDS:
        wait_until(f"{plural} CRD established", lambda p=plural: kjson(
            "get", "crd", f"{p}.monitoring.coreos.com")["status"].get("acceptedNames", {}).get("kind"))
    values = {
        "replicaCount": 2,
        "image": {"digest": "sha256:" + "ab" * 32},
        "commonLabels": {"team": "platform"},
        "hostNetwork": True,
        "containerPorts": {"webhook": 18443, "metrics": 19090, "api": 18080},
        "podSecurityContext": {},
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "extraArgs": ["--idle-timeout=60s", "--max-connections=2048"],
        "extraVolumes": [{"name": "extra", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "extra", "mountPath": "/extra"}],
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "networkPolicy": {"enabled": True,
                          "apiFrom": [{"podSelector": {"matchLabels": {"role": "ops"}}}],
                          "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
        "webhook": {"skipOptOutsBeforeTheCall": True, "objectSelector": {"matchExpressions": [
            {"key": "fargate-webhook.io/skip", "operator": "DoesNotExist"}]}},
        "api": {"service": {"enabled": True}},
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                    "grafanaDashboard": {"enabled": True}},
        "scheduler": {"enabled": True},
        "tests": {"labels": {"infrastructure": "fargate"}},
    }
    path = os.path.join(tmpdir_clean, "values.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(values, f)
    helm("install", release, CHART, "-n", ns, "--create-namespace", "-f", path)
    objects = manifest_objects(release, ns)
    kinds = {k for k, _, _ in objects}
    assert {"NetworkPolicy", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "ConfigMap",
            "MutatingWebhookConfiguration"} <= kinds, kinds
    for kind, name, obj_ns in objects:
        stored = kjson("get", kind, name, *([] if kind in CLUSTER_SCOPED else ["-n", obj_ns or ns]))
        assert stored["metadata"]["labels"]["team"] == "platform", f"{kind} {name}: commonLabels"
    deploy = kjson("get", "deployment", f"{release}-fargate-webhook", "-n", ns)
    spec = deploy["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    container = spec["containers"][0]
    assert container["image"].endswith("@sha256:" + "ab" * 32), container["image"]
    assert "--idle-timeout=60s" in container["args"] and "--webhook-addr=0.0.0.0:18443" in container["args"]
    assert {p["containerPort"] for p in container["ports"]} >= {18443, 19090}
    mwc = kjson("get", "mutatingwebhookconfiguration", f"0500-{release}-fargate-webhook")
    hook = mwc["webhooks"][0]
    assert hook["matchConditions"] and hook["objectSelector"]["matchExpressions"][0]["operator"] == "DoesNotExist"
    pdb = kjson("get", "pdb", f"{release}-fargate-webhook", "-n", ns)
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"

    # `helm test`: the probe pod is created (and waited for, in vain: nothing runs pods here).
    result = helm("test", release, "-n", ns, "--timeout", "5s", check=False)
    assert result.code != 0, "no kubelet: the probe cannot have run"
    probe = kjson("get", "pod", f"{release}-fargate-webhook-test", "-n", ns)
    args = probe["spec"]["containers"][0]["args"]
    assert args[0] == "probe" and f"--url=https://{release}-fargate-webhook.{ns}.svc:443/mutate" in args, args
    assert "--label=infrastructure=fargate" in args, args
    kubectl("delete", "pod", f"{release}-fargate-webhook-test", "-n", ns, "--wait=false")

    uninstall_and_check(release, ns, objects)
    for plural, _ in MONITORING_CRDS:
        kubectl("delete", "crd", f"{plural}.monitoring.coreos.com", "--wait=false")
