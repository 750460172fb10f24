"""Generated matchConditions (`serve --generate-match-conditions`) on the real kube-apiserver: only pods a
profile could select, or that pin one, reach the webhook; a profile turns ACTIVE only once its pods are let
through; with the webhook hung, pods no profile selects are created at once; the largest expression written
is accepted and evaluated without error on a pod with 1,000 labels; what cannot be written sends every pod.
Asserted on the apiserver: the pods it stored, its webhook call and match-condition counters."""

import json
import signal
import threading
import time

import pytest

from conftest import (
    ENV, PROFILE_KEY, ROLE, WEBHOOK_NAME, create, delete_pods, eks_client, ensure_namespace, kjson, kubectl,
    metric_sum, pod, register, start_webhook, unregister, wait_until,
)

CONFIG = "fargate-webhook-mc"
CONDITION = "fargate-webhook.io/selected-by-a-profile"
SELECTED, OTHER, RACE = "mc-selected", "mc-other", "mc-race"
TIMEOUT = 4


def webhook(profiles=()):
    return start_webhook("--generate-match-conditions", "--webhook-configuration", CONFIG,
                         "--namespace-selector-exclude", "fargate-system",
                         "--create-delay", "1s", "--delete-delay", "1s", profiles=list(profiles),
                         env={"KUBECONFIG": ENV["KUBECONFIG"]})


def condition():
    """Our condition's expression in the configuration (None: not written, or no configuration)."""
    got = kubectl("get", "mutatingwebhookconfiguration", CONFIG, "-o", "json", check=False)
    if got.code != 0:
        return None
    for hook in json.loads(got.stdout)["webhooks"]:
        for c in hook.get("matchConditions") or []:
            if c["name"] == CONDITION:
                return c["expression"]
    return None


PIN_WEBHOOK = "pins." + WEBHOOK_NAME


def apiserver(metric):
    """A counter of the apiserver over both webhooks: the chart's, and the pin webhook the holder adds when
    every profile namespace is exact."""
    text = kubectl("get", "--raw", "/metrics").stdout
    return sum(metric_sum(text, metric, name=n) for n in (WEBHOOK_NAME, PIN_WEBHOOK))


def calls():
    return apiserver("apiserver_admission_webhook_request_total")


def excluded():
    return apiserver("apiserver_admission_match_condition_exclusions_total")


def condition_errors():
    return apiserver("apiserver_admission_match_condition_evaluation_errors_total")


def mutated(stored):
    return stored["spec"].get("schedulerName") == "fargate-scheduler"


def status(hook, name):
    return eks_client(hook.api_url).describe_fargate_profile(
        clusterName="fargate", fargateProfileName=name)["fargateProfile"]["status"]


def create_profile(hook, name, namespace, labels=None):
    selector = {"namespace": namespace}
    if labels:
        selector["labels"] = labels
    eks_client(hook.api_url).create_fargate_profile(
        clusterName="fargate", fargateProfileName=name, podExecutionRoleArn=ROLE, selectors=[selector])


@pytest.fixture
def namespaces():
    for ns in (SELECTED, OTHER, RACE):
        ensure_namespace(ns)
    yield
    for ns in (SELECTED, OTHER, RACE):
        delete_pods(ns)


@pytest.fixture
def hook(namespaces):
    h = webhook()
    register(h, CONFIG, values=[f"webhook.timeoutSeconds={TIMEOUT}"])
    yield h
    unregister(CONFIG)
    if h.proc.poll() is None:
        h.proc.send_signal(signal.SIGCONT)
    h.stop()


def test_only_pods_a_profile_can_select_or_that_pin_one_reach_the_webhook(hook):
    wait_until("the condition written", lambda: condition() is not None, timeout=20)
    create_profile(hook, "mc", SELECTED, {"app": "web-*"})
    wait_until("the profile ACTIVE", lambda: status(hook, "mc") == "ACTIVE", timeout=20)
    assert SELECTED in condition()

    daemon = pod("daemon", SELECTED, labels={"app": "web-1"})
    daemon["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d", "uid": "00000000-0000-4000-8000-000000000001"}]
    opted_out = pod("opted-out", SELECTED, labels={"app": "web-1"},
                    annotations={"eks.amazonaws.com/compute-type": "ec2"})
    # The profile's namespace is exact: the chart's webhook takes that namespace only (namespaceSelector), so a
    # pod of another namespace is passed over before any CEL is evaluated; pins elsewhere go to the pin webhook.
    # (pod, the webhook is called, the condition evaluated to false, the pod is mutated). After a mutation the
    # apiserver looks at the webhooks again (its reinvocation pass) and evaluates the condition once more: false
    # then, the pod asking for fargate-scheduler.
    cases = [
        (pod("web", SELECTED, labels={"app": "web-1"}), True, True, True),
        (pod("api", SELECTED, labels={"app": "api"}), False, True, False),
        (pod("other", OTHER, labels={"app": "web-1"}), False, False, False),
        (daemon, False, True, False),
        (opted_out, False, True, False),
        # A pin is warned about wherever the pod is: it reaches the webhook.
        (pod("pinned", OTHER, labels={PROFILE_KEY: "missing"}), True, False, False),
    ]
    for obj, called, excluded_by_cel, mutates in cases:
        name = obj["metadata"]["name"]
        before_calls, before_excluded = calls(), excluded()
        stored = create(obj)
        assert mutated(stored.json) == mutates, name
        assert calls() - before_calls == (1 if called else 0), f"{name}: called {calls() - before_calls} times"
        assert excluded() - before_excluded == (1 if excluded_by_cel else 0), name
        if name == "pinned":
            assert "pins Fargate profile 'missing'" in stored.stderr, stored.stderr
    assert condition_errors() == 0


