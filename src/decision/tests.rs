//! Table-driven tests, one group per rule of the spec (sections 2–5).

use super::*;
use crate::profile::{FargateProfile, Selector};
use serde_json::{Value, json};

fn profile(
    name: &str,
    status: ProfileStatus,
    selectors: &[(&str, &[(&str, &str)])],
) -> FargateProfile {
    FargateProfile {
        fargate_profile_name: name.into(),
        pod_execution_role_arn: "arn:aws:iam::012345678910:role/R".into(),
        status,
        selectors: selectors
            .iter()
            .map(|(ns, labels)| Selector {
                namespace: Some(ns.to_string()),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}

fn active(name: &str, selectors: &[(&str, &[(&str, &str)])]) -> FargateProfile {
    profile(name, ProfileStatus::Active, selectors)
}

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).expect("test pod")
}

fn labelled(labels: &[(&str, &str)]) -> Pod {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    pod(json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app"}]}}))
}

const ON: Options = Options {
    priority_override: true,
};

fn decide_in(ns: &str, pod: &Pod, snapshot: &Snapshot) -> Decision {
    decide(
        &Request {
            group: "",
            kind: "Pod",
            operation: "CREATE",
            namespace: ns,
            pod,
        },
        snapshot,
        &ON,
    )
}

fn chosen(ns: &str, pod: &Pod, snapshot: &Snapshot) -> Option<String> {
    match decide_in(ns, pod, snapshot).outcome {
        Outcome::Mutated { profile, .. } => Some(profile),
        _ => None,
    }
}

#[test]
fn selector_matching_table() {
    // (profile selectors, pod namespace, pod labels, matches)
    type Case<'a> = (
        &'a [(&'a str, &'a [(&'a str, &'a str)])],
        &'a str,
        &'a [(&'a str, &'a str)],
        bool,
    );
    let cases: &[Case] = &[
        // namespace only: every pod of the namespace
        (&[("default", &[])], "default", &[], true),
        (&[("default", &[])], "default", &[("any", "x")], true),
        (&[("default", &[])], "other", &[], false),
        // label subset test
        (
            &[("default", &[("infrastructure", "fargate")])],
            "default",
            &[("infrastructure", "fargate"), ("app", "a")],
            true,
        ),
        (
            &[("default", &[("infrastructure", "fargate")])],
            "default",
            &[("infrastructure", "ec2")],
            false,
        ),
        (
            &[("default", &[("infrastructure", "fargate")])],
            "default",
            &[("app", "a")],
            false,
        ),
        (
            &[("default", &[("a", "1"), ("b", "2")])],
            "default",
            &[("a", "1")],
            false,
        ),
        (
            &[("default", &[("a", "1"), ("b", "2")])],
            "default",
            &[("a", "1"), ("b", "2")],
            true,
        ),
        // any selector of the profile
        (
            &[("one", &[]), ("two", &[("x", "y")])],
            "two",
            &[("x", "y")],
            true,
        ),
        (&[("one", &[]), ("two", &[("x", "y")])], "two", &[], false),
        // wildcards in namespace, key and value
        (&[("prod*", &[])], "production", &[], true),
        (&[("prod*", &[])], "staging", &[], false),
        (&[("*-dev", &[])], "team-dev", &[], true),
        (&[("team-?", &[])], "team-a", &[], true),
        (&[("team-?", &[])], "team-ab", &[], false),
        (
            &[("default", &[("app", "web-*")])],
            "default",
            &[("app", "web-frontend")],
            true,
        ),
        (
            &[("default", &[("app", "web-*")])],
            "default",
            &[("app", "api")],
            false,
        ),
        (
            &[("default", &[("team-*", "blue")])],
            "default",
            &[("team-a", "red"), ("team-b", "blue")],
            true,
        ),
        (
            &[("default", &[("team-*", "blue")])],
            "default",
            &[("team-a", "red")],
            false,
        ),
        (&[("default", &[("team-*", "*")])], "default", &[], false),
        (&[("*", &[("*", "*")])], "anything", &[("k", "")], true),
        // case-sensitive
        (&[("Default", &[])], "default", &[], false),
        (
            &[("default", &[("App", "x")])],
            "default",
            &[("app", "x")],
            false,
        ),
    ];
    for (i, (selectors, ns, labels, want)) in cases.iter().enumerate() {
        let snapshot = Snapshot::new(vec![active("p", selectors)]);
        let got = chosen(ns, &labelled(labels), &snapshot);
        assert_eq!(
            got.is_some(),
            *want,
            "case {i}: {selectors:?} vs {ns} {labels:?}"
        );
    }
}

#[test]
fn only_active_profiles_match() {
    for status in ProfileStatus::ALL {
        let snapshot = Snapshot::new(vec![profile("p", status, &[("default", &[])])]);
        let got = chosen("default", &labelled(&[]), &snapshot);
        assert_eq!(got.is_some(), status == ProfileStatus::Active, "{status}");
    }
}

#[test]
fn tie_break_is_byte_wise_ascending_name() {
    let snapshot = Snapshot::new(vec![
        active("zeta", &[("default", &[])]),
        active("alpha", &[("default", &[("app", "x")])]),
        active("Beta", &[("def*", &[])]), // 'B' < 'a' byte-wise
        profile("AAA-creating", ProfileStatus::Creating, &[("default", &[])]),
    ]);
    assert_eq!(
        chosen("default", &labelled(&[("app", "x")]), &snapshot).as_deref(),
        Some("Beta")
    );
    let no_wildcard = Snapshot::new(vec![
        active("zeta", &[("default", &[])]),
        active("alpha", &[("default", &[("app", "x")])]),
    ]);
    assert_eq!(
        chosen("default", &labelled(&[("app", "x")]), &no_wildcard).as_deref(),
        Some("alpha")
    );
    assert_eq!(
        chosen("default", &labelled(&[]), &no_wildcard).as_deref(),
        Some("zeta")
    );
    // A wildcard profile later by name does not beat an exact one earlier by name, and vice versa.
    let mixed = Snapshot::new(vec![
        active("b-exact", &[("default", &[])]),
        active("a-glob", &[("d*", &[])]),
    ]);
    assert_eq!(
        chosen("default", &labelled(&[]), &mixed).as_deref(),
        Some("a-glob")
    );
    let mixed = Snapshot::new(vec![
        active("a-exact", &[("default", &[])]),
        active("b-glob", &[("d*", &[])]),
    ]);
    assert_eq!(
        chosen("default", &labelled(&[]), &mixed).as_deref(),
        Some("a-exact")
    );
}

#[test]
fn pinned_profile() {
    let snapshot = Snapshot::new(vec![
        active("a-first", &[("default", &[])]),
        active("b-pinned", &[("default", &[("app", "x")])]),
        profile("c-creating", ProfileStatus::Creating, &[("default", &[])]),
    ]);
    let pin = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![(PROFILE_LABEL, name)];
        labels.extend_from_slice(extra);
        labelled(&labels)
    };
    // The pin wins over the first-by-name rule when it matches.
    assert_eq!(
        chosen("default", &pin("b-pinned", &[("app", "x")]), &snapshot).as_deref(),
        Some("b-pinned")
    );
    // A pin that does not match: no fallback, a warning.
    let d = decide_in("default", &pin("b-pinned", &[]), &snapshot);
    assert_eq!(
        d.outcome,
        Outcome::NotMatched(NoMatch::PinNotMatching("b-pinned".into()))
    );
    assert!(d.warnings[0].contains("b-pinned"), "{:?}", d.warnings);
    // Missing and not-ACTIVE pins count as missing.
    for name in ["nope", "c-creating"] {
        let d = decide_in("default", &pin(name, &[]), &snapshot);
        assert_eq!(
            d.outcome,
            Outcome::NotMatched(NoMatch::PinMissing(name.into()))
        );
        assert!(
            d.warnings[0].contains("does not exist or is not ACTIVE"),
            "{:?}",
            d.warnings
        );
    }
}

