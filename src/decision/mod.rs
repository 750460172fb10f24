//! The pure decision: `(request, profiles snapshot) -> outcome`, no I/O. The HTTP layer only
//! decodes, calls [`decide`] and encodes.

pub mod catch_all;
pub mod explain;
pub mod index;
pub mod node_selection;
pub mod patch;
pub mod pod;
pub mod reach;
pub mod unsupported;
pub mod wildcard;

pub use index::{CompiledProfile, SharedSnapshot, Snapshot};
pub use patch::PatchOp;
pub use pod::Pod;

use crate::profile::{PROFILE_LABEL, ProfileStatus};
use std::collections::BTreeMap;

/// The documented opt-out annotation (`ec2` opts out; `fargate` is allowed).
pub const COMPUTE_TYPE_ANNOTATION: &str = "eks.amazonaws.com/compute-type";
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// What the webhook knows about one admission request.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// `request.kind.group` and `request.kind.kind`: only core `Pod` is considered.
    pub group: &'a str,
    pub kind: &'a str,
    pub operation: &'a str,
    /// `request.namespace`, falling back to the object's own namespace.
    pub namespace: &'a str,
    pub pod: &'a Pod,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Override the priority class and priority as EKS does (on by default).
    pub priority_override: bool,
}

/// Why a request was left alone before matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    NotPod,
    NotCreate,
    OptOut,
    DaemonSet,
    MirrorPod,
    NodeNameSet,
    ForeignScheduler,
}

impl SkipReason {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotPod => "not_pod",
            Self::NotCreate => "not_create",
            Self::OptOut => "opt_out",
            Self::DaemonSet => "daemonset",
            Self::MirrorPod => "mirror_pod",
            Self::NodeNameSet => "node_name_set",
            Self::ForeignScheduler => "foreign_scheduler",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::NotPod => "the object is not a Pod",
            Self::NotCreate => "the operation is not CREATE",
            Self::OptOut => "the pod opts out with annotation eks.amazonaws.com/compute-type: ec2",
            Self::DaemonSet => "the pod is owned by a DaemonSet",
            Self::MirrorPod => "the pod is a mirror (static) pod",
            Self::NodeNameSet => "the pod already has spec.nodeName set",
            Self::ForeignScheduler => "the pod asks for a scheduler other than default-scheduler",
        }
    }
}

/// Why a pod that was considered got no profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoMatch {
    NoProfile,
    /// The pod pins a profile that does not exist or is not ACTIVE.
    PinMissing(String),
    /// The pod pins an ACTIVE profile whose selectors do not match it.
    PinNotMatching(String),
}

impl NoMatch {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NoProfile => "no_profile",
            Self::PinMissing(_) => "pin_missing",
            Self::PinNotMatching(_) => "pin_not_matching",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Mutated {
        profile: String,
        patch: Vec<PatchOp>,
    },
    NotMatched(NoMatch),
    Skipped(SkipReason),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    /// Admission warnings, shown by kubectl.
    pub warnings: Vec<String>,
}

/// The skip rules of `docs/eks-behaviour.md` §5, in a fixed order so the reported reason is stable.
pub fn skip_reason(req: &Request<'_>) -> Option<SkipReason> {
    if req.kind != "Pod" || !req.group.is_empty() {
        return Some(SkipReason::NotPod);
    }
    if req.operation != "CREATE" {
        return Some(SkipReason::NotCreate);
    }
    let pod = req.pod;
    if pod.annotation(COMPUTE_TYPE_ANNOTATION) == Some("ec2") {
        return Some(SkipReason::OptOut);
    }
    if pod
        .metadata
        .owner_references
        .iter()
        .any(|o| o.kind == "DaemonSet")
    {
        return Some(SkipReason::DaemonSet);
    }
    if pod.annotation(MIRROR_POD_ANNOTATION).is_some() {
        return Some(SkipReason::MirrorPod);
    }
    if pod.spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) {
        return Some(SkipReason::NodeNameSet);
    }
    if pod
        .spec
        .scheduler_name
        .as_deref()
        .is_some_and(|s| !s.is_empty() && s != DEFAULT_SCHEDULER)
    {
        return Some(SkipReason::ForeignScheduler);
    }
    None
}

static EMPTY_LABELS: BTreeMap<String, String> = BTreeMap::new();

pub fn pod_labels(pod: &Pod) -> &BTreeMap<String, String> {
    pod.metadata.labels.as_ref().unwrap_or(&EMPTY_LABELS)
}

/// Decide what to do with one admission request.
pub fn decide(req: &Request<'_>, snapshot: &Snapshot, options: &Options) -> Decision {
    if let Some(reason) = skip_reason(req) {
        return Decision {
            outcome: Outcome::Skipped(reason),
            warnings: Vec::new(),
        };
    }
    let pod = req.pod;
    let labels = pod_labels(pod);
    let chosen = match pod.label(PROFILE_LABEL) {
        Some(pin) => match snapshot.get(pin) {
            Some(p) if p.status() == ProfileStatus::Active => {
                if index::profile_matches(p, req.namespace, labels) {
                    Ok(p)
                } else {
                    Err(NoMatch::PinNotMatching(pin.to_string()))
                }
            }
            _ => Err(NoMatch::PinMissing(pin.to_string())),
        },
        None => snapshot
            .find_match(req.namespace, labels)
            .ok_or(NoMatch::NoProfile),
    };
    let profile = match chosen {
        Ok(p) => p,
        Err(no_match) => {
            let warnings = match &no_match {
                NoMatch::NoProfile => Vec::new(),
                NoMatch::PinMissing(pin) => vec![format!(
                    "pod pins Fargate profile '{pin}' ({PROFILE_LABEL}), which does not exist or is not ACTIVE: the pod is not sent to Fargate"
                )],
                NoMatch::PinNotMatching(pin) => vec![format!(
                    "pod pins Fargate profile '{pin}' ({PROFILE_LABEL}), whose selectors do not match this pod: the pod is not sent to Fargate"
                )],
            };
            return Decision {
                outcome: Outcome::NotMatched(no_match),
                warnings,
            };
        }
    };
    let name = profile.name();
    let (patch, label_skipped) = patch::build(pod, name, options.priority_override);
    let mut warnings = Vec::new();
    if label_skipped {
        warnings.push(format!(
            "Fargate profile name '{name}' is longer than {} characters: the pod gets the {PROFILE_LABEL} annotation but not the label",
            patch::MAX_LABEL_VALUE_LEN
        ));
    }
    // The scheduler's own refusal text, so the warning and the later event say the same thing;
    // claims are not looked up here (no I/O), so claim refusals come from the scheduler alone.
    if let Some(refusal) = unsupported::check(pod, &|_| unsupported::Claim::Unknown) {
        warnings.push(format!(
            "{refusal} (sent to Fargate profile '{name}'; the fargate-scheduler will not place it)"
        ));
    }
    Decision {
        outcome: Outcome::Mutated {
            profile: name.to_string(),
            patch,
        },
        warnings,
    }
}

#[cfg(test)]
mod tests;