def test_a_profile_turns_active_only_once_its_pods_are_let_through(namespaces):
    h = webhook()
    try:
        # No configuration yet: the holder cannot write the condition, so the profile stays CREATING.
        unregister(CONFIG)
        create_profile(h, "race", RACE)
        time.sleep(3)  # three times the create delay
        assert status(h, "race") == "CREATING"

        created = []
        stop = threading.Event()

        def create_pods():
            i = 0
            while not stop.is_set():
                start = time.monotonic()
                stored = create(pod(f"p{i}", RACE)).json
                created.append((start, mutated(stored)))
                i += 1

        worker = threading.Thread(target=create_pods, daemon=True)
        worker.start()
        register(h, CONFIG, values=[f"webhook.timeoutSeconds={TIMEOUT}"])
        wait_until("the profile ACTIVE", lambda: status(h, "race") == "ACTIVE", timeout=30, interval=0.05)
        active_seen = time.monotonic()
        assert RACE in json.dumps(kjson("get", "mutatingwebhookconfiguration", CONFIG)["webhooks"])
        time.sleep(2)
        stop.set()
        worker.join(timeout=30)
        after = [m for start, m in created if start > active_seen]
        assert len(after) >= 5, f"only {len(after)} pods created after ACTIVE"
        assert all(after), f"{after.count(False)} of {len(after)} pods created after ACTIVE were not mutated"
    finally:
        unregister(CONFIG)
        h.stop()


def test_with_the_webhook_hung_pods_no_profile_selects_are_created_at_once(hook):
    create_profile(hook, "blast", SELECTED)
    wait_until("the profile ACTIVE", lambda: status(hook, "blast") == "ACTIVE", timeout=20)
    hook.proc.send_signal(signal.SIGSTOP)  # accepts connections (kernel backlog), never answers
    try:
        start = time.monotonic()
        assert not mutated(create(pod("elsewhere", OTHER)).json)
        elsewhere = time.monotonic() - start
        start = time.monotonic()
        assert not mutated(create(pod("selected", SELECTED)).json)  # failurePolicy Ignore: admitted unmutated
        selected = time.monotonic() - start
    finally:
        hook.proc.send_signal(signal.SIGCONT)
    # The selected pod waited for the webhook's timeout; the other one did not wait at all (kubectl's start only).
    assert selected >= TIMEOUT - 0.5, selected
    assert elsewhere < 1.0, f"a pod no profile selects waited {elsewhere:.2f}s for a hung webhook"


def largest_profiles(n_profiles, n_selectors, n_labels, pad=0):
    """Profiles at the limits: wildcard namespaces and wildcard label keys and values everywhere."""
    return [{
        "fargateProfileName": f"big-{i}", "podExecutionRoleArn": ROLE,
        "selectors": [{"namespace": f"big-{i}-{j}-*",
                       "labels": {f"team-{k}-{'k' * pad}*": f"v{k}-{'v' * pad}*" for k in range(n_labels)}}
                      for j in range(n_selectors)],
    } for i in range(n_profiles)]


def test_the_largest_condition_written_is_accepted_and_evaluated(namespaces):
    ensure_namespace("big-4-4-x")
    # 5 profiles of 5 selectors of 5 wildcard labels: about 16,000 characters of CEL.
    h = webhook(largest_profiles(5, 5, 5))
    register(h, CONFIG)
    try:
        wait_until("the condition written", lambda: len(condition() or "") > 10_000, timeout=20)
        assert metric_sum(h.metrics(), "fargate_webhook_match_conditions_fallback") == 0
        errors = condition_errors()
        labels = {f"team-{k}-a": f"v{k}-b" for k in range(5)}
        labels.update({f"extra-{i}.example.com/key-{i}": "x" * 63 for i in range(995)})
        stored = create(pod("many-labels", "big-4-4-x", labels=labels)).json
        assert mutated(stored)
        assert stored["metadata"]["labels"][PROFILE_KEY] == "big-4"
        assert not mutated(create(pod("few-labels", "big-4-4-x", labels={"team-0-a": "v0-b"})).json)
        assert condition_errors() == errors
    finally:
        unregister(CONFIG)
        h.stop()
        delete_pods("big-4-4-x")


def test_what_cannot_be_written_sends_every_pod(namespaces):
    # 10 profiles of 5 selectors of 5 long wildcard labels: more than the generator writes.
    h = webhook(largest_profiles(10, 5, 5, pad=40))
    register(h, CONFIG)
    try:
        wait_until("the fallback written", lambda: condition() == "true", timeout=20)
        assert metric_sum(h.metrics(), "fargate_webhook_match_conditions_fallback") == 1
        before = calls()
        assert not mutated(create(pod("anywhere", OTHER)).json)
        assert calls() - before == 1
    finally:
        unregister(CONFIG)
        h.stop()
