//! `explain`: for every pod template in the user's manifests, which profile the webhook would choose
//! (and why not the others), and what the fargate-scheduler would then do with the pod: run it at a
//! size, or refuse it with the very text of its `FailedScheduling` event. Against the profiles the
//! user really has: a profiles file, a running server's EKS API, or the cluster's `FargateProfile`
//! resources. `--what-if` compares a changed set of profiles with the cluster's pods.

pub mod manifests;
pub mod sources;

use crate::decision::explain::Explanation;
use crate::decision::unsupported::Claim;
use crate::decision::{self, Options, Pod, Snapshot};
use crate::profile::PROFILE_LABEL;
use crate::scheduler::verdict::{self, Verdict};
use manifests::Template;
use serde::Serialize;
use std::fmt;

/// What the fargate-scheduler would do with a pod the webhook sends to Fargate.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "verdict"
)]
pub enum SchedulerView {
    /// Runs it at this size (`CapacityProvisioned`), with this much ephemeral storage (`20GiB`).
    Run {
        capacity_provisioned: String,
        ephemeral_storage: String,
    },
    /// Refuses it: the `FailedScheduling` event's reason label and text.
    Refuse { reason: String, message: String },
}

/// The answer for one pod template.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub object: String,
    pub source: String,
    #[serde(flatten)]
    pub explanation: Explanation,
    /// Present when the webhook would send the pod to Fargate.
    pub scheduler: Option<SchedulerView>,
    /// The pod would run on Fargate: chosen by a profile and not refused by the scheduler.
    pub on_fargate: bool,
}

/// The pod as the webhook would leave it: the chosen profile's label (the scheduler reads it).
fn as_mutated(pod: &Pod, profile: &str) -> Pod {
    let mut pod = pod.clone();
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(PROFILE_LABEL.into(), profile.into());
    pod
}

/// Explain one template. Claims are not looked up (a manifest's claims may not exist yet).
pub fn answer(
    template: &Template,
    default_namespace: &str,
    snapshot: &Snapshot,
    options: &Options,
) -> Answer {
    let namespace = template
        .pod
        .metadata
        .namespace
        .clone()
        .or_else(|| template.namespace.clone())
        .unwrap_or_else(|| default_namespace.to_string());
    let req = decision::Request {
        group: "",
        kind: "Pod",
        operation: "CREATE",
        namespace: &namespace,
        pod: &template.pod,
    };
    let mut explanation = decision::explain::explain(&req, snapshot, options);
    if template.daemonset {
        explanation.summary = format!(
            "{} (DaemonSets never run on Fargate: their pods go to the default scheduler)",
            explanation.summary
        );
    }
    if let Some((kind, name)) = template.object.split_once('/')
        && kind != "Pod"
    {
        explanation.pod = format!("{name} (template of a {kind})");
    }
    let scheduler = explanation.chosen.as_ref().map(|profile| {
        let mutated = as_mutated(&template.pod, profile);
        match verdict::judge(&mutated, &namespace, snapshot, &|_| Claim::Unknown) {
            Verdict::Place {
                size, storage_gib, ..
            } => SchedulerView::Run {
                capacity_provisioned: size.to_string(),
                ephemeral_storage: format!("{storage_gib}GiB"),
            },
            Verdict::Refuse(r) => SchedulerView::Refuse {
                reason: r.reason.into(),
                message: r.message,
            },
        }
    });
    let on_fargate = matches!(scheduler, Some(SchedulerView::Run { .. }));
    Answer {
        object: template.object.clone(),
        source: template.source.clone(),
        explanation,
        scheduler,
        on_fargate,
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# {} ({})", self.object, self.source)?;
        write!(f, "{}", self.explanation)?;
        match &self.scheduler {
            Some(SchedulerView::Run {
                capacity_provisioned,
                ephemeral_storage,
            }) => writeln!(
                f,
                "fargate-scheduler: runs it as {capacity_provisioned}, {ephemeral_storage} of ephemeral storage"
            ),
            Some(SchedulerView::Refuse { message, .. }) => {
                writeln!(
                    f,
                    "fargate-scheduler: refuses it (FailedScheduling): {message}"
                )
            }
            None => Ok(()),
        }
    }
}

