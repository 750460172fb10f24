//! The patch a mutated pod gets: whole maps or members, the priority override, long profile names,
//! warnings for unsupported fields, and no redundant label op.

use super::*;

fn patch_of(d: &Decision) -> Value {
    match &d.outcome {
        Outcome::Mutated { patch, .. } => serde_json::to_value(patch).unwrap(),
        other => panic!("not mutated: {other:?}"),
    }
}

#[test]
fn patch_adds_whole_maps_when_absent() {
    let snapshot = Snapshot::new(vec![active("fp", &[("default", &[])])]);
    let bare = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}));
    assert_eq!(
        patch_of(&decide_in("default", &bare, &snapshot)),
        json!([
            {"op": "add", "path": "/spec/schedulerName", "value": "fargate-scheduler"},
            {"op": "add", "path": "/metadata/labels", "value": {PROFILE_LABEL: "fp"}},
            {"op": "add", "path": "/metadata/annotations", "value": {PROFILE_LABEL: "fp"}},
            {"op": "add", "path": "/spec/priorityClassName", "value": "system-node-critical"},
            {"op": "add", "path": "/spec/priority", "value": 2000001000},
        ])
    );
}

#[test]
fn patch_sets_members_of_existing_maps_and_overrides_priority() {
    let snapshot = Snapshot::new(vec![active("fp", &[("default", &[])])]);
    let p = pod(json!({
        "metadata": {"labels": {"app": "x"}, "annotations": {"a": "b"}},
        "spec": {"schedulerName": "default-scheduler", "priorityClassName": "high", "priority": 1000, "preemptionPolicy": "Never", "containers": []}
    }));
    assert_eq!(
        patch_of(&decide_in("default", &p, &snapshot)),
        json!([
            {"op": "replace", "path": "/spec/schedulerName", "value": "fargate-scheduler"},
            {"op": "add", "path": "/metadata/labels/eks.amazonaws.com~1fargate-profile", "value": "fp"},
            {"op": "add", "path": "/metadata/annotations/eks.amazonaws.com~1fargate-profile", "value": "fp"},
            {"op": "replace", "path": "/spec/priorityClassName", "value": "system-node-critical"},
            {"op": "replace", "path": "/spec/priority", "value": 2000001000},
            {"op": "replace", "path": "/spec/preemptionPolicy", "value": "PreemptLowerPriority"},
        ])
    );
    // A preemption policy that already agrees with the class is left alone.
    let agrees = pod(
        json!({"metadata": {"labels": {}}, "spec": {"preemptionPolicy": "PreemptLowerPriority"}}),
    );
    let ops = patch_of(&decide_in("default", &agrees, &snapshot));
    assert!(!ops.to_string().contains("preemptionPolicy"), "{ops}");
}

#[test]
fn priority_override_can_be_turned_off() {
    let snapshot = Snapshot::new(vec![active("fp", &[("default", &[])])]);
    let p = pod(
        json!({"metadata": {"labels": {}, "annotations": {}}, "spec": {"priorityClassName": "high", "preemptionPolicy": "Never"}}),
    );
    let req = create_in("default", &p);
    let d = decide(
        &req,
        &snapshot,
        &Options {
            priority_override: false,
        },
    );
    assert_eq!(
        patch_of(&d),
        json!([
            {"op": "add", "path": "/spec/schedulerName", "value": "fargate-scheduler"},
            {"op": "add", "path": "/metadata/labels/eks.amazonaws.com~1fargate-profile", "value": "fp"},
            {"op": "add", "path": "/metadata/annotations/eks.amazonaws.com~1fargate-profile", "value": "fp"},
        ])
    );
}

