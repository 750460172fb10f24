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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Snapshot;
    use crate::profile::{FargateProfile, Selector};
    use std::collections::BTreeMap;

    fn profile(
        name: &str,
        status: ProfileStatus,
        selectors: &[(&str, &[(&str, &str)])],
    ) -> FargateProfile {
        FargateProfile {
            fargate_profile_name: name.into(),
            status,
            selectors: selectors
                .iter()
                .map(|(ns, labels)| Selector {
                    namespace: Some((*ns).into()),
                    labels: labels
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect::<BTreeMap<_, _>>(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn wildcards_that_reach_system_namespaces_are_found() {
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
        let found: Vec<(String, usize, Vec<&str>, bool)> = find(snapshot.profiles())
            .into_iter()
            .map(|c| (c.profile, c.selector, c.takes, c.labelled))
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
    }

    #[test]
    fn the_message_names_the_selector_and_what_it_takes() {
        let c = CatchAll {
            profile: "all".into(),
            selector: 1,
            namespace: "*".into(),
            takes: vec!["kube-system"],
            labelled: false,
        };
        assert_eq!(
            c.message(),
            "selector 1 of 'all' (namespace '*') also takes every pod of kube-system: the cluster's own components would run on Fargate"
        );
    }
}
