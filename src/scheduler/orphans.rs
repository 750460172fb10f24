//! Which pods of `fargate-scheduler` must go because their profile is not ACTIVE (docs/eks-behaviour.md
//! §9, "Profile deletion"). Level-based: decided from the pods and profiles as they are now, whatever
//! changes were or were not seen before, so a profile deleted while no scheduler ran, or between two
//! looks, loses its pods like any other. Pure: no I/O.

use crate::profile::PROFILE_LABEL;
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeSet;

/// The profile a pod was placed for: its label, else its annotation (a name too long for a label).
pub fn profile_of(pod: &Pod) -> Option<&str> {
    let meta = &pod.metadata;
    meta.labels
        .as_ref()
        .and_then(|l| l.get(PROFILE_LABEL))
        .or_else(|| meta.annotations.as_ref().and_then(|a| a.get(PROFILE_LABEL)))
        .map(String::as_str)
}

/// The pods to remove: bound, not already being deleted, naming a profile that is not in `active`.
/// Unbound pods are the placement's business (it refuses them), and pods naming no profile were not
/// sent by the webhook: both are left alone.
pub fn orphaned<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    active: &BTreeSet<String>,
) -> Vec<&'a Pod> {
    pods.into_iter()
        .filter(|pod| {
            let bound = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty());
            bound
                && pod.metadata.deletion_timestamp.is_none()
                && profile_of(pod).is_some_and(|p| !active.contains(p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, label: Option<&str>, annotation: Option<&str>) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "apps"},
            "spec": {"containers": [{"name": "app"}], "schedulerName": "fargate-scheduler"}
        }))
        .unwrap();
        if let Some(node) = node {
            p.spec.as_mut().unwrap().node_name = Some(node.into());
        }
        if let Some(l) = label {
            p.metadata.labels = Some([(PROFILE_LABEL.to_string(), l.to_string())].into());
        }
        if let Some(a) = annotation {
            p.metadata.annotations = Some([(PROFILE_LABEL.to_string(), a.to_string())].into());
        }
        p
    }

    fn names(pods: Vec<&Pod>) -> Vec<&str> {
        pods.iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn bound_pods_of_a_profile_that_is_not_active_are_orphaned() {
        let active: BTreeSet<String> = ["kept".to_string()].into();
        let mut deleting = pod("deleting", Some("n"), Some("gone"), None);
        deleting.metadata.deletion_timestamp = Some(Time(Default::default()));
        let pods = [
            pod("of-kept", Some("n"), Some("kept"), None),
            pod("of-gone", Some("n"), Some("gone"), None),
            pod("long-name", Some("n"), None, Some("gone-with-a-long-name")),
            pod("long-name-kept", Some("n"), None, Some("kept")),
            pod("unbound", None, Some("gone"), None),
            pod("empty-node", Some(""), Some("gone"), None),
            pod("no-profile", Some("n"), None, None),
            deleting,
        ];
        assert_eq!(names(orphaned(&pods, &active)), ["of-gone", "long-name"]);
    }

    #[test]
    fn with_no_active_profile_every_bound_pod_of_a_profile_goes() {
        let pods = [
            pod("a", Some("n"), Some("p1"), None),
            pod("b", Some("n"), Some("p2"), None),
        ];
        assert_eq!(names(orphaned(&pods, &BTreeSet::new())), ["a", "b"]);
    }

    #[test]
    fn the_label_wins_over_the_annotation() {
        let p = pod("x", Some("n"), Some("label"), Some("annotation"));
        assert_eq!(profile_of(&p), Some("label"));
        assert_eq!(profile_of(&pod("y", None, None, None)), None);
    }
}
