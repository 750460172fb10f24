//! The generated `matchConditions` expression, evaluated by a CEL interpreter against the same pods
//! `decide` sees: it lets through every pod the webhook would mutate or warn, and with ACTIVE
//! profiles only, nothing else.

use super::*;
use crate::decision::reach::{
    CONDITION_NAME, MAX_EXPRESSION_LEN, Reach, not_skipped, reach, reaches,
};
use proptest::prelude::*;
use proptest::sample::select;

/// What the apiserver would make of the condition for a pod created in `ns`.
fn lets_through(expression: &str, ns: &str, pod: &Value) -> bool {
    let program = cel::Program::compile(expression)
        .unwrap_or_else(|e| panic!("the expression does not compile: {e}\n{expression}"));
    let mut context = cel::Context::default();
    context.add_variable("object", pod.clone()).expect("object");
    context
        .add_variable("request", json!({"namespace": ns, "operation": "CREATE"}))
        .expect("request");
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => b,
        other => panic!("the expression did not give a boolean: {other:?}\n{expression}"),
    }
}

/// Whether the apiserver sends the pod to the webhook under what the writer makes of `reach`: the
/// chart's webhook (its `namespaceSelector` narrowed to `reach.namespaces`, then the expression) or
/// the pin webhook (the other namespaces, an `objectSelector` on the pin label, the skip rules).
/// Never both.
fn sent(reach: &Reach, ns: &str, pod: &Value) -> bool {
    let narrowed_in = reach.namespaces.as_ref().is_none_or(|set| set.contains(ns));
    let main = narrowed_in && (!reach.condition_needed || lets_through(&reach.expression, ns, pod));
    let pinned = pod["metadata"]["labels"]
        .get("eks.amazonaws.com/fargate-profile")
        .is_some();
    let pins = !narrowed_in && pinned && lets_through(&not_skipped(), ns, pod);
    assert!(!(main && pins), "called twice: {ns} {pod}");
    main || pins
}

/// The webhook does something with the pod: a patch or a warning. Checked against what `explain`
/// says of the condition on the way.
fn acts(ns: &str, pod: &Value, profiles: &[FargateProfile]) -> bool {
    let snapshot = Snapshot::new(profiles.to_vec());
    let pod = super::pod(pod.clone());
    let decision = decide_in(ns, &pod, &snapshot);
    let acts = matches!(decision.outcome, Outcome::Mutated { .. }) || !decision.warnings.is_empty();
    let said = reaches(&create_in(ns, &pod), &snapshot);
    if profiles.iter().all(|p| p.status == ProfileStatus::Active) {
        assert_eq!(said.reaches, acts, "explain says {said:?}");
    }
    acts
}

fn with_labels(labels: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app"}]}})
}

fn bare() -> Value {
    json!({"metadata": {}, "spec": {"containers": [{"name": "app"}]}})
}

#[test]
fn the_condition_lets_through_exactly_what_decide_acts_on() {
    let profiles = vec![
        active("exact", &[("apps", &[])]),
        active(
            "labelled",
            &[("web", &[("tier", "front"), ("app", "web-*")])],
        ),
        active(
            "globs",
            &[("team-?", &[]), ("*-dev", &[("team-*", "blue")])],
        ),
        active("dotted", &[("data", &[("app.kubernetes.io/name", "a.b")])]),
        active("any-value", &[("batch-*", &[("job", "*")])]),
    ];
    let reached = reach(&profiles);
    let mut opt_out = with_labels(&[]);
    opt_out["metadata"]["annotations"] = json!({"eks.amazonaws.com/compute-type": "ec2"});
    let mut daemon = bare();
    daemon["metadata"]["ownerReferences"] = json!([{"kind": "DaemonSet", "name": "d"}]);
    let mut mirror = bare();
    mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
    let mut placed = bare();
    placed["spec"]["nodeName"] = json!("n1");
    let mut foreign = bare();
    foreign["spec"]["schedulerName"] = json!("other");
    let mut default_scheduler = bare();
    default_scheduler["spec"]["schedulerName"] = json!("default-scheduler");
    let pinned = with_labels(&[("eks.amazonaws.com/fargate-profile", "missing")]);
    // (namespace, pod, reaches the webhook)
    let cases: Vec<(&str, Value, bool)> = vec![
        ("apps", bare(), true),
        ("apps2", bare(), false),
        (
            "web",
            with_labels(&[("tier", "front"), ("app", "web-1")]),
            true,
        ),
        (
            "web",
            with_labels(&[("tier", "front"), ("app", "api")]),
            false,
        ),
        ("web", with_labels(&[("tier", "front")]), false),
        ("web", bare(), false),
        ("team-a", bare(), true),
        ("team-ab", bare(), false),
        (
            "x-dev",
            with_labels(&[("team-x", "red"), ("team-y", "blue")]),
            true,
        ),
        ("x-dev", with_labels(&[("team-x", "red")]), false),
        (
            "data",
            with_labels(&[("app.kubernetes.io/name", "a.b")]),
            true,
        ),
        // `.` is literal: not "any character".
        (
            "data",
            with_labels(&[("app.kubernetes.io/name", "axb")]),
            false,
        ),
        ("batch-1", with_labels(&[("job", "")]), true),
        ("batch-1", bare(), false),
        ("kube-system", bare(), false),
        // Skipped whatever the profiles.
        ("apps", opt_out, false),
        ("apps", daemon, false),
        ("apps", mirror, false),
        ("apps", placed, false),
        ("apps", foreign, false),
        ("apps", default_scheduler, true),
        // A pin is warned about anywhere.
        ("elsewhere", pinned, true),
    ];
    for (i, (ns, pod, want)) in cases.iter().enumerate() {
        assert_eq!(
            acts(ns, pod, &profiles),
            *want,
            "case {i}: decide, {ns} {pod}"
        );
        assert_eq!(
            sent(&reached, ns, pod),
            *want,
            "case {i}: the condition, {ns} {pod}\n{reached:?}"
        );
    }
}

