//! Why a pod was not mutated, in explanations, metric labels, summaries and display names.

use super::*;

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
    let req = create_in("default", &p);
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
        let req = create_in(namespace, &p);
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

/// A glob label key reports the value of the label whose key matched, not the first label's; when
/// no key matches, the label is missing, whatever other labels the pod has.
#[test]
fn a_glob_key_mismatch_reports_the_value_of_the_label_whose_key_matched() {
    let snapshot = Snapshot::new(vec![active("fp", &[("apps", &[("app*", "web")])])]);
    let profile = snapshot.get("fp").unwrap();
    let labels = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    // "a" sorts before "apple": the reported value must be apple's.
    let matched_key = labels(&[("a", "x"), ("apple", "other")]);
    let mismatch = index::selector_mismatch(&profile.selectors[0], "apps", &matched_key).unwrap();
    assert!(
        matches!(mismatch, index::Mismatch::LabelValue { got: "other", .. }),
        "{mismatch:?}"
    );
    let no_key = labels(&[("a", "x"), ("tier", "web")]);
    let mismatch = index::selector_mismatch(&profile.selectors[0], "apps", &no_key).unwrap();
    assert!(
        matches!(mismatch, index::Mismatch::MissingLabel(_)),
        "{mismatch:?}"
    );
}

#[test]
fn explanation_says_whether_the_generated_condition_sends_the_pod() {
    let snapshot = Snapshot::new(vec![
        profile("a-creating", ProfileStatus::Creating, &[("new", &[])]),
        active("b-web", &[("web", &[("app", "web-*")])]),
        profile("c-deleting", ProfileStatus::Deleting, &[("old", &[])]),
    ]);
    let line = |ns: &str, pod: &Pod| {
        let text = explain::explain(&create_in(ns, pod), &snapshot, &ON).to_string();
        text.lines()
            .find(|l| l.starts_with("webhook call (generated matchConditions): "))
            .unwrap_or_else(|| panic!("no webhook call line in\n{text}"))
            .trim_start_matches("webhook call (generated matchConditions): ")
            .to_owned()
    };
    let web = labelled(&[("app", "web-1")]);
    assert_eq!(
        line("web", &web),
        "yes, selector 1 of profile 'b-web' (ACTIVE) selects it"
    );
    // Before it matches anything, a CREATING profile's pods are already sent.
    assert_eq!(
        line("new", &labelled(&[])),
        "yes, selector 1 of profile 'a-creating' (CREATING) selects it"
    );
    assert_eq!(
        line("old", &labelled(&[])),
        "no, no selector of a CREATING or ACTIVE profile selects it"
    );
    assert_eq!(
        line("web", &labelled(&[(PROFILE_LABEL, "gone")])),
        "yes, it pins profile 'gone' (eks.amazonaws.com/fargate-profile)"
    );
    let mut daemon = pod(json!({"metadata": {"labels": {"app": "web-1"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d", "uid": "u"}]},
        "spec": {"containers": [{"name": "app"}]}}));
    assert_eq!(
        line("web", &daemon),
        "no, left alone before the call: the pod is owned by a DaemonSet"
    );
    daemon.metadata.owner_references.clear();
    assert!(line("web", &daemon).starts_with("yes"));
}