/// What a changed set of profiles would do to one pod of the cluster.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Move {
    pub pod: String,
    pub namespace: String,
    /// The profile the pod runs with now (None: not on Fargate).
    pub now: Option<String>,
    /// The profile it would get when re-created under the new profiles.
    pub then: Option<String>,
    pub verdict: MoveKind,
}

#[derive(Debug, Serialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub enum MoveKind {
    /// Its profile stays ACTIVE and still selects it: untouched.
    Stays,
    /// Its profile goes: EKS deletes it, and its re-created pod lands on another profile.
    Moves,
    /// Its profile goes and no other selects it: re-created, it goes to the default scheduler
    /// (Pending where there are no other nodes).
    LeavesFargate,
    /// Not on Fargate now, but a new profile selects it: only a re-created pod goes there (EKS
    /// does not move running pods onto a new profile).
    JoinsOnRecreate,
    /// Not on Fargate and nothing changes that.
    Unaffected,
}

/// The pod as its controller would create it again: without the webhook's mutation.
fn as_recreated(pod: &Pod) -> Pod {
    let mut pod = pod.clone();
    if let Some(labels) = pod.metadata.labels.as_mut() {
        labels.remove(PROFILE_LABEL);
    }
    if let Some(annotations) = pod.metadata.annotations.as_mut() {
        annotations.remove(PROFILE_LABEL);
    }
    pod.spec.scheduler_name = None;
    pod.spec.node_name = None;
    pod
}

/// Compare `now` (the profiles in force) with `then` for one pod of the cluster. A pod is on Fargate
/// when its scheduler is `fargate-scheduler`; its profile is the label or annotation the webhook set.
pub fn what_if(pod: &Pod, namespace: &str, then: &Snapshot, options: &Options) -> Move {
    let on_fargate = pod.spec.scheduler_name.as_deref() == Some(crate::scheduler::SCHEDULER_NAME);
    let now = on_fargate
        .then(|| {
            pod.label(PROFILE_LABEL)
                .or(pod.annotation(PROFILE_LABEL))
                .map(str::to_string)
        })
        .flatten();
    let keeps = now.as_deref().is_some_and(|p| {
        then.get(p).is_some_and(|c| {
            c.status() == crate::profile::ProfileStatus::Active
                && decision::index::profile_matches(c, namespace, decision::pod_labels(pod))
        })
    });
    let recreated = as_recreated(pod);
    let req = decision::Request {
        group: "",
        kind: "Pod",
        operation: "CREATE",
        namespace,
        pod: &recreated,
    };
    let after = match decision::decide(&req, then, options).outcome {
        decision::Outcome::Mutated { profile, .. } => Some(profile),
        _ => None,
    };
    let (then_profile, verdict) = match (&now, keeps, &after) {
        (Some(p), true, _) => (Some(p.clone()), MoveKind::Stays),
        (Some(_), false, Some(q)) => (Some(q.clone()), MoveKind::Moves),
        (Some(_), false, None) => (None, MoveKind::LeavesFargate),
        (None, _, Some(q)) => (Some(q.clone()), MoveKind::JoinsOnRecreate),
        (None, _, None) => (None, MoveKind::Unaffected),
    };
    Move {
        pod: pod.display_name().to_string(),
        namespace: namespace.to_string(),
        now,
        then: then_profile,
        verdict,
    }
}

