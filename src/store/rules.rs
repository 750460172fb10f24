//! The rules every store keeps on every write, whoever asked for it: the profile names are unique,
//! a new profile passes the per-profile rules (`profile::validate`), and a profile that stays
//! keeps its immutable part (only tags and the lifecycle change). The cluster-wide EKS rules (the
//! quota, one profile CREATING or DELETING at a time, tokens) are the API's, checked inside its
//! change.

use crate::profile::{self, FargateProfile, Limits, ProfileState};
use std::collections::BTreeMap;

/// A rule a change broke. The texts are EKS's where EKS has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("A Fargate Profile already exists with this name in this cluster.")]
    DuplicateName,
    /// The name is still held by a profile being deleted (the Kubernetes store).
    #[error("A Fargate Profile with this name is still being deleted; try again later.")]
    NameStillDeleting,
    /// A new profile breaks a per-profile rule, or cannot be stored under its name.
    #[error("{0}")]
    Invalid(String),
    #[error("Fargate profile {0} is immutable except for its tags.")]
    Immutable(String),
}

/// Check that `after` keeps the rules, given the `before` it was made from.
pub fn check_change(
    before: &ProfileState,
    after: &ProfileState,
    limits: &Limits,
) -> Result<(), Violation> {
    let old: BTreeMap<&str, &FargateProfile> = before
        .fargate_profiles
        .iter()
        .map(|p| (p.fargate_profile_name.as_str(), p))
        .collect();
    let mut seen = BTreeMap::new();
    for now in &after.fargate_profiles {
        let name = now.fargate_profile_name.as_str();
        if seen.insert(name, ()).is_some() {
            return Err(Violation::DuplicateName);
        }
        match old.get(name) {
            None => profile::validate(now, limits).map_err(|rule| Violation::Invalid(rule.0))?,
            Some(was) => {
                if was.pod_execution_role_arn != now.pod_execution_role_arn
                    || was.subnets != now.subnets
                    || was.selectors != now.selectors
                {
                    return Err(Violation::Immutable(name.to_owned()));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{ProfileStatus, Selector};

    fn profile(name: &str, namespace: &str) -> FargateProfile {
        FargateProfile {
            fargate_profile_name: name.into(),
            pod_execution_role_arn: "arn:aws:iam::012345678910:role/R".into(),
            selectors: vec![Selector {
                namespace: Some(namespace.into()),
                labels: BTreeMap::new(),
            }],
            ..Default::default()
        }
    }

    fn state(profiles: Vec<FargateProfile>) -> ProfileState {
        ProfileState {
            fargate_profiles: profiles,
            client_request_tokens: BTreeMap::new(),
        }
    }

    #[test]
    fn table() {
        let limits = Limits::default();
        let base = state(vec![profile("a", "x")]);
        let mut tagged = profile("a", "x");
        tagged.tags.insert("k".into(), "v".into());
        tagged.status = ProfileStatus::Deleting;
        let mut six = profile("b", "x");
        six.selectors = vec![six.selectors[0].clone(); 6];
        let cases: Vec<(&str, ProfileState, Result<(), Violation>)> = vec![
            ("unchanged", base.clone(), Ok(())),
            ("removed", state(vec![]), Ok(())),
            (
                "added",
                state(vec![profile("a", "x"), profile("b", "y")]),
                Ok(()),
            ),
            ("tags and status change", state(vec![tagged]), Ok(())),
            (
                "duplicate",
                state(vec![profile("a", "x"), profile("a", "y")]),
                Err(Violation::DuplicateName),
            ),
            (
                "selector change",
                state(vec![profile("a", "y")]),
                Err(Violation::Immutable("a".into())),
            ),
            (
                "invalid new profile",
                state(vec![profile("a", "x"), six]),
                Err(Violation::Invalid(
                    "Request contains more than 5 Selectors".into(),
                )),
            ),
        ];
        for (what, after, want) in cases {
            assert_eq!(check_change(&base, &after, &limits), want, "{what}");
        }
    }
}
