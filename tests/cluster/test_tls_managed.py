"""The managed TLS mode (`serve --tls-secret`) on the real apiserver: replicas (processes) with the Kubernetes
store make their own CA and serving certificate in a Secret, the Lease holder alone writes it and sets the
caBundle, and the apiserver calls every replica successfully while the serving certificate is renewed and the CA
rotates (short validities), including a third replica started while a CA rotation is under way.

The configuration has one webhook per replica (each a `url` to one process) and `failurePolicy: Fail`, so every
pod creation goes through every replica: one handshake the apiserver does not trust fails the creation. The
replicas close idle connections after 500 ms and pods are created 0.8 s apart, so the apiserver handshakes again
for every creation (an open connection keeps the certificate of its handshake)."""

import base64
import copy
import socket
import ssl
import threading
import time

import pytest

from conftest import served_certificate  # noqa: E402
from conftest import (
    ENV, PROFILE_KEY, apply, chart_webhook_configuration, create, delete_pods, ensure_namespace, kjson, kubectl,
    pod, start_webhook, wait_until,
)

NS = "fw-tls"  # the replicas' namespace: Secret, Lease, coordination ConfigMap
PODS = "fw-tls-pods"  # the only namespace sent to the webhooks
SECRET = "fw-tls-serving"
CONFIG = "fw-tls-managed"
LEASE = "fw-tls-writers"
CA_VALIDITY, CERT_VALIDITY = 60, 20


def replica(name):
    return start_webhook(
        "--store", "kubernetes", "--lock-name", "fw-tls-lock", "--lease-name", LEASE, "--lease-duration", "5s",
        "--identity", name, "--tls-secret", SECRET, "--webhook-configuration", CONFIG, "--tls-ip", "127.0.0.1",
        "--tls-ca-validity", f"{CA_VALIDITY}s", "--tls-cert-validity", f"{CERT_VALIDITY}s",
        "--tls-sync-interval", "1s", "--cert-expiry-warning", "1s",
        # The apiserver keeps a busy connection open for ever, and a TLS session is checked once, at its
        # handshake: closing idle connections quickly makes it handshake again, with the certificate served now.
        "--idle-timeout", "500ms",
        env={"KUBECONFIG": ENV["KUBECONFIG"], "POD_NAMESPACE": NS})


def secret_data():
    data = kjson("get", "secret", SECRET, "-n", NS)["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def pem_ders(pem):
    out, rest = [], pem
    while "-----BEGIN CERTIFICATE-----" in rest:
        start = rest.index("-----BEGIN CERTIFICATE-----")
        end = rest.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
        out.append(ssl.PEM_cert_to_DER_cert(rest[start:end]))
        rest = rest[end:]
    return out


def config_bundles():
    mwc = kjson("get", "mutatingwebhookconfiguration", CONFIG)
    return [base64.b64decode(h["clientConfig"].get("caBundle", "")).decode() for h in mwc["webhooks"]]


def register(hooks):
    """One webhook per replica, failurePolicy Fail, PODS only. A replica added later gets the caBundle the
    configuration holds now (as a GitOps tool re-applying the live object would); the holder keeps every webhook's
    caBundle equal to the Secret's ca.crt."""
    current = ""
    if kubectl("get", "mutatingwebhookconfiguration", CONFIG, check=False).code == 0:
        current = config_bundles()[0]
    mwc = chart_webhook_configuration()
    mwc["metadata"]["name"] = CONFIG
    base = mwc["webhooks"][0]
    webhooks = []
    for i, hook in enumerate(hooks):
        w = copy.deepcopy(base)
        w["name"] = f"r{i}.fargate-mutation.fargate-webhook.io"
        w["failurePolicy"] = "Fail"
        w["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": PODS}}
        w["clientConfig"] = {"url": hook.url}
        if current:
            w["clientConfig"]["caBundle"] = base64.b64encode(current.encode()).decode()
        webhooks.append(w)
    mwc["webhooks"] = webhooks
    apply(mwc)


