//! The scheduler's check of one pod, pure: the profile it was sent to must exist, be ACTIVE and
//! still select it; Fargate must be able to run it; a Fargate node of the profile must satisfy its
//! node selector and affinity; it must fit the largest size. The texts are EKS's
//! (docs/eks-behaviour.md §5 and §9). `explain` calls [`judge`] too, so it gives the same verdict.

use super::sizing::{self, Size, SizingError};
use crate::decision::index::profile_matches;
use crate::decision::node_selection;
use crate::decision::pod::Pod;
use crate::decision::unsupported::{self, Claim};
use crate::decision::{Snapshot, pod_labels};
use crate::profile::{PROFILE_LABEL, ProfileStatus};

/// Where the pod goes, or why it does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Runs on Fargate: its profile, its vCPU/memory combination and the ephemeral storage
    /// provisioned for it, in GiB.
    Place {
        profile: String,
        size: Size,
        storage_gib: u64,
    },
    Refuse(Refusal),
}

/// A `FailedScheduling` event: `reason` labels the metric, `message` is the event's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    /// The reasons, for metrics that list every series up front.
    pub const REASONS: [&'static str; 9] = [
        "profile_missing",
        "profile_not_active",
        "profile_not_matching",
        "profile_role_path",
        "unsupported",
        "node_selector",
        "too_large",
        "storage_too_large",
        "bad_quantity",
    ];

    /// The reason of the pod's `PodScheduled` condition (False) that goes with this refusal: EKS's
    /// for a pod Fargate cannot run and for one over the largest size, `Unschedulable` for the
    /// others ([D]: no capture shows EKS's) (docs/eks-behaviour.md §9).
    pub fn condition_reason(&self) -> &'static str {
        match self.reason {
            "unsupported" | "bad_quantity" => UNSUPPORTED_CONDITION_REASON,
            "too_large" => sizing::TOO_LARGE_REASON,
            _ => UNSCHEDULABLE,
        }
    }
}

/// EKS's `PodScheduled` reason for a pod Fargate cannot run (`Pod not supported on Fargate: …`).
pub const UNSUPPORTED_CONDITION_REASON: &str = "POD_UNSUPPORTED_ON_FARGATE";
/// Kubernetes' reason for a pod no node takes.
pub const UNSCHEDULABLE: &str = "Unschedulable";

/// Whether a `PodScheduled` reason is one this scheduler's refusals set (a refused pod is not
/// tried again, also not by a later process).
pub fn is_refusal_reason(reason: &str) -> bool {
    [
        UNSCHEDULABLE,
        UNSUPPORTED_CONDITION_REASON,
        sizing::TOO_LARGE_REASON,
    ]
    .contains(&reason)
}

/// EKS's event for a profile that cannot launch pods; the cause after `due to:` is ours [D].
fn blocked(profile: &str, cause: &str) -> String {
    format!(
        "Misconfigured Fargate Profile: fargate profile {profile} blocked for new launches due to: {cause}"
    )
}

/// Judge `pod` (in `namespace`) against the profiles now; `claim` says what the cluster knows of
/// each claim the pod mounts. The region of the Fargate nodes is not known here: requirements on
/// region and zone are left to [`judge_in`].
pub fn judge(
    pod: &Pod,
    namespace: &str,
    snapshot: &Snapshot,
    claim: &dyn Fn(&str) -> Claim,
) -> Verdict {
    judge_in(pod, namespace, snapshot, claim, None)
}