impl fmt::Display for Move {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |p: &Option<String>| p.clone().unwrap_or_else(|| "-".into());
        let what = match self.verdict {
            MoveKind::Stays => "stays",
            MoveKind::Moves => "moves (deleted with its profile, re-created on the new one)",
            MoveKind::LeavesFargate => {
                "leaves Fargate (deleted with its profile; re-created, no profile selects it)"
            }
            MoveKind::JoinsOnRecreate => "joins Fargate when re-created",
            MoveKind::Unaffected => "unaffected",
        };
        writeln!(
            f,
            "{}/{}: {} -> {}: {what}",
            self.namespace,
            self.pod,
            name(&self.now),
            name(&self.then)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{FargateProfile, ProfileStatus};
    use serde_json::json;

    fn profile(name: &str, namespace: &str, status: ProfileStatus) -> FargateProfile {
        FargateProfile::fixture(name, namespace, status)
    }

    fn template(text: &str) -> Template {
        manifests::templates("t.yaml", text).unwrap().remove(0)
    }

    #[test]
    fn the_answer_says_what_the_scheduler_would_do() {
        let snapshot = Snapshot::new(vec![profile("fp", "apps", ProfileStatus::Active)]);
        let options = Options::default();
        let run = answer(
            &template(
                "kind: Deployment\nmetadata: {name: web, namespace: apps}\nspec:\n  template:\n    spec:\n      containers: [{name: a, resources: {requests: {cpu: 1, memory: 8Gi, ephemeral-storage: 100Gi}}}]\n",
            ),
            "default",
            &snapshot,
            &options,
        );
        assert_eq!(run.explanation.chosen.as_deref(), Some("fp"));
        assert_eq!(
            run.scheduler,
            Some(SchedulerView::Run {
                capacity_provisioned: "2vCPU 9GB".into(),
                ephemeral_storage: "115GiB".into(),
            })
        );
        assert!(run.on_fargate);
        assert!(
            run.to_string()
                .contains("fargate-scheduler: runs it as 2vCPU 9GB, 115GiB of ephemeral storage")
        );

        let refused = answer(
            &template(
                "kind: Pod\nmetadata: {name: p}\nspec: {hostNetwork: true, containers: [{name: a}]}\n",
            ),
            "apps",
            &snapshot,
            &options,
        );
        assert!(!refused.on_fargate);
        assert!(refused.to_string().contains(
            "fargate-scheduler: refuses it (FailedScheduling): Pod not supported on Fargate: fields not supported: HostNetwork"
        ));

        let daemon = answer(
            &template(
                "kind: DaemonSet\nmetadata: {name: agent, namespace: apps}\nspec:\n  template:\n    spec: {containers: [{name: a}]}\n",
            ),
            "default",
            &snapshot,
            &options,
        );
        assert!(!daemon.on_fargate && daemon.scheduler.is_none());
        assert!(
            daemon
                .explanation
                .summary
                .contains("DaemonSets never run on Fargate")
        );
        let elsewhere = answer(
            &template("kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a}]}\n"),
            "other",
            &snapshot,
            &options,
        );
        assert!(!elsewhere.on_fargate && elsewhere.scheduler.is_none());
    }

    #[test]
    fn what_if_tells_stays_moves_leaves_and_joins() {
        let then = Snapshot::new(vec![
            profile("keep", "a", ProfileStatus::Active),
            profile("new", "b", ProfileStatus::Active),
            profile("also-b", "c", ProfileStatus::Active),
        ]);
        let pod = |labels: serde_json::Value, fargate: bool| -> Pod {
            let mut spec = json!({"containers": [{"name": "x"}]});
            if fargate {
                spec["schedulerName"] = json!("fargate-scheduler");
                spec["nodeName"] = json!("fargate-ip-10-0-0-1.us-west-2.compute.internal");
            }
            serde_json::from_value(
                json!({"metadata": {"name": "p", "labels": labels}, "spec": spec}),
            )
            .unwrap()
        };
        let options = Options::default();
        let cases = [
            (
                pod(json!({PROFILE_LABEL: "keep"}), true),
                "a",
                MoveKind::Stays,
                Some("keep"),
            ),
            (
                pod(json!({PROFILE_LABEL: "old"}), true),
                "b",
                MoveKind::Moves,
                Some("new"),
            ),
            (
                pod(json!({PROFILE_LABEL: "old"}), true),
                "z",
                MoveKind::LeavesFargate,
                None,
            ),
            (
                pod(json!({}), false),
                "c",
                MoveKind::JoinsOnRecreate,
                Some("also-b"),
            ),
            (pod(json!({}), false), "z", MoveKind::Unaffected, None),
        ];
        for (p, ns, kind, then_profile) in cases {
            let m = what_if(&p, ns, &then, &options);
            assert_eq!((m.verdict, m.then.as_deref()), (kind, then_profile), "{ns}");
        }
    }
}
