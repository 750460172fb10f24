//! The rules every store keeps on every write, whoever asked for it: the profile names are unique,
//! a new profile passes the per-profile rules (`profile::validate`), and a profile that stays
//! keeps its immutable part (only tags and the lifecycle change). The cluster-wide EKS rules (the
//! quota, one profile CREATING or DELETING at a time, tokens) are the API's, checked inside its
//! change; [`check_journalled`] checks them again on a write found in a journal, which the API did
//! not necessarily make.

use crate::profile::{self, FargateProfile, Limits, ProfileState, ProfileStatus};
use std::collections::BTreeMap;

/// A write found in a store's journal, as the rules see it.
#[derive(Clone, Copy, Debug)]
pub enum Journalled<'a> {
    /// A new profile, with its first status.
    Create(&'a FargateProfile),
    /// New tags and/or a new status.
    Update {
        name: &'a str,
        tags: Option<&'a BTreeMap<String, String>>,
        status: Option<ProfileStatus>,
    },
    Remove {
        name: &'a str,
    },
}

/// Whether `write` is one the API could have made over `state` (the profiles before it): the
/// per-profile rules, the quota, one profile CREATING or DELETING at a time, and the lifecycle's
/// steps (CREATING → ACTIVE or CREATE_FAILED, DELETING → DELETE_FAILED or removed, a settled
/// profile → DELETING or, with no delete delay, removed). A write that is already carried out (its
/// writer died before clearing the journal) passes. Returns the rule broken.
pub fn check_journalled(
    state: &ProfileState,
    write: Journalled<'_>,
    limits: &Limits,
) -> Result<(), String> {
    use ProfileStatus::*;
    let find = |name: &str| {
        state
            .fargate_profiles
            .iter()
            .find(|p| p.fargate_profile_name == name)
    };
    let busy_other = |name: &str| {
        state
            .fargate_profiles
            .iter()
            .find(|p| p.fargate_profile_name != name && matches!(p.status, Creating | Deleting))
            .map(|p| {
                format!(
                    "Fargate profile {} is {}: one profile CREATING or DELETING at a time",
                    p.fargate_profile_name, p.status
                )
            })
    };
    match write {
        Journalled::Create(new) => {
            profile::validate(new, limits).map_err(|rule| rule.0)?;
            if !matches!(new.status, Creating | Active) {
                return Err(format!(
                    "a new profile starts CREATING (ACTIVE with no create delay), not {}",
                    new.status
                ));
            }
            if find(&new.fargate_profile_name).is_some() {
                return Ok(()); // carried out already, or a clash the write itself detects
            }
            if state.fargate_profiles.len() >= limits.max_profiles {
                return Err("Fargate Profile limit exceeded for cluster.".into());
            }
            busy_other(&new.fargate_profile_name).map_or(Ok(()), Err)
        }
        Journalled::Update { name, tags, status } => {
            if let Some(tags) = tags {
                profile::validate_tags(tags).map_err(|rule| rule.0)?;
            }
            let (Some(now), Some(next)) = (find(name), status) else {
                return Ok(());
            };
            match (now.status, next) {
                (a, b) if a == b => Ok(()),
                (Creating, Active | CreateFailed) | (Deleting, DeleteFailed) => Ok(()),
                (Active | CreateFailed | DeleteFailed, Deleting) => {
                    busy_other(name).map_or(Ok(()), Err)
                }
                (a, b) => Err(format!("Fargate profile {name} cannot go from {a} to {b}")),
            }
        }
        Journalled::Remove { name } => match find(name).map(|p| p.status) {
            None | Some(Deleting) => Ok(()),
            Some(Active | CreateFailed | DeleteFailed) => busy_other(name).map_or(Ok(()), Err),
            Some(status) => Err(format!(
                "Fargate profile {name} is {status}: only a profile being deleted is removed"
            )),
        },
    }
}

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

    fn with_status(name: &str, status: ProfileStatus) -> FargateProfile {
        FargateProfile {
            status,
            ..profile(name, "x")
        }
    }

    #[test]
    fn journalled_writes_keep_the_api_rules() {
        use ProfileStatus::*;
        let limits = Limits {
            max_profiles: 3,
            ..Limits::default()
        };
        let settled = state(vec![
            with_status("a", Active),
            with_status("f", CreateFailed),
        ]);
        let busy = state(vec![with_status("a", Active), with_status("c", Creating)]);
        let full = state(vec![
            with_status("a", Active),
            with_status("b", Active),
            with_status("d", Active),
        ]);
        let new_creating = with_status("n", Creating);
        let new_active = with_status("n", Active);
        let new_deleting = with_status("n", Deleting);
        let existing = with_status("a", Creating);
        let mut six = with_status("n", Creating);
        six.selectors = vec![six.selectors[0].clone(); 6];
        let bad_tags = BTreeMap::from([("aws:x".to_string(), "v".to_string())]);
        let update = |name, status| Journalled::Update {
            name,
            tags: None,
            status: Some(status),
        };
        let ok = |s: &str| (s.to_string(), true);
        let no = |s: &str| (s.to_string(), false);
        let cases: Vec<((String, bool), &ProfileState, Journalled)> = vec![
            (
                ok("create CREATING"),
                &settled,
                Journalled::Create(&new_creating),
            ),
            (
                ok("create ACTIVE (no delay)"),
                &settled,
                Journalled::Create(&new_active),
            ),
            (
                no("create DELETING"),
                &settled,
                Journalled::Create(&new_deleting),
            ),
            (
                no("create an invalid profile"),
                &settled,
                Journalled::Create(&six),
            ),
            (
                no("create while one is CREATING"),
                &busy,
                Journalled::Create(&new_active),
            ),
            (
                no("create over the quota"),
                &full,
                Journalled::Create(&new_creating),
            ),
            (
                ok("create carried out already"),
                &full,
                Journalled::Create(&existing),
            ),
            (ok("activate"), &busy, update("c", Active)),
            (ok("fail a create"), &busy, update("c", CreateFailed)),
            (ok("repeat a step"), &busy, update("c", Creating)),
            (
                ok("delete a settled profile"),
                &settled,
                update("f", Deleting),
            ),
            (
                no("delete while another is CREATING"),
                &busy,
                update("a", Deleting),
            ),
            (no("CREATE_FAILED to ACTIVE"), &settled, update("f", Active)),
            (
                no("ACTIVE back to CREATING"),
                &settled,
                update("a", Creating),
            ),
            (
                no("delete a CREATING profile"),
                &busy,
                update("c", Deleting),
            ),
            (
                ok("update a profile already gone"),
                &settled,
                update("gone", Active),
            ),
            (
                no("reserved tag"),
                &settled,
                Journalled::Update {
                    name: "a",
                    tags: Some(&bad_tags),
                    status: None,
                },
            ),
            (
                ok("remove with no delete delay"),
                &settled,
                Journalled::Remove { name: "a" },
            ),
            (
                ok("remove one gone already"),
                &settled,
                Journalled::Remove { name: "gone" },
            ),
            (
                no("remove a CREATING profile"),
                &busy,
                Journalled::Remove { name: "c" },
            ),
            (
                no("remove while another is CREATING"),
                &busy,
                Journalled::Remove { name: "a" },
            ),
        ];
        for ((what, allowed), before, write) in cases {
            let got = check_journalled(before, write, &limits);
            assert_eq!(got.is_ok(), allowed, "{what}: {got:?}");
        }
    }
}