#[test]
fn long_profile_names_get_the_annotation_only() {
    let name = format!("p{}", "x".repeat(70));
    let snapshot = Snapshot::new(vec![active(&name, &[("default", &[])])]);
    let d = decide_in("default", &labelled(&[]), &snapshot);
    let ops = patch_of(&d).to_string();
    assert!(!ops.contains("/metadata/labels"), "{ops}");
    assert!(ops.contains("/metadata/annotations"), "{ops}");
    assert!(
        d.warnings.iter().any(|w| w.contains("longer than 63")),
        "{:?}",
        d.warnings
    );
    // 63 characters still fit in a label.
    let name63 = format!("p{}", "x".repeat(62));
    let snapshot = Snapshot::new(vec![active(&name63, &[("default", &[])])]);
    let d = decide_in("default", &labelled(&[]), &snapshot);
    assert!(patch_of(&d).to_string().contains("/metadata/labels/"));
    assert!(d.warnings.is_empty());
}

#[test]
fn unsupported_fields_warn_only_when_mutated() {
    let snapshot = Snapshot::new(vec![active("fp", &[("default", &[])])]);
    let bad = json!({
        "metadata": {},
        "spec": {
            "hostNetwork": true, "hostPID": true, "hostIPC": true,
            "initContainers": [{"name": "i", "securityContext": {"privileged": true}}],
            "containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
            "volumes": [{"name": "h", "hostPath": {"path": "/var/log"}}]
        }
    });
    let d = decide_in("default", &pod(bad.clone()), &snapshot);
    // The scheduler's refusal, verbatim, then which profile sent it there.
    assert_eq!(
        d.warnings,
        vec![
            "Pod not supported on Fargate: fields not supported: HostNetwork, HostPID, HostIPC, \
             invalid SecurityContext fields: Privileged, port contains HostIP or HostPort, \
             volumes not supported: h (sent to Fargate profile 'fp'; the fargate-scheduler will not place it)"
        ]
    );
    // Same pod elsewhere: not sent to Fargate, so no warning.
    let d = decide_in("elsewhere", &pod(bad), &snapshot);
    assert_eq!(d.outcome, Outcome::NotMatched(NoMatch::NoProfile));
    assert!(d.warnings.is_empty());
    // privileged: false and hostPort 0 are fine.
    let fine = pod(
        json!({"spec": {"containers": [{"name": "a", "securityContext": {"privileged": false}, "ports": [{"containerPort": 80, "hostPort": 0}]}]}}),
    );
    assert!(decide_in("default", &fine, &snapshot).warnings.is_empty());
}

#[test]
fn capabilities_warn_only_outside_the_default_set() {
    let snapshot = Snapshot::new(vec![active("fp", &[("default", &[])])]);
    let with = |add: serde_json::Value| {
        pod(json!({"spec": {"containers": [
            {"name": "a", "securityContext": {"capabilities": {"add": add, "drop": ["ALL"]}}}]}}))
    };
    let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
        (json!(["NET_BIND_SERVICE"]), vec![]),
        (json!(["CHOWN", "DAC_OVERRIDE", "NET_RAW"]), vec![]),
        (
            json!(["NET_BIND_SERVICE", "SYS_PTRACE"]),
            vec![
                "Pod not supported on Fargate: invalid SecurityContext fields: Capabilities added: SYS_PTRACE \
                 (sent to Fargate profile 'fp'; the fargate-scheduler will not place it)",
            ],
        ),
        (
            json!(["CAP_CHOWN"]),
            vec![
                "Pod not supported on Fargate: invalid SecurityContext fields: Capabilities added: CAP_CHOWN \
                 (sent to Fargate profile 'fp'; the fargate-scheduler will not place it)",
            ],
        ),
    ];
    for (add, expected) in cases {
        let d = decide_in("default", &with(add.clone()), &snapshot);
        assert_eq!(d.warnings, expected, "{add}");
    }
}

#[test]
fn pinned_pod_already_labelled_gets_no_redundant_label_op() {
    let snapshot = Snapshot::new(vec![active("fp", &[("default", &[])])]);
    let d = decide_in("default", &labelled(&[(PROFILE_LABEL, "fp")]), &snapshot);
    let ops = patch_of(&d).to_string();
    assert!(!ops.contains("/metadata/labels"), "{ops}");
    assert!(ops.contains("/metadata/annotations"), "{ops}");
}
