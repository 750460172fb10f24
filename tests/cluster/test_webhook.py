"""The webhook called by the real kube-apiserver: pods created with kubectl and by the ReplicaSet
controller, read back as the apiserver stored them (after its own Priority and ServiceAccount admission)."""

import pytest

from conftest import (
    PROFILE_KEY, ROLE, apply, create, delete_pods, ensure_namespace, kjson, kubectl, metric_sum, pod, register, start_webhook,
    unregister, wait_until,
)

PROFILES = [
    {"fargateProfileName": "default-with-infrastructure-label", "podExecutionRoleArn": ROLE,
     "selectors": [{"namespace": "default", "labels": {"infrastructure": "fargate"}}]},
    # A pod in team-a matches both: the tie-break picks the first name in byte order.
    {"fargateProfileName": "a-team-one-char", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "team-?"}]},
    {"fargateProfileName": "b-team-any", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "team-*"}]},
    {"fargateProfileName": "batch", "podExecutionRoleArn": ROLE,
     "selectors": [{"namespace": "batch-*", "labels": {"tier": "back*"}}]},
    {"fargateProfileName": "pins-first", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "pins"}]},
    {"fargateProfileName": "pins-second", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "pins"}]},
    {"fargateProfileName": "pins-creating", "podExecutionRoleArn": ROLE, "status": "CREATING",
     "selectors": [{"namespace": "pins"}]},
]
NAMESPACES = ["team-a", "batch-jobs", "pins", "plain"]
FARGATE_PRIORITY = 2000001000


@pytest.fixture(scope="module")
def hook():
    for ns in NAMESPACES:
        ensure_namespace(ns)
    h = start_webhook(profiles=PROFILES)
    register(h)
    yield h
    unregister()
    h.stop()
    for ns in NAMESPACES + ["default"]:
        delete_pods(ns)


def assert_on_fargate(stored, profile):
    """What EKS leaves on a pod it sends to Fargate (README, "What the webhook does")."""
    meta, spec = stored["metadata"], stored["spec"]
    assert spec["schedulerName"] == "fargate-scheduler", spec
    assert meta["labels"][PROFILE_KEY] == profile, meta
    assert meta["annotations"][PROFILE_KEY] == profile, meta
    assert spec["priorityClassName"] == "system-node-critical", spec
    assert spec["priority"] == FARGATE_PRIORITY, spec
    assert spec["preemptionPolicy"] == "PreemptLowerPriority", spec
    assert "nodeSelector" not in spec, spec
    assert spec.get("tolerations") == TOLERATIONS, spec


# The DefaultTolerationSeconds admission plugin adds these to every pod; the webhook adds none.
TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
]


def assert_untouched(stored, sent):
    meta, spec = stored["metadata"], stored["spec"]
    assert spec["schedulerName"] == sent["spec"].get("schedulerName", "default-scheduler"), spec
    assert spec.get("priorityClassName") == sent["spec"].get("priorityClassName"), spec
    assert meta.get("labels") == sent["metadata"].get("labels"), meta
    assert meta.get("annotations") == sent["metadata"].get("annotations"), meta


def created(obj):
    r = create(obj)
    return r.json, r.stderr


def test_namespace_and_label_match(hook):
    stored, _ = created(pod("infra", "default", labels={"infrastructure": "fargate", "app": "web"}))
    assert_on_fargate(stored, "default-with-infrastructure-label")
    assert stored["metadata"]["labels"]["app"] == "web"


def test_label_mismatch_is_stored_untouched(hook):
    sent = pod("infra-ec2", "default", labels={"infrastructure": "ec2"})
    stored, warnings = created(sent)
    assert_untouched(stored, sent)
    assert stored["spec"]["priority"] == 0
    assert "Warning" not in warnings


def test_wildcards_and_tie_break(hook):
    stored, _ = created(pod("tie", "team-a"))
    assert_on_fargate(stored, "a-team-one-char")
    stored, _ = created(pod("backend", "batch-jobs", labels={"tier": "backend"}))
    assert_on_fargate(stored, "batch")
    sent = pod("frontend", "batch-jobs", labels={"tier": "frontend"})
    stored, _ = created(sent)
    assert_untouched(stored, sent)


def test_pins(hook):
    # Without a pin, the tie-break; with a pin to an ACTIVE matching profile, that profile.
    stored, _ = created(pod("unpinned", "pins"))
    assert_on_fargate(stored, "pins-first")
    stored, _ = created(pod("pinned", "pins", labels={PROFILE_KEY: "pins-second"}))
    assert_on_fargate(stored, "pins-second")
    # A pin to a missing profile or to one that is not ACTIVE: no fallback, stored untouched, warned.
    for target in ("no-such-profile", "pins-creating"):
        sent = pod(f"pin-{target}", "pins", labels={PROFILE_KEY: target})
        stored, warnings = created(sent)
        assert_untouched(stored, sent)
        assert "Warning: " in warnings and target in warnings, warnings


def test_opt_out_annotation(hook):
    sent = pod("opt-out", "default", labels={"infrastructure": "fargate"},
               annotations={"eks.amazonaws.com/compute-type": "ec2"})
    stored, _ = created(sent)
    assert_untouched(stored, sent)