#[test]
fn exact_namespaces_narrow_the_webhook_and_pins_elsewhere_take_the_second_one() {
    let profiles = vec![
        active("a", &[("apps", &[]), ("web", &[("tier", "front")])]),
        profile("b", ProfileStatus::Creating, &[("new", &[])]),
        profile("c", ProfileStatus::Deleting, &[("old", &[])]),
    ];
    let got = reach(&profiles);
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    assert_eq!(got.namespaces, Some(names(&["apps", "new", "web"])));
    let pinned = with_labels(&[("eks.amazonaws.com/fargate-profile", "x")]);
    let mut pinned_daemon = pinned.clone();
    pinned_daemon["metadata"]["ownerReferences"] = json!([{"kind": "DaemonSet", "name": "d"}]);
    for (ns, pod, want) in [
        ("apps", bare(), true),
        ("web", bare(), false),
        ("web", with_labels(&[("tier", "front")]), true),
        ("new", bare(), true),
        ("old", bare(), false),
        ("elsewhere", bare(), false),
        ("elsewhere", pinned.clone(), true),
        ("apps", pinned, true),
        ("elsewhere", pinned_daemon, false),
    ] {
        assert_eq!(sent(&got, ns, &pod), want, "{ns} {pod}");
    }
    // One wildcard namespace: no narrowing.
    let glob = reach(&[
        active("g", &[("team-*", &[])]),
        active("e", &[("apps", &[])]),
    ]);
    assert_eq!(glob.namespaces, None);
    assert!(sent(&glob, "team-a", &bare()) && !sent(&glob, "other", &bare()));
}

#[test]
fn creating_profiles_are_let_through_before_they_turn_active() {
    for status in ProfileStatus::ALL {
        let profiles = vec![profile("p", status, &[("apps", &[])])];
        let got = reach(&profiles);
        let live = matches!(status, ProfileStatus::Creating | ProfileStatus::Active);
        assert_eq!(sent(&got, "apps", &bare()), live, "{status}");
        assert_eq!(got.covered.contains("p"), live, "{status}");
        assert_eq!(got.fallback, None);
        let snapshot = Snapshot::new(profiles.clone());
        let said = reaches(&create_in("apps", &pod(bare())), &snapshot);
        assert_eq!(said.reaches, live, "{status}: {said:?}");
    }
}

#[test]
fn without_profiles_only_pins_reach_the_webhook() {
    let got = reach(&[]);
    assert!(got.covered.is_empty());
    assert!(!sent(&got, "default", &bare()));
    let pinned = with_labels(&[("eks.amazonaws.com/fargate-profile", "p")]);
    assert!(sent(&got, "default", &pinned));
    // No namespace needs the chart's webhook: the pin webhook takes every namespace.
    assert_eq!(got.namespaces, Some(Default::default()));
}

