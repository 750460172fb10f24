//! "Which profile would this pod get, and why not the others?" — the dry-run EKS users ask for.

use super::index::{Mismatch, selector_mismatch};
use super::{NoMatch, Options, Outcome, Request, Snapshot, decide, pod_labels, skip_reason};
use crate::profile::{PROFILE_LABEL, ProfileStatus};
use serde::Serialize;
use std::fmt;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub pod: String,
    pub namespace: String,
    /// The profile the pod gets, if any.
    pub chosen: Option<String>,
    pub summary: String,
    pub profiles: Vec<ProfileVerdict>,
    pub warnings: Vec<String>,
    pub patch: Vec<super::PatchOp>,
    /// Selectors in the snapshot that can never choose their profile (whatever the pod).
    pub shadowed: Vec<super::index::Shadowing>,
    /// Wildcard selectors in the snapshot that also take a system namespace.
    pub catch_all: Vec<super::catch_all::CatchAll>,
    /// Whether the generated matchConditions send the pod to the webhook.
    pub reaches_webhook: super::reach::Reaches,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileVerdict {
    pub name: String,
    pub status: ProfileStatus,
    pub matches: bool,
    pub reason: String,
}

fn describe_mismatch(m: &Mismatch<'_>, namespace: &str) -> String {
    match m {
        Mismatch::Namespace(want) => {
            format!("namespace '{namespace}' does not match '{}'", want.as_str())
        }
        Mismatch::MissingLabel(key) => format!("pod has no label '{}'", key.as_str()),
        Mismatch::LabelValue { key, want, got } => format!(
            "label '{}' is '{got}', selector wants '{}'",
            key.as_str(),
            want.as_str()
        ),
    }
}

pub fn explain(req: &Request<'_>, snapshot: &Snapshot, options: &Options) -> Explanation {
    let decision = decide(req, snapshot, options);
    let labels = pod_labels(req.pod);
    let skipped = skip_reason(req);
    let chosen = match &decision.outcome {
        Outcome::Mutated { profile, .. } => Some(profile.clone()),
        _ => None,
    };
    let pin = req.pod.label(PROFILE_LABEL);
    let profiles = snapshot
        .profiles()
        .iter()
        .map(|p| {
            let mismatches: Vec<String> = p
                .selectors
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    selector_mismatch(s, req.namespace, labels).map(|m| {
                        format!(
                            "selector {}: {}",
                            i + 1,
                            describe_mismatch(&m, req.namespace)
                        )
                    })
                })
                .collect();
            let matches = mismatches.len() < p.selectors.len();
            let reason = if chosen.as_deref() == Some(p.name()) {
                if pin.is_some() {
                    "chosen: pinned by the pod's label and its selectors match".to_string()
                } else {
                    "chosen: first matching ACTIVE profile by name".to_string()
                }
            } else if let Some(reason) = skipped {
                format!("not considered: {}", reason.describe())
            } else if p.status() != ProfileStatus::Active {
                format!("status is {}, only ACTIVE profiles apply", p.status())
            } else if !matches {
                mismatches.join("; ")
            } else if let Some(pin) = pin {
                format!("matches, but the pod pins profile '{pin}'")
            } else {
                format!(
                    "matches, but '{}' comes first by name",
                    chosen.as_deref().unwrap_or("?")
                )
            };
            ProfileVerdict {
                name: p.name().to_string(),
                status: p.status(),
                matches,
                reason,
            }
        })
        .collect();
    let summary = match (&decision.outcome, skipped) {
        (Outcome::Mutated { profile, .. }, _) => {
            format!("the pod runs on Fargate with profile '{profile}'")
        }
        (_, Some(reason)) => format!("left alone: {}", reason.describe()),
        (Outcome::NotMatched(NoMatch::PinMissing(pin)), _) => {
            format!("not mutated: pinned profile '{pin}' does not exist or is not ACTIVE")
        }
        (Outcome::NotMatched(NoMatch::PinNotMatching(pin)), _) => {
            format!("not mutated: pinned profile '{pin}' does not match the pod")
        }
        _ => "no ACTIVE profile matches: the pod runs on ordinary nodes".to_string(),
    };
    let patch = match decision.outcome {
        Outcome::Mutated { patch, .. } => patch,
        _ => Vec::new(),
    };
    Explanation {
        pod: req.pod.display_name().to_string(),
        namespace: req.namespace.to_string(),
        chosen,
        summary,
        profiles,
        warnings: decision.warnings,
        patch,
        shadowed: snapshot.shadowed().to_vec(),
        catch_all: snapshot.catch_all().to_vec(),
        reaches_webhook: super::reach::reaches(req, snapshot),
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "pod {}/{}: {}", self.namespace, self.pod, self.summary)?;
        if self.profiles.is_empty() {
            writeln!(f, "  (no profiles loaded)")?;
        }
        for p in &self.profiles {
            let mark = if self.chosen.as_deref() == Some(&p.name) {
                "*"
            } else {
                " "
            };
            writeln!(f, "{mark} {} [{}]: {}", p.name, p.status, p.reason)?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        for op in &self.patch {
            writeln!(f, "patch: {} {} {}", op.op, op.path, op.value)?;
        }
        for s in &self.shadowed {
            writeln!(
                f,
                "note: selector {} of '{}' is shadowed by '{}', which comes first by name and matches every pod it matches",
                s.selector, s.profile, s.by
            )?;
        }
        for c in &self.catch_all {
            writeln!(f, "note: {}", c.message())?;
        }
        let reach = &self.reaches_webhook;
        writeln!(
            f,
            "webhook call (generated matchConditions): {}, {}",
            if reach.reaches { "yes" } else { "no" },
            reach.why
        )?;
        Ok(())
    }
}
