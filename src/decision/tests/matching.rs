//! Which profile a pod gets: the selector table, active profiles only, the tie-break, pinned profiles,
//! the skip rules, glob label keys and the namespace index.

use super::*;

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
