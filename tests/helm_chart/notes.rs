//! What NOTES warn about on day one: `failurePolicy: Fail` with kube-system sent to the webhook, and the
//! clusters (GKE) that refuse the `system-node-critical` priority the mutation gives.

use super::{NS, helm, install_notes};

const FAIL_WARNING: &str =
    "WARNING: webhook.failurePolicy=Fail with kube-system sent to the webhook";

#[test]
fn fail_with_kube_system_in_scope_warns() {
    let Some(helm) = helm() else { return };
    let cases: [(&str, &[&str], bool); 5] = [
        (NS, &[], false),
        (NS, &["webhook.failurePolicy=Fail"], true),
        (
            NS,
            &[
                "webhook.failurePolicy=Fail",
                "webhook.excludeNamespaces={monitoring}",
            ],
            true,
        ),
        (
            NS,
            &[
                "webhook.failurePolicy=Fail",
                "webhook.excludeNamespaces={monitoring,kube-system}",
            ],
            false,
        ),
        // Installed into kube-system, whose pods the webhook never sees (its own namespace).
        ("kube-system", &["webhook.failurePolicy=Fail"], false),
    ];
    for (ns, sets, warned) in cases {
        let (notes, r) = install_notes(helm, ns, sets);
        assert_eq!(
            notes.contains(FAIL_WARNING),
            warned,
            "-n {ns} {sets:?}:\n{notes}"
        );
        // The warning follows what the webhook configuration really sends.
        let hook = r.webhook();
        let kube_system_sent = !r.excluded_namespaces().contains(&"kube-system".into());
        let fail = hook["failurePolicy"] == "Fail";
        assert_eq!(fail && kube_system_sent, warned, "-n {ns} {sets:?}");
        if warned {
            assert!(
                notes.contains("--set 'webhook.excludeNamespaces={kube-system}'"),
                "{notes}"
            );
        }
    }
}

#[test]
fn the_notes_name_the_ways_out_of_a_refused_priority_class() {
    let Some(helm) = helm() else { return };
    let (notes, r) = install_notes(helm, NS, &[]);
    for needed in [
        "priorityClassName system-node-critical",
        "insufficient quota to match these scopes",
        "a ResourceQuota scoped to",
        "PriorityClass system-node-critical",
        "--set priorityOverride=false",
    ] {
        assert!(notes.contains(needed), "{needed:?} missing:\n{notes}");
    }
    assert_eq!(r.flags()["--priority-override"], "true");
    // Without the override the pods keep their own class: nothing to warn about.
    let (notes, r) = install_notes(helm, NS, &["priorityOverride=false"]);
    assert!(!notes.contains("system-node-critical"), "{notes}");
    assert_eq!(r.flags()["--priority-override"], "false");
}
