"""Failure as the real apiserver sees it: a stopped or hung webhook (failurePolicy Ignore, the apiserver's
fail-open counter), and the serving certificate replaced on disk while the apiserver holds connections."""

import base64
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import served_certificate  # noqa: E402
from conftest import (
    PROFILE_KEY, ROLE, apply, delete_pods, chart_webhook_configuration, create, ensure_namespace, fail_open_count,
    kubectl, pod, register, start_webhook, unregister,
)

NS = "failure"
CONFIG = "fargate-webhook-failure"
PROFILES = [{"fargateProfileName": "failure", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": NS}]}]


@pytest.fixture
def hook():
    ensure_namespace(NS)
    h = start_webhook(profiles=PROFILES)
    register(h, CONFIG)
    yield h
    unregister(CONFIG)
    if h.proc.poll() is None:
        h.proc.send_signal(signal.SIGCONT)
    h.stop()
    delete_pods(NS)


def timed_create(name):
    start = time.monotonic()
    r = create(pod(name, NS))
    return r.json, time.monotonic() - start


def test_stopped_webhook_fails_open(hook):
    timeout = chart_webhook_configuration()["webhooks"][0]["timeoutSeconds"]
    stored, _ = timed_create("before")
    assert stored["spec"]["schedulerName"] == "fargate-scheduler"
    before = fail_open_count()

    hook.stop()
    for i in range(3):
        stored, took = timed_create(f"down-{i}")
        assert stored["spec"]["schedulerName"] == "default-scheduler"
        assert PROFILE_KEY not in (stored["metadata"].get("labels") or {})
        assert took < timeout, f"a refused connection must not cost the timeout ({took:.2f}s)"
    assert fail_open_count() >= before + 3

    hook.start()
    stored, _ = timed_create("after")
    assert stored["spec"]["schedulerName"] == "fargate-scheduler"


def test_hung_webhook_fails_open_within_the_timeout(hook):
    timeout = chart_webhook_configuration()["webhooks"][0]["timeoutSeconds"]
    before = fail_open_count()
    hook.proc.send_signal(signal.SIGSTOP)  # accepts connections (kernel backlog), never answers
    try:
        stored, took = timed_create("hung")
    finally:
        hook.proc.send_signal(signal.SIGCONT)
    assert stored["spec"]["schedulerName"] == "default-scheduler"
    # The apiserver waited for the webhook's timeout, and not much longer (kubectl's own start included).
    assert timeout - 0.5 <= took < timeout + 3, took
    assert fail_open_count() >= before + 1


def test_certificate_replaced_on_disk_under_open_connections(hook):
    # The new certificate comes from another CA: the configuration trusts both (a CA bundle), as a
    # rotation of the CA itself would be rolled out.
    new = os.path.join(hook.base, "new-certs")
    subprocess.run([hook.args[0], "certs", "generate", "--ip", "127.0.0.1", "--dns", "localhost", "--out", new],
                   check=True, capture_output=True)
    bundle = os.path.join(hook.base, "bundle.crt")
    with open(bundle, "wb") as out:
        for ca in (hook.ca, os.path.join(new, "ca.crt")):
            with open(ca, "rb") as f:
                out.write(f.read())
    mwc = register(hook, CONFIG)
    with open(bundle, "rb") as f:
        mwc["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(f.read()).decode()
    apply(mwc)

    old_cert = served_certificate(hook.webhook_port)
    # Warm the apiserver's connection pool to the webhook.
    for i in range(5):
        assert timed_create(f"warm-{i}")[0]["spec"]["schedulerName"] == "fargate-scheduler"

    certs = os.path.dirname(hook.args[hook.args.index("--tls-cert") + 1])
    for name in ("tls.key", "tls.crt"):
        tmp = os.path.join(certs, f".{name}.new")
        with open(os.path.join(new, name), "rb") as src, open(tmp, "wb") as dst:
            dst.write(src.read())
        os.replace(tmp, os.path.join(certs, name))

    deadline = time.time() + 10
    changed = False
    i = 0
    while time.time() < deadline or not changed:
        stored, _ = timed_create(f"rot-{i}")
        assert stored["spec"]["schedulerName"] == "fargate-scheduler", f"pod rot-{i} was not mutated"
        assert stored["metadata"]["labels"][PROFILE_KEY] == "failure"
        changed = changed or served_certificate(hook.webhook_port) != old_cert
        i += 1
        if time.time() > deadline + 20:
            break
    assert changed, "the webhook never served the new certificate"
    # Twenty more after the switch: all mutated.
    for j in range(20):
        assert timed_create(f"post-{j}")[0]["spec"]["schedulerName"] == "fargate-scheduler"