#[test]
fn skip_rules() {
    let snapshot = Snapshot::new(vec![active("p", &[("default", &[])])]);
    let base = json!({"metadata": {}, "spec": {"containers": [{"name": "app"}]}});
    let with = |path: &[&str], value: Value| {
        let mut v = base.clone();
        let mut at = &mut v;
        for key in &path[..path.len() - 1] {
            at = at
                .as_object_mut()
                .unwrap()
                .entry(key.to_string())
                .or_insert(json!({}));
        }
        at[path[path.len() - 1]] = value;
        pod(v)
    };
    let cases: Vec<(Pod, SkipReason)> = vec![
        (
            with(
                &["metadata", "annotations"],
                json!({COMPUTE_TYPE_ANNOTATION: "ec2"}),
            ),
            SkipReason::OptOut,
        ),
        (
            with(
                &["metadata", "ownerReferences"],
                json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "controller": true}]),
            ),
            SkipReason::DaemonSet,
        ),
        (
            with(
                &["metadata", "annotations"],
                json!({MIRROR_POD_ANNOTATION: "abc"}),
            ),
            SkipReason::MirrorPod,
        ),
        (
            with(&["spec", "nodeName"], json!("node-1")),
            SkipReason::NodeNameSet,
        ),
        (
            with(&["spec", "schedulerName"], json!("my-scheduler")),
            SkipReason::ForeignScheduler,
        ),
        (
            with(&["spec", "schedulerName"], json!("fargate-scheduler")),
            SkipReason::ForeignScheduler,
        ),
    ];
    for (pod, reason) in &cases {
        let d = decide_in("default", pod, &snapshot);
        assert_eq!(d.outcome, Outcome::Skipped(*reason));
        assert!(d.warnings.is_empty());
    }
    // Not skipped: compute-type fargate, default-scheduler, a ReplicaSet owner, empty nodeName.
    for pod in [
        with(
            &["metadata", "annotations"],
            json!({COMPUTE_TYPE_ANNOTATION: "fargate"}),
        ),
        with(&["spec", "schedulerName"], json!("default-scheduler")),
        with(
            &["metadata", "ownerReferences"],
            json!([{"kind": "ReplicaSet", "name": "rs"}]),
        ),
        with(&["spec", "nodeName"], json!("")),
    ] {
        assert!(matches!(
            decide_in("default", &pod, &snapshot).outcome,
            Outcome::Mutated { .. }
        ));
    }
    // Operation and kind.
    let p = pod(base.clone());
    for (group, kind, op, want) in [
        ("", "Pod", "UPDATE", SkipReason::NotCreate),
        ("", "Pod", "DELETE", SkipReason::NotCreate),
        ("", "Pod", "CONNECT", SkipReason::NotCreate),
        ("apps", "Deployment", "CREATE", SkipReason::NotPod),
        ("example.com", "Pod", "CREATE", SkipReason::NotPod),
    ] {
        let req = Request {
            group,
            kind,
            operation: op,
            namespace: "default",
            pod: &p,
        };
        assert_eq!(decide(&req, &snapshot, &ON).outcome, Outcome::Skipped(want));
    }
}

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
    let req = Request {
        group: "",
        kind: "Pod",
        operation: "CREATE",
        namespace: "default",
        pod: &p,
    };
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
fn pinned_pod_already_labelled_gets_no_redundant_label_op() {
    let snapshot = Snapshot::new(vec![active("fp", &[("default", &[])])]);
    let d = decide_in("default", &labelled(&[(PROFILE_LABEL, "fp")]), &snapshot);
    let ops = patch_of(&d).to_string();
    assert!(!ops.contains("/metadata/labels"), "{ops}");
    assert!(ops.contains("/metadata/annotations"), "{ops}");
}