def test_daemonset_owned_pod_is_left_alone(hook):
    ds = apply({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "team-a"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}},
                              "spec": {"containers": [{"name": "a", "image": "registry.example/agent:1"}]}}},
    }, "-o", "json").json
    sent = pod("agent-x", "team-a", labels={"app": "agent"})
    sent["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                            "uid": ds["metadata"]["uid"], "controller": True}]
    stored, _ = created(sent)
    assert_untouched(stored, sent)
    kubectl("delete", "daemonset", "agent", "-n", "team-a", "--wait=false")


def test_own_priority_class_is_overridden_and_accepted(hook):
    apply({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "fw-high"},
           "value": 1000})
    stored, _ = created(pod("prio", "team-a", priorityClassName="fw-high"))
    assert_on_fargate(stored, "a-team-one-char")


def test_preemption_never_is_reset_to_the_class_value(hook):
    # A pod carries `preemptionPolicy: Never` through its class: the Priority plugin copies the class's
    # value before webhooks run. The override must change it with the class, or the pod is refused.
    apply({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "fw-never"},
           "value": 500, "preemptionPolicy": "Never"})
    stored, _ = created(pod("never", "team-a", priorityClassName="fw-never"))
    assert_on_fargate(stored, "a-team-one-char")
    # Written in the pod without such a class, the apiserver itself refuses it before any webhook.
    refused = create(pod("never-by-hand", "team-a", preemptionPolicy="Never"), check=False)
    assert refused.code != 0 and "must not be provided in pod spec" in refused.stderr, refused.stderr


def test_unsupported_fields_are_admitted_with_a_warning(hook):
    spec = {"hostNetwork": True, "containers": [{
        "name": "app", "image": "registry.example/app:1", "ports": [{"containerPort": 80, "hostPort": 80}],
        "securityContext": {"privileged": True}}]}
    stored, warnings = created(pod("host", "team-a", **spec))
    assert_on_fargate(stored, "a-team-one-char")
    assert stored["spec"]["hostNetwork"] is True
    # The fargate-scheduler's own FailedScheduling text, as kubectl prints the warning.
    assert ("Warning: Pod not supported on Fargate: fields not supported: HostNetwork, "
            "invalid SecurityContext fields: Privileged, port contains HostIP or HostPort "
            "(sent to Fargate profile 'a-team-one-char'") in warnings, warnings


def test_non_matching_namespace_is_stored_untouched(hook):
    sent = pod("plain", "plain", labels={"infrastructure": "fargate"}, priorityClassName="fw-high")
    apply({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "fw-high"},
           "value": 1000})
    stored, warnings = created(sent)
    assert_untouched(stored, sent)
    assert stored["spec"]["priority"] == 1000
    assert "Warning" not in warnings


def test_foreign_scheduler_and_node_name_are_left_alone(hook):
    for name, extra in (("custom", {"schedulerName": "my-scheduler"}), ("bound", {"nodeName": "node-1"})):
        sent = pod(name, "team-a", **extra)
        stored, _ = created(sent)
        assert_untouched(stored, sent)


def test_deployment_pods_from_the_replicaset_controller(hook):
    apply({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web-deploy"}},
                 "template": {"metadata": {"labels": {"app": "web-deploy", "infrastructure": "fargate"}},
                              "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}}},
    })
    apply({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "plain"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}},
                              "spec": {"containers": [{"name": "api", "image": "registry.example/api:1"}]}}},
    })
    try:
        web = wait_until("3 pods of deployment web",
                         lambda: (lambda items: items if len(items) == 3 else None)(
                             kjson("get", "pods", "-n", "default", "-l", "app=web-deploy")["items"]))
        for p in web:
            assert p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
            assert_on_fargate(p, "default-with-infrastructure-label")
        api = wait_until("2 pods of deployment api",
                         lambda: (lambda items: items if len(items) == 2 else None)(
                             kjson("get", "pods", "-n", "plain", "-l", "app=api")["items"]))
        for p in api:
            assert p["spec"]["schedulerName"] == "default-scheduler"
            assert PROFILE_KEY not in p["metadata"]["labels"]
            assert "priorityClassName" not in p["spec"]
    finally:
        kubectl("delete", "deployment", "web", "-n", "default")
        kubectl("delete", "deployment", "api", "-n", "plain")


def test_match_conditions_skip_opted_out_and_daemonset_pods_before_the_call(hook):
    """The chart's webhook.skipOptOutsBeforeTheCall: the apiserver accepts the CEL conditions and stops
    calling the webhook for those pods (the webhook's own counters do not move), while others still are."""
    register(hook, values=["webhook.skipOptOutsBeforeTheCall=true"])
    try:
        def reviews():
            return metric_sum(hook.metrics(), "fargate_webhook_admission_requests_total")
        before = reviews()
        sent = pod("cond-opt-out", "default", labels={"infrastructure": "fargate"},
                   annotations={"eks.amazonaws.com/compute-type": "ec2"})
        stored, _ = created(sent)
        assert_untouched(stored, sent)
        assert reviews() == before, "the opted-out pod was not sent to the webhook"
        stored, _ = created(pod("cond-normal", "default", labels={"infrastructure": "fargate"}))
        assert_on_fargate(stored, "default-with-infrastructure-label")
        assert reviews() == before + 1
    finally:
        register(hook)
