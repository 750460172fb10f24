//! Catch-all selectors: an ACTIVE profile's selector whose namespace is a wildcard pattern that
//! also matches a namespace where the cluster's own components run (`kube-system`, ...). EKS
//! accepts such a profile and sends those pods to Fargate like any other (docs/eks-behaviour.md
//! §2, "Catch-all selectors"); a platform engineer rarely means it, so it is reported: a warning log
//! and the gauge `fargate_webhook_catch_all_selectors` on every reload, a `note:` line in `explain`,
//! and a Warning Event on the resource with the Kubernetes store. An exact `kube-system` selector is
//! deliberate (EKS's own guide uses one for CoreDNS) and is not reported.

use super::index::CompiledProfile;
use super::wildcard::Pattern;
use crate::profile::ProfileStatus;

/// The namespaces of the cluster's own components.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// One catch-all selector.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatchAll {
    pub profile: String,
    /// 1-based, as `explain` numbers selectors.
    pub selector: usize,
    /// The pattern as written.
    pub namespace: String,
    /// The system namespaces it matches.
    pub takes: Vec<&'static str>,
    /// It has labels: only the pods that carry them are taken.
    pub labelled: bool,
}

impl CatchAll {
    /// The warning, in one sentence.
    pub fn message(&self) -> String {
        let which = if self.labelled {
            "the pods with its labels"
        } else {
            "every pod"
        };
        format!(
            "selector {} of '{}' (namespace '{}') also takes {which} of {}: the cluster's own components would run on Fargate",
            self.selector,
            self.profile,
            self.namespace,
            self.takes.join(", ")
        )
    }
}

/// The catch-all selectors of the ACTIVE profiles, in profile order.
pub fn find(profiles: &[CompiledProfile]) -> Vec<CatchAll> {
    let mut found = Vec::new();
    for profile in profiles
        .iter()
        .filter(|p| p.status() == ProfileStatus::Active)
    {
        for (i, selector) in profile.selectors.iter().enumerate() {
            let Pattern::Glob(pattern) = &selector.namespace else {
                continue;
            };
            let takes: Vec<&'static str> = SYSTEM_NAMESPACES
                .into_iter()
                .filter(|ns| selector.namespace.matches(ns))
                .collect();
            if !takes.is_empty() {
                found.push(CatchAll {
                    profile: profile.name().to_owned(),
                    selector: i + 1,
                    namespace: pattern.to_string(),
                    takes,
                    labelled: !selector.labels.is_empty(),
                });
            }
        }
    }
    found
}