#[test]
fn index_ignores_other_namespaces_and_finds_wildcards() {
    let mut profiles: Vec<FargateProfile> = (0..1000)
        .map(|i| {
            active(
                &format!("p{i:04}"),
                &[(&format!("ns-{i}"), &[("app", "x")])],
            )
        })
        .collect();
    profiles.push(active("zz-glob", &[("ns-5*", &[])]));
    let snapshot = Snapshot::new(profiles);
    assert_eq!(
        chosen("ns-7", &labelled(&[("app", "x")]), &snapshot).as_deref(),
        Some("p0007")
    );
    assert_eq!(chosen("ns-7", &labelled(&[]), &snapshot), None);
    assert_eq!(
        chosen("ns-5", &labelled(&[]), &snapshot).as_deref(),
        Some("zz-glob")
    );
    assert_eq!(
        chosen("ns-5", &labelled(&[("app", "x")]), &snapshot).as_deref(),
        Some("p0005")
    );
    assert_eq!(
        chosen("ns-1000", &labelled(&[("app", "x")]), &snapshot),
        None
    );
}

#[test]
fn explanation_says_why_not() {
    let snapshot = Snapshot::new(vec![
        active("a-labels", &[("default", &[("infrastructure", "fargate")])]),
        active("b-other-ns", &[("kube-*", &[])]),
        profile("c-creating", ProfileStatus::Creating, &[("default", &[])]),
        active("d-match", &[("default", &[])]),
        active("e-also", &[("def*", &[])]),
    ]);
    let p = labelled(&[("infrastructure", "ec2")]);
    let req = Request {
        group: "",
        kind: "Pod",
        operation: "CREATE",
        namespace: "default",
        pod: &p,
    };
    let e = explain::explain(&req, &snapshot, &ON);
    assert_eq!(e.chosen.as_deref(), Some("d-match"));
    let reason = |name: &str| {
        e.profiles
            .iter()
            .find(|v| v.name == name)
            .unwrap()
            .reason
            .clone()
    };
    assert_eq!(
        reason("a-labels"),
        "selector 1: label 'infrastructure' is 'ec2', selector wants 'fargate'"
    );
    assert_eq!(
        reason("b-other-ns"),
        "selector 1: namespace 'default' does not match 'kube-*'"
    );
    assert_eq!(
        reason("c-creating"),
        "status is CREATING, only ACTIVE profiles apply"
    );
    assert!(reason("d-match").starts_with("chosen"));
    assert_eq!(
        reason("e-also"),
        "matches, but 'd-match' comes first by name"
    );
    let text = e.to_string();
    assert!(text.contains("* d-match [ACTIVE]"), "{text}");
    assert!(
        text.contains("patch: replace") || text.contains("patch: add"),
        "{text}"
    );
}