@pytest.fixture
def setup(crd):
    ensure_namespace(NS)
    ensure_namespace(PODS)
    kubectl("delete", "secret", SECRET, "-n", NS, "--ignore-not-found")
    kubectl("delete", "lease", LEASE, "-n", NS, "--ignore-not-found")
    kubectl("delete", "mutatingwebhookconfiguration", CONFIG, "--ignore-not-found")
    apply({"apiVersion": "fargate-webhook.io/v1alpha1", "kind": "FargateProfile", "metadata": {"name": "tls-managed"},
           "spec": {"podExecutionRoleArn": "arn:aws:iam::123456789012:role/AmazonEKSPodExecutionRole",
                    "selectors": [{"namespace": PODS}]}})
    replicas = []
    yield replicas
    kubectl("delete", "mutatingwebhookconfiguration", CONFIG, "--ignore-not-found")
    for r in replicas:
        r.stop()
    delete_pods(PODS)
    kubectl("delete", "fp", "tls-managed", "--ignore-not-found", "--wait=false")


def test_managed_tls_survives_renewals_ca_rotation_and_a_replica_joining(setup):
    replicas = setup
    replicas += [replica("tls-r1"), replica("tls-r2")]  # each is ready only once it serves the Secret's certificate
    first = secret_data()
    assert set(first) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}, set(first)
    secret = kjson("get", "secret", SECRET, "-n", NS)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["annotations"]["fargate-webhook.io/managed-tls"] == "true"
    register(replicas)
    wait_until("the holder to set every caBundle", lambda: config_bundles() == [secret_data()["ca.crt"]] * 2,
               timeout=15)
    # The profile reaches the store's watchers: a pod through both webhooks comes out mutated.
    def mutated_pod():
        r = create(pod(f"warm-{time.monotonic_ns()}", PODS), check=False)
        return r.code == 0 and PROFILE_KEY in r.json["metadata"].get("labels", {})

    wait_until("a mutated pod", mutated_pod, timeout=30, interval=0.5)

    failures, created, stop = [], [], threading.Event()

    def create_pods():
        n = 0
        while not stop.is_set():
            n += 1
            r = create(pod(f"p-{n}", PODS), check=False)
            if r.code != 0:
                failures.append((time.strftime("%H:%M:%S"), r.stderr.strip()))
            else:
                created.append(r.json)
            time.sleep(0.8)  # past --idle-timeout: the next creation opens new connections

    # What the Secret held over time: the serving certificates and the CA generations.
    leaves, newest_cas, max_cas, third = set(), set(), 0, None
    worker = threading.Thread(target=create_pods, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + CA_VALIDITY + 25
        while time.monotonic() < deadline:
            data = secret_data()
            cas = pem_ders(data["ca.crt"])
            leaves.add(data["tls.crt"])
            newest_cas.add(cas[0])
            max_cas = max(max_cas, len(cas))
            if third is None and len(cas) == 2:
                # A CA rotation is under way (the new CA in the bundle, the old kept): a replica joins now.
                third = replica("tls-r3")
                replicas.append(third)
                register(replicas)
            time.sleep(0.5)
    finally:
        stop.set()
        worker.join(timeout=60)

    print(f"managed TLS: {len(created)} pods created, {len(failures)} failed, {len(leaves)} serving certificates, "
          f"{len(newest_cas)} CAs")
    assert not failures, f"{len(failures)} of {len(failures) + len(created)} creations failed: {failures[:5]}"
    assert len(created) > 50, len(created)
    unmutated = [p["metadata"]["name"] for p in created if PROFILE_KEY not in p["metadata"].get("labels", {})]
    assert not unmutated, unmutated[:10]
    assert third is not None, "no CA rotation seen"
    assert len(newest_cas) >= 2, "the CA was never replaced"
    assert max_cas == 2, "the old CA stays in the bundle beside the new one"
    assert len(leaves) >= 4, f"only {len(leaves)} serving certificates in {CA_VALIDITY + 25}s"

    # Every replica, the late one included, serves the Secret's certificate, which every caBundle trusts.
    final = secret_data()
    want = pem_ders(final["tls.crt"])[0]
    for r in replicas:
        wait_until(f"{r.args[r.args.index('--identity') + 1]} to serve the current certificate",
                   lambda: served_certificate(r.webhook_port) == want, timeout=5)
    wait_until("every caBundle equal to ca.crt", lambda: config_bundles() == [secret_data()["ca.crt"]] * 3, timeout=5)

    # Only the Lease holder wrote.
    holder = kjson("get", "lease", LEASE, "-n", NS)["spec"]["holderIdentity"]
    writers = [r.args[r.args.index("--identity") + 1] for r in replicas if "writing the Secret" in r.log()]
    assert writers == [holder], (writers, holder)
