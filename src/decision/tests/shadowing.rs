//! Shadowed selectors: claimed only when certain, for exact labels, within the check limit.

use super::*;

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
    let req = create_in("default", &p);
    let text = explain::explain(&req, &snapshot, &ON).to_string();
    assert!(
        text.contains("note: selector 1 of 'b' is shadowed by 'a'"),
        "{text}"
    );
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
fn the_explanation_notes_catch_all_selectors() {
    let snapshot = Snapshot::new(vec![active("all", &[("*", &[])])]);
    let p = labelled(&[]);
    let req = create_in("default", &p);
    let text = explain::explain(&req, &snapshot, &ON).to_string();
    assert!(
        text.contains("note: selector 1 of 'all' (namespace '*') also takes every pod of kube-system, kube-public, kube-node-lease"),
        "{text}"
    );
}

#[test]
fn wildcards_that_reach_system_namespaces_are_catch_alls() {
    use ProfileStatus::*;
    let snapshot = Snapshot::new(vec![
        profile("all", Active, &[("*", &[])]),
        profile(
            "kube",
            Active,
            &[("team-a", &[]), ("kube-*", &[("app", "x")])],
        ),
        profile("system", Active, &[("*-system", &[])]),
        profile("exact", Active, &[("kube-system", &[])]),
        profile("teams", Active, &[("team-*", &[]), ("?", &[])]),
        profile("creating", Creating, &[("*", &[])]),
    ]);
    let found: Vec<(String, usize, Vec<&str>, bool)> = snapshot
        .catch_all()
        .iter()
        .map(|c| (c.profile.clone(), c.selector, c.takes.clone(), c.labelled))
        .collect();
    let all = vec!["kube-system", "kube-public", "kube-node-lease"];
    assert_eq!(
        found,
        vec![
            ("all".to_string(), 1, all.clone(), false),
            ("kube".to_string(), 2, all, true),
            ("system".to_string(), 1, vec!["kube-system"], false),
        ]
    );
    assert!(
        snapshot.catch_all()[1].message().contains(
            "also takes the pods with its labels of kube-system, kube-public, kube-node-lease"
        ),
        "{}",
        snapshot.catch_all()[1].message()
    );
    let message = snapshot.catch_all()[2].message();
    assert_eq!(
        message,
        "selector 1 of 'system' (namespace '*-system') also takes every pod of kube-system: the cluster's own components would run on Fargate"
    );
}