#[test]
fn shadowed_selectors_are_found_only_when_certain() {
    let shadowed = |profiles: Vec<FargateProfile>| -> Vec<(String, usize, String)> {
        Snapshot::new(profiles)
            .shadowed()
            .iter()
            .map(|s| (s.profile.clone(), s.selector, s.by.clone()))
            .collect()
    };
    // An earlier profile with fewer labels in the same namespace always wins.
    assert_eq!(
        shadowed(vec![
            active("a-broad", &[("default", &[("app", "web")])]),
            active(
                "b-narrow",
                &[
                    ("other", &[]),
                    ("default", &[("app", "web"), ("tier", "1")])
                ]
            ),
        ]),
        vec![("b-narrow".to_string(), 2, "a-broad".to_string())]
    );
    // A wildcard namespace (and wildcard label value) earlier by name shadows an exact selector.
    assert_eq!(
        shadowed(vec![
            active("a-glob", &[("def*", &[("app", "w*")])]),
            active("b-exact", &[("default", &[("app", "web")])]),
        ]),
        vec![("b-exact".to_string(), 1, "a-glob".to_string())]
    );
    // Not shadowed: the earlier one needs a label the later one does not require; the later one
    // comes first by name; a label value differs; the earlier one is not ACTIVE; the later
    // selector has wildcards (containment is not claimed).
    for profiles in [
        vec![
            active("a", &[("default", &[("app", "web"), ("x", "1")])]),
            active("b", &[("default", &[("app", "web")])]),
        ],
        vec![
            active("b", &[("default", &[])]),
            active("a", &[("default", &[("app", "web")])]),
        ],
        vec![
            active("a", &[("default", &[("app", "web")])]),
            active("b", &[("default", &[("app", "api")])]),
        ],
        vec![
            profile("a", ProfileStatus::Creating, &[("default", &[])]),
            active("b", &[("default", &[])]),
        ],
        vec![
            active("a", &[("default", &[])]),
            active("b", &[("def*", &[])]),
        ],
        vec![
            active("a", &[("default", &[("app", "web")])]),
            active("b", &[("default", &[("app", "w*")])]),
        ],
    ] {
        assert_eq!(shadowed(profiles.clone()), vec![], "{profiles:?}");
    }
    // The explanation reports them.
    let snapshot = Snapshot::new(vec![
        active("a", &[("default", &[])]),
        active("b", &[("default", &[])]),
    ]);
    let p = labelled(&[]);
    let req = Request {
        group: "",
        kind: "Pod",
        operation: "CREATE",
        namespace: "default",
        pod: &p,
    };
    let text = explain::explain(&req, &snapshot, &ON).to_string();
    assert!(
        text.contains("note: selector 1 of 'b' is shadowed by 'a'"),
        "{text}"
    );
}