#[test]
fn what_cannot_be_written_sends_every_pod() {
    // A character the CRD refuses but a profiles file could hold.
    let odd = vec![
        active("odd", &[("apps", &[("k", "a b")])]),
        active("b", &[("b", &[])]),
    ];
    let got = reach(&odd);
    assert_eq!(got.expression, "true");
    assert_eq!(got.covered.len(), 2);
    assert!(
        got.fallback.as_deref().unwrap().contains("'odd'"),
        "{got:?}"
    );
    // Too long: many profiles of long label patterns.
    let long_value = "v".repeat(60) + "*";
    let labels: Vec<(String, String)> = (0..5)
        .map(|i| (format!("key-{i}-{}", "k".repeat(50)), long_value.clone()))
        .collect();
    let labels: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let many: Vec<FargateProfile> = (0..40)
        .map(|i| {
            let ns = format!("ns-{i}-*");
            active(&format!("p{i}"), &[(&ns, &labels), (&ns, &labels[..4])])
        })
        .collect();
    let got = reach(&many);
    assert_eq!(got.expression, "true");
    assert!(
        got.fallback
            .unwrap()
            .contains(&MAX_EXPRESSION_LEN.to_string())
    );
}

#[test]
fn the_expression_does_not_depend_on_the_order_of_profiles_or_selectors() {
    let a = active("a", &[("x", &[]), ("y-*", &[("k", "v")])]);
    let b = active("b", &[("z", &[]), ("x", &[])]);
    let one = reach(&[a.clone(), b.clone()]);
    let two = reach(&[b, a]);
    assert_eq!(one, two);
    // Exact namespaces without labels are one `in` list, each written once.
    assert_eq!(
        one.expression.matches("'x'").count(),
        1,
        "{}",
        one.expression
    );
}

#[test]
fn the_condition_name_is_a_qualified_name() {
    // The apiserver requires a qualified name (an optional DNS prefix, `/`, a name of at most 63).
    let (prefix, name) = CONDITION_NAME.split_once('/').unwrap();
    assert!(prefix.contains('.') && name.len() <= 63);
    assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
}

fn arb_pattern(words: &'static [&'static str]) -> impl Strategy<Value = String> {
    (select(words), select(&["", "*", "?", "-*", "?x"][..]))
        .prop_map(|(w, wild)| format!("{w}{wild}"))
}

fn arb_selector() -> impl Strategy<Value = (String, Vec<(String, String)>)> {
    (
        prop_oneof![arb_pattern(&["a", "ab", "b", "a-b"]), Just("*".to_string())],
        proptest::collection::vec(
            (
                arb_pattern(&["k", "k.x", "app"]),
                arb_pattern(&["v", "v1", "w"]),
            ),
            0..3,
        ),
    )
}

fn arb_pod() -> impl Strategy<Value = (String, Vec<(String, String)>, bool)> {
    (
        select(&["a", "ab", "abc", "b", "a-b", "a-bx", "x"][..]),
        proptest::collection::vec(
            (
                select(&["k", "kx", "k.x", "k-1", "app", "k-x"][..]),
                select(&["v", "v1", "w", "v-1", "", "vx"][..]),
            ),
            0..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(ns, labels, pin)| {
            let labels = labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()));
            (ns.to_string(), labels.collect(), pin)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// With ACTIVE profiles the condition is exactly "the webhook acts on this pod".
    #[test]
    fn the_condition_agrees_with_decide(
        selectors in proptest::collection::vec(proptest::collection::vec(arb_selector(), 1..3), 0..4),
        pods in proptest::collection::vec(arb_pod(), 1..8),
    ) {
        let profiles: Vec<FargateProfile> = selectors
            .iter()
            .enumerate()
            .map(|(i, sels)| {
                let mut p = active(&format!("p{i}"), &[]);
                p.selectors = sels
                    .iter()
                    .map(|(ns, labels)| crate::profile::Selector {
                        namespace: Some(ns.clone()),
                        labels: labels.iter().cloned().collect(),
                    })
                    .collect();
                p
            })
            .collect();
        let reached = reach(&profiles);
        for (ns, labels, pin) in &pods {
            let mut labels: Vec<(&str, &str)> =
                labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            if *pin {
                labels.push(("eks.amazonaws.com/fargate-profile", "p0"));
            }
            let pod = with_labels(&labels);
            let (sent, acts) = (sent(&reached, ns, &pod), acts(ns, &pod, &profiles));
            // Every pod the webhook acts on is sent; with a condition, nothing else is. Without one
            // (exact namespaces, no labels) the pods of those namespaces are all sent.
            prop_assert!(sent || !acts, "{} {}\n{:?}", ns, pod, reached);
            if reached.condition_needed {
                prop_assert_eq!(sent, acts, "{} {}\n{:?}", ns, pod, reached);
            } else {
                let in_namespaces = reached.namespaces.as_ref().is_some_and(|n| n.contains(ns.as_str()));
                prop_assert_eq!(sent, in_namespaces || acts, "{} {}\n{:?}", ns, pod, reached);
            }
        }
    }
}