/// [`judge`], knowing the `region` of the Fargate nodes (`None`: not known): a pod that no Fargate
/// node of its profile satisfies, in any of the profile's zones, is refused.
pub fn judge_in(
    pod: &Pod,
    namespace: &str,
    snapshot: &Snapshot,
    claim: &dyn Fn(&str) -> Claim,
    region: Option<&str>,
) -> Verdict {
    let refuse = |reason, message| Verdict::Refuse(Refusal { reason, message });
    let Some(name) = pod.label(PROFILE_LABEL) else {
        return refuse(
            "profile_missing",
            format!(
                "Pod has no {PROFILE_LABEL} label: it was not admitted through the Fargate webhook"
            ),
        );
    };
    let Some(profile) = snapshot.get(name) else {
        return refuse(
            "profile_missing",
            blocked(name, "the profile does not exist"),
        );
    };
    if profile.status() != ProfileStatus::Active {
        return refuse(
            "profile_not_active",
            blocked(name, &format!("the profile is {}", profile.status())),
        );
    }
    if !profile_matches(profile, namespace, pod_labels(pod)) {
        return refuse(
            "profile_not_matching",
            blocked(name, "no selector of the profile matches the pod"),
        );
    }
    // A role with a path cannot be mapped into the cluster's auth config, so EKS's Fargate nodes
    // cannot register with it: EKS accepts the profile, then refuses its pods with this text.
    if crate::profile::role_has_path(&profile.profile.pod_execution_role_arn) {
        return refuse(
            "profile_role_path",
            blocked(
                name,
                "Pod execution role is not found in auth config or does not have all required permissions for launching fargate pods.",
            ),
        );
    }
    if let Some(message) = unsupported::check(pod, claim) {
        return refuse("unsupported", message);
    }
    if !node_selection::satisfiable(pod, region, profile.profile.subnets.len()) {
        return refuse("node_selector", node_selection::refusal(name));
    }
    match sizing::provision(pod) {
        Ok((size, storage_gib)) => Verdict::Place {
            profile: name.to_string(),
            size,
            storage_gib,
        },
        Err(SizingError::TooLarge(_)) => refuse("too_large", sizing::TOO_LARGE_MESSAGE.into()),
        Err(SizingError::StorageTooLarge(_)) => refuse(
            "storage_too_large",
            sizing::STORAGE_TOO_LARGE_MESSAGE.into(),
        ),
        Err(error) => refuse(
            "bad_quantity",
            format!("Pod not supported on Fargate: {error}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::FargateProfile;
    use serde_json::json;

    fn profile(name: &str, namespace: &str, status: ProfileStatus) -> FargateProfile {
        FargateProfile::fixture(name, namespace, status)
    }

    fn pod(label: Option<&str>, spec: serde_json::Value) -> Pod {
        let labels = label
            .map(|l| json!({PROFILE_LABEL: l}))
            .unwrap_or(json!({}));
        serde_json::from_value(json!({"metadata": {"labels": labels}, "spec": spec})).unwrap()
    }

    #[test]
    fn verdicts() {
        let mut pathed = profile("pathed", "paths", ProfileStatus::Active);
        pathed.pod_execution_role_arn = "arn:aws:iam::012345678910:role/team/PodRole".into();
        let mut plain_role = profile("fp", "apps", ProfileStatus::Active);
        plain_role.pod_execution_role_arn = "arn:aws:iam::012345678910:role/PodRole".into();
        let snapshot = Snapshot::new(vec![
            plain_role,
            profile("going", "apps", ProfileStatus::Deleting),
            pathed,
        ]);
        let plain = json!({"containers": [{"name": "a"}]});
        let none = |_: &str| Claim::Unknown;
        type Case<'a> = (
            Option<&'a str>,
            &'a str,
            serde_json::Value,
            Result<&'a str, (&'a str, &'a str)>,
        );
        let cases: Vec<Case> = vec![
            (Some("fp"), "apps", plain.clone(), Ok("0.25vCPU 0.5GB")),
            (
                Some("fp"),
                "apps",
                json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "ephemeral-storage": "100Gi"}}}]}),
                Ok("1vCPU 2GB, 115GiB"),
            ),
            (
                None,
                "apps",
                plain.clone(),
                Err((
                    "profile_missing",
                    "Pod has no eks.amazonaws.com/fargate-profile label: it was not admitted through the Fargate webhook",
                )),
            ),
            (
                Some("gone"),
                "apps",
                plain.clone(),
                Err((
                    "profile_missing",
                    "Misconfigured Fargate Profile: fargate profile gone blocked for new launches due to: the profile does not exist",
                )),
            ),
            (
                Some("going"),
                "apps",
                plain.clone(),
                Err((
                    "profile_not_active",
                    "Misconfigured Fargate Profile: fargate profile going blocked for new launches due to: the profile is DELETING",
                )),
            ),
            (
                Some("fp"),
                "other",
                plain.clone(),
                Err((
                    "profile_not_matching",
                    "Misconfigured Fargate Profile: fargate profile fp blocked for new launches due to: no selector of the profile matches the pod",
                )),
            ),
            (
                Some("fp"),
                "apps",
                json!({"hostNetwork": true, "containers": [{"name": "a"}]}),
                Err((
                    "unsupported",
                    "Pod not supported on Fargate: fields not supported: HostNetwork",
                )),
            ),
            (
                Some("fp"),
                "apps",
                json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "32"}}}]}),
                Err((
                    "too_large",
                    "Your pod's cpu/memory requirements exceed the max Fargate configuration",
                )),
            ),
            (
                Some("fp"),
                "apps",
                json!({"containers": [{"name": "a", "resources": {"requests": {"ephemeral-storage": "176Gi"}}}]}),
                Err((
                    "storage_too_large",
                    "Your pod's ephemeral-storage requirements exceed the max Fargate configuration",
                )),
            ),
            (
                Some("fp"),
                "apps",
                json!({"containers": [{"name": "a", "resources": {"requests": {"ephemeral-storage": "a lot"}}}]}),
                Err((
                    "bad_quantity",
                    "Pod not supported on Fargate: container a: 'a lot' is not a Kubernetes quantity",
                )),
            ),
            (
                Some("fp"),
                "apps",
                json!({"containers": [{"name": "a", "resources": {"requests": {"memory": "a lot"}}}]}),
                Err((
                    "bad_quantity",
                    "Pod not supported on Fargate: container a: 'a lot' is not a Kubernetes quantity",
                )),
            ),
        ];
        for (label, namespace, spec, expected) in cases {
            let got = judge(&pod(label, spec.clone()), namespace, &snapshot, &none);
            let expected = match expected {
                Ok(size) => {
                    assert!(
                        matches!(&got, Verdict::Place { profile, .. } if profile == "fp"),
                        "{got:?}"
                    );
                    let Verdict::Place {
                        size: s,
                        storage_gib,
                        ..
                    } = &got
                    else {
                        unreachable!()
                    };
                    let (size, storage) = size.split_once(", ").unwrap_or((size, "20GiB"));
                    assert_eq!(s.to_string(), size);
                    assert_eq!(format!("{storage_gib}GiB"), storage);
                    continue;
                }
                Err((reason, message)) => Verdict::Refuse(Refusal {
                    reason,
                    message: message.into(),
                }),
            };
            assert_eq!(got, expected, "{label:?} {namespace} {spec}");
        }
    }

    /// A pod no Fargate node of its profile satisfies is refused with EKS's `MatchNodeSelector`
    /// text, after the unsupported fields and before sizing; with the region known, zone
    /// requirements are judged against the profile's subnets (docs/eks-behaviour.md §9).
    #[test]
    fn node_selection_refuses_what_no_fargate_node_satisfies() {
        let mut two_subnets = profile("apps", "web", ProfileStatus::Active);
        two_subnets.subnets = vec!["subnet-1".into(), "subnet-2".into()];
        let snapshot = Snapshot::new(vec![two_subnets]);
        let none = |_: &str| Claim::Unknown;
        let refused = "MatchNodeSelector failed: Fargate profile apps cannot satisfy pod's node selector/affinity requirements";
        let with = |extra: serde_json::Value| {
            let mut spec = json!({"containers": [{"name": "a"}]});
            for (k, v) in extra.as_object().unwrap() {
                spec[k] = v.clone();
            }
            spec
        };
        let not_fargate = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "eks.amazonaws.com/compute-type", "operator": "NotIn", "values": ["fargate"]}]}]}}}});
        // (spec, region, refused?)
        let cases: Vec<(serde_json::Value, Option<&str>, Option<&str>)> = vec![
            (with(json!({})), Some("us-west-2"), None),
            (with(not_fargate.clone()), None, Some(refused)),
            (with(not_fargate), Some("us-west-2"), Some(refused)),
            (
                with(json!({"nodeSelector": {"workload-type": "spark-driver"}})),
                None,
                Some(refused),
            ),
            (
                with(
                    json!({"nodeSelector": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}}),
                ),
                Some("us-west-2"),
                None,
            ),
            (
                with(json!({"nodeSelector": {"topology.kubernetes.io/zone": "us-west-2b"}})),
                Some("us-west-2"),
                None,
            ),
            (
                with(json!({"nodeSelector": {"topology.kubernetes.io/zone": "us-west-2c"}})),
                Some("us-west-2"),
                Some(refused),
            ),
            // The region unknown: left to the scheduler that knows it.
            (
                with(json!({"nodeSelector": {"topology.kubernetes.io/zone": "us-west-2c"}})),
                None,
                None,
            ),
            // Unsupported fields are named first.
            (
                with(json!({"hostNetwork": true, "nodeSelector": {"kubernetes.io/arch": "arm64"}})),
                Some("us-west-2"),
                Some("Pod not supported on Fargate: fields not supported: HostNetwork"),
            ),
        ];
        for (spec, region, want) in cases {
            let got = judge_in(
                &pod(Some("apps"), spec.clone()),
                "web",
                &snapshot,
                &none,
                region,
            );
            match want {
                None => assert!(matches!(got, Verdict::Place { .. }), "{spec} {got:?}"),
                Some(message) => {
                    let Verdict::Refuse(refusal) = got else {
                        panic!("placed: {spec}")
                    };
                    assert_eq!(refusal.message, message, "{spec}");
                    let reason = if message == refused {
                        "node_selector"
                    } else {
                        "unsupported"
                    };
                    assert_eq!(refusal.reason, reason, "{spec}");
                }
            }
        }
        // `judge` is `judge_in` without the region.
        let in_c = pod(
            Some("apps"),
            with(json!({"nodeSelector": {"topology.kubernetes.io/zone": "us-west-2c"}})),
        );
        assert_eq!(
            judge(&in_c, "web", &snapshot, &none),
            judge_in(&in_c, "web", &snapshot, &none, None)
        );
    }

    /// A DaemonSet's pod sent to fargate-scheduler by hand (its profile label too) is refused:
    /// its affinity names one existing node, and no Fargate node is that one.
    #[test]
    fn a_daemonset_pod_finds_no_fargate_node() {
        let snapshot = Snapshot::new(vec![profile("fp", "apps", ProfileStatus::Active)]);
        let mut daemon = pod(
            Some("fp"),
            json!({"containers": [{"name": "a"}], "tolerations": [{"operator": "Exists"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                        "values": ["ip-10-0-1-2.us-west-2.compute.internal"]}]}]}}}}),
        );
        daemon.metadata.owner_references =
            vec![serde_json::from_value(json!({"kind": "DaemonSet"})).unwrap()];
        let Verdict::Refuse(refusal) = judge_in(
            &daemon,
            "apps",
            &snapshot,
            &|_| Claim::Unknown,
            Some("us-west-2"),
        ) else {
            panic!("a DaemonSet pod was placed")
        };
        assert_eq!(refusal.reason, "node_selector");
    }

    /// The `PodScheduled` reason of each refusal; every one is recognised as a refusal again.
    #[test]
    fn condition_reasons_follow_eks() {
        let of = |reason: &'static str| {
            Refusal {
                reason,
                message: String::new(),
            }
            .condition_reason()
        };
        assert_eq!(of("unsupported"), "POD_UNSUPPORTED_ON_FARGATE");
        assert_eq!(of("bad_quantity"), "POD_UNSUPPORTED_ON_FARGATE");
        assert_eq!(of("too_large"), "POD_CPU_MEM_EXCEEDS_MAX_FARGATE_SIZE");
        for reason in [
            "profile_missing",
            "profile_not_active",
            "profile_not_matching",
            "profile_role_path",
            "node_selector",
        ] {
            assert_eq!(of(reason), "Unschedulable", "{reason}");
        }
        for reason in Refusal::REASONS {
            assert!(is_refusal_reason(of(reason)), "{reason}");
        }
        assert!(!is_refusal_reason("SchedulingGated"));
        assert!(!is_refusal_reason(""));
    }

    /// The scheduler's refusal for what only it can see (claims) and for capabilities, beside a
    /// pod it places (docs/eks-behaviour.md §5).
    #[test]
    fn claims_and_capabilities_decide_with_the_scheduler() {
        let snapshot = Snapshot::new(vec![profile("fp", "apps", ProfileStatus::Active)]);
        let with_claim = json!({"containers": [{"name": "a"}], "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]});
        let bound = |driver: Option<&str>| Claim::Bound {
            volume: "pvc-1".into(),
            driver: driver.map(Into::into),
        };
        let refused =
            "Pod not supported on Fargate: volumes not supported: data not supported because: ";
        let cases: Vec<(serde_json::Value, Claim, Option<String>)> = vec![
            (with_claim.clone(), bound(Some("efs.csi.aws.com")), None),
            (with_claim.clone(), Claim::Unknown, None),
            (
                with_claim.clone(),
                bound(None),
                Some(format!(
                    "{refused}PVC data-db-0 bound to invalid PV pvc-1 with nil CSI spec"
                )),
            ),
            (
                with_claim.clone(),
                bound(Some("ebs.csi.aws.com")),
                Some(format!(
                    "{refused}PVC data-db-0 bound to invalid PV pvc-1 with CSI Driver: ebs.csi.aws.com"
                )),
            ),
            (
                with_claim.clone(),
                Claim::Missing,
                Some(format!(
                    "{refused}persistentvolumeclaim \"data-db-0\" not found"
                )),
            ),
            (
                json!({"containers": [{"name": "a", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}}}]}),
                Claim::Unknown,
                None,
            ),
            (
                json!({"containers": [{"name": "a", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}]}),
                Claim::Unknown,
                Some(
                    "Pod not supported on Fargate: invalid SecurityContext fields: Capabilities added: NET_ADMIN"
                        .into(),
                ),
            ),
        ];
        for (spec, claim, expected) in cases {
            let got = judge(&pod(Some("fp"), spec.clone()), "apps", &snapshot, &|_| {
                claim.clone()
            });
            match expected {
                None => assert!(matches!(got, Verdict::Place { .. }), "{spec} {got:?}"),
                Some(message) => assert_eq!(
                    got,
                    Verdict::Refuse(Refusal {
                        reason: "unsupported",
                        message
                    }),
                    "{spec}"
                ),
            }
        }
    }
}