#[test]
fn metric_labels_and_descriptions_of_every_reason() {
    use SkipReason::*;
    let table = [
        (NotPod, "not_pod", "the object is not a Pod"),
        (NotCreate, "not_create", "the operation is not CREATE"),
        (
            OptOut,
            "opt_out",
            "the pod opts out with annotation eks.amazonaws.com/compute-type: ec2",
        ),
        (DaemonSet, "daemonset", "the pod is owned by a DaemonSet"),
        (MirrorPod, "mirror_pod", "the pod is a mirror (static) pod"),
        (
            NodeNameSet,
            "node_name_set",
            "the pod already has spec.nodeName set",
        ),
        (
            ForeignScheduler,
            "foreign_scheduler",
            "the pod asks for a scheduler other than default-scheduler",
        ),
    ];
    for (reason, label, text) in table {
        assert_eq!((reason.as_str(), reason.describe()), (label, text));
    }
    assert_eq!(NoMatch::NoProfile.as_str(), "no_profile");
    assert_eq!(NoMatch::PinMissing("p".into()).as_str(), "pin_missing");
    assert_eq!(
        NoMatch::PinNotMatching("p".into()).as_str(),
        "pin_not_matching"
    );
}

#[test]
fn explain_summaries() {
    let snapshot = Snapshot::new(vec![
        active("fp", &[("apps", &[])]),
        active("other", &[("else", &[])]),
    ]);
    let summary = |namespace: &str, pod_json: serde_json::Value| {
        let p = pod(pod_json);
        let req = Request {
            group: "",
            kind: "Pod",
            operation: "CREATE",
            namespace,
            pod: &p,
        };
        explain::explain(&req, &snapshot, &Options::default()).summary
    };
    assert_eq!(
        summary("apps", json!({"spec": {}})),
        "the pod runs on Fargate with profile 'fp'"
    );
    assert_eq!(
        summary(
            "apps",
            json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d", "controller": true}]}, "spec": {}})
        ),
        "left alone: the pod is owned by a DaemonSet"
    );
    assert_eq!(
        summary(
            "apps",
            json!({"metadata": {"labels": {PROFILE_LABEL: "gone"}}, "spec": {}})
        ),
        "not mutated: pinned profile 'gone' does not exist or is not ACTIVE"
    );
    assert_eq!(
        summary(
            "apps",
            json!({"metadata": {"labels": {PROFILE_LABEL: "other"}}, "spec": {}})
        ),
        "not mutated: pinned profile 'other' does not match the pod"
    );
    assert_eq!(
        summary("nowhere", json!({"spec": {}})),
        "no ACTIVE profile matches: the pod runs on ordinary nodes"
    );
}

#[test]
fn display_names_and_object_only_errors() {
    let name = |meta: serde_json::Value| {
        pod(json!({"metadata": meta, "spec": {}}))
            .display_name()
            .to_string()
    };
    assert_eq!(
        name(json!({"name": "web-1", "generateName": "web-"})),
        "web-1"
    );
    assert_eq!(name(json!({"name": "", "generateName": "web-"})), "web-");
    assert_eq!(name(json!({"generateName": "web-"})), "web-");
    assert_eq!(name(json!({})), "");
    let error = serde_json::from_value::<Pod>(json!({"metadata": ["n"], "spec": {}})).unwrap_err();
    assert!(
        error.to_string().contains("expected a JSON object"),
        "{error}"
    );
}

#[test]
fn glob_label_keys_need_key_and_value_to_match_on_one_label() {
    let snapshot = Snapshot::new(vec![active("fp", &[("apps", &[("app*", "web")])])]);
    for (labels, matched) in [
        (json!({"apple": "web"}), true),
        (json!({"apple": "other"}), false),
        (json!({"apple": "other", "zone": "web"}), false),
        (json!({"zone": "web"}), false),
    ] {
        let d = decide_in(
            "apps",
            &pod(json!({"metadata": {"labels": labels}, "spec": {}})),
            &snapshot,
        );
        assert_eq!(
            matches!(d.outcome, Outcome::Mutated { .. }),
            matched,
            "{labels}"
        );
    }
}

#[test]
fn shadowing_is_claimed_only_for_exact_labels_and_within_the_check_limit() {
    // A later selector with a wildcard label value is never claimed shadowed.
    let s = Snapshot::new(vec![
        active("a", &[("x", &[])]),
        active("b", &[("x", &[("app", "web*")])]),
    ]);
    assert!(s.shadowed().is_empty(), "{:?}", s.shadowed());
    let s = Snapshot::new(vec![
        active("a", &[("x", &[])]),
        active("b", &[("x", &[("app", "web")])]),
    ]);
    assert_eq!(s.shadowed().len(), 1);
    // The check covers namespaces with up to 1,000 selectors (exact ones plus wildcard ones).
    let many = |exact: usize| {
        let mut profiles = vec![
            active("a", &[("x", &[])]),
            active("b-wild", &[("*", &[("never", "x")])]),
        ];
        for i in 1..exact {
            profiles.push(active(&format!("p{i:04}"), &[("x", &[("n", "v")])]));
        }
        Snapshot::new(profiles)
    };
    assert_eq!(
        many(999).shadowed().len(),
        998,
        "999 exact + 1 wildcard = 1,000: checked"
    );
    assert!(many(1000).shadowed().is_empty(), "1,001: not checked");
}

#[test]
fn a_glob_key_mismatch_reports_the_value_of_the_label_whose_key_matched() {
    let snapshot = Snapshot::new(vec![active("fp", &[("apps", &[("app*", "web")])])]);
    let profile = snapshot.get("fp").unwrap();
    // "a" sorts before "apple": the reported value must be apple's, not the first label's.
    let labels: std::collections::BTreeMap<String, String> = [("a", "x"), ("apple", "other")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mismatch = index::selector_mismatch(&profile.selectors[0], "apps", &labels).unwrap();
    assert!(
        matches!(mismatch, index::Mismatch::LabelValue { got: "other", .. }),
        "{mismatch:?}"
    );
}
