//! The EKS rules of the Fargate-profile API over the store's state, as pure functions: each runs
//! inside a store change (so it sees the latest committed state, also across replicas) and
//! either edits the state or says why not. No I/O, no clock: tested by tables below.

use super::error::ApiError;
use crate::profile::{FargateProfile, Limits, ProfileState, ProfileStatus, TokenRecord};

#[derive(Clone, Copy, Debug)]
pub(crate) enum Transition {
    Activate,
    Remove,
}

/// Forget the tokens that created a removed profile.
pub(crate) fn drop_tokens(state: &mut ProfileState, name: &str, arn: &str) {
    state
        .client_request_tokens
        .retain(|_, r| !(r.fargate_profile_name == name && r.fargate_profile_arn == arn));
}

/// Forget the tokens whose profile is gone: they are free again (`create`), and nothing but this
/// drops those of profiles removed outside the API (kubectl), so without it the tokens kept in the
/// store would grow with every such removal.
fn drop_stale_tokens(state: &mut ProfileState, arn_of: impl Fn(&FargateProfile) -> String) {
    let profiles = &state.fargate_profiles;
    state.client_request_tokens.retain(|_, r| {
        profiles.iter().any(|p| {
            p.fargate_profile_name == r.fargate_profile_name && arn_of(p) == r.fargate_profile_arn
        })
    });
}

/// Why a change closure refused to change the state.
#[derive(Debug)]
pub(crate) enum Refusal {
    Error(ApiError),
    /// The token was already used for this very request: answer with this profile.
    Replay(Box<FargateProfile>),
    /// Nothing to do (a transition whose profile is gone or changed).
    NoChange,
}

pub(crate) fn refuse(error: ApiError) -> Refusal {
    Refusal::Error(error)
}

/// A CreateFargateProfile request, validated and turned into the profile to store.
pub(crate) struct CreateRequest<'a> {
    pub profile: &'a FargateProfile,
    pub token: Option<&'a str>,
    /// Digest of the request's meaningful content, for token reuse.
    pub digest: &'a str,
    /// A zero create delay: store the profile ACTIVE at once.
    pub activate_now: bool,
}

/// CreateFargateProfile. In EKS's order: a reused `clientRequestToken` (the same request replays
/// the original profile, another request is refused), a duplicate name, the quota, another
/// profile CREATING or DELETING. Then the profile and its token are added.
pub(crate) fn create(
    state: &mut ProfileState,
    request: &CreateRequest<'_>,
    limits: &Limits,
    cluster: &str,
    arn_of: impl Fn(&FargateProfile) -> String,
) -> Result<(), Refusal> {
    let name = &request.profile.fargate_profile_name;
    let on_profile = |e: ApiError| Refusal::Error(e.with_cluster(cluster).with_profile(name));
    if let Some(token) = request.token
        && let Some(record) = state.client_request_tokens.get(token)
    {
        let original = state.fargate_profiles.iter().find(|p| {
            p.fargate_profile_name == record.fargate_profile_name
                && arn_of(p) == record.fargate_profile_arn
        });
        // A record whose profile is gone is stale: the token is free again.
        if let Some(original) = original {
            if record.request_digest == request.digest {
                return Err(Refusal::Replay(Box::new(original.clone())));
            }
            return Err(on_profile(ApiError::invalid_parameter(format!(
                "The client request token {token} was already used with a different request."
            ))));
        }
    }
    if state
        .fargate_profiles
        .iter()
        .any(|p| &p.fargate_profile_name == name)
    {
        return Err(on_profile(ApiError::resource_in_use(
            "A Fargate Profile already exists with this name in this cluster.",
        )));
    }
    if state.fargate_profiles.len() >= limits.max_profiles {
        return Err(on_profile(ApiError::limit_exceeded(
            "Fargate Profile limit exceeded for cluster.",
        )));
    }
    if let Some(busy) = state
        .fargate_profiles
        .iter()
        .find(|p| p.status.in_transition())
    {
        return Err(on_profile(ApiError::resource_in_use(format!(
            "Cannot create Fargate Profile {name} because cluster {cluster} currently has Fargate profile {} in status {}",
            busy.fargate_profile_name, busy.status
        ))));
    }
    let mut stored = request.profile.clone();
    if request.activate_now {
        stored.status = ProfileStatus::Active;
    }
    let arn = arn_of(&stored);
    state.fargate_profiles.push(stored);
    drop_stale_tokens(state, &arn_of);
    if let Some(token) = request.token {
        state.client_request_tokens.insert(
            token.to_owned(),
            TokenRecord {
                fargate_profile_name: name.clone(),
                fargate_profile_arn: arn,
                request_digest: request.digest.to_owned(),
            },
        );
    }
    Ok(())
}

/// The EKS answer for a profile that does not exist.
pub(crate) fn profile_not_found(cluster: &str, name: &str) -> ApiError {
    ApiError::resource_not_found(format!("No Fargate Profile found with name: {name}."))
        .with_cluster(cluster)
        .with_profile(name)
}

/// DeleteFargateProfile: the profile goes DELETING (or, with a zero delay, away with its tokens),
/// unless it does not exist, is itself CREATING or DELETING (400, "not in Active State"), or
/// another profile is DELETING (409, EKS's text) or CREATING (409, the cluster's update in progress)
/// (docs/eks-api.md "Errors"). Returns the profile as answered (status DELETING).
pub(crate) fn delete(
    state: &mut ProfileState,
    name: &str,
    cluster: &str,
    remove_now: bool,
    arn_of: impl Fn(&FargateProfile) -> String,
) -> Result<FargateProfile, Refusal> {
    let Some(index) = state
        .fargate_profiles
        .iter()
        .position(|p| p.fargate_profile_name == name)
    else {
        return Err(Refusal::Error(profile_not_found(cluster, name)));
    };
    if state.fargate_profiles[index].status.in_transition() {
        return Err(Refusal::Error(
            ApiError::invalid_request("Fargate Profile is currently not in Active State.")
                .with_cluster(cluster)
                .with_profile(name),
        ));
    }
    let busy = |status| state.fargate_profiles.iter().find(|p| p.status == status);
    let why = match (busy(ProfileStatus::Deleting), busy(ProfileStatus::Creating)) {
        (Some(deleting), _) => Some(format!(
            "currently has Fargate profile {} in status DELETING",
            deleting.fargate_profile_name
        )),
        (None, Some(_)) => Some("currently has an update in progress".to_string()),
        (None, None) => None,
    };
    if let Some(why) = why {
        return Err(Refusal::Error(
            ApiError::resource_in_use(format!(
                "Cannot Delete Fargate Profile {name} because cluster {cluster} {why}"
            ))
            .with_cluster(cluster)
            .with_profile(name),
        ));
    }
    let mut profile = state.fargate_profiles[index].clone();
    profile.status = ProfileStatus::Deleting;
    if remove_now {
        let arn = arn_of(&profile);
        state.fargate_profiles.remove(index);
        drop_tokens(state, name, &arn);
    } else {
        state.fargate_profiles[index].status = ProfileStatus::Deleting;
    }
    Ok(profile)
}

/// One lifecycle step: CREATING → ACTIVE, or DELETING → removed (with its tokens), if the profile
/// (same name and ARN) is still in the status the step expects. Returns whether it changed.
pub(crate) fn advance(
    state: &mut ProfileState,
    transition: Transition,
    name: &str,
    arn: &str,
    arn_of: impl Fn(&FargateProfile) -> String,
) -> bool {
    let Some(index) = state
        .fargate_profiles
        .iter()
        .position(|p| p.fargate_profile_name == name && arn_of(p) == arn)
    else {
        return false;
    };
    match (transition, state.fargate_profiles[index].status) {
        (Transition::Activate, ProfileStatus::Creating) => {
            state.fargate_profiles[index].status = ProfileStatus::Active;
        }
        (Transition::Remove, ProfileStatus::Deleting) => {
            state.fargate_profiles.remove(index);
            drop_tokens(state, name, arn);
        }
        _ => return false,
    }
    true
}

/// An injected failure instead of the step: CREATING → CREATE_FAILED or DELETING → DELETE_FAILED,
/// with `health`, if the profile is still the same one in the status the step expects.
pub(crate) fn fail(
    state: &mut ProfileState,
    transition: Transition,
    name: &str,
    arn: &str,
    status: ProfileStatus,
    health: &crate::profile::Health,
    arn_of: impl Fn(&FargateProfile) -> String,
) -> bool {
    let expected = match transition {
        Transition::Activate => ProfileStatus::Creating,
        Transition::Remove => ProfileStatus::Deleting,
    };
    let Some(profile) = state
        .fargate_profiles
        .iter_mut()
        .find(|p| p.fargate_profile_name == name && arn_of(p) == arn && p.status == expected)
    else {
        return false;
    };
    profile.status = status;
    profile.health = Some(health.clone());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Selector;
    use std::collections::BTreeMap;

    const CLUSTER: &str = "fargate";

    fn arn(p: &FargateProfile) -> String {
        p.fargate_profile_arn
            .clone()
            .unwrap_or_else(|| format!("derived/{}", p.fargate_profile_name))
    }

    fn profile(name: &str, status: ProfileStatus) -> FargateProfile {
        FargateProfile {
            fargate_profile_name: name.into(),
            fargate_profile_arn: Some(format!("arn/{name}")),
            pod_execution_role_arn: "arn:aws:iam::012345678910:role/R".into(),
            selectors: vec![Selector {
                namespace: Some("ns".into()),
                labels: BTreeMap::new(),
            }],
            status,
            ..Default::default()
        }
    }

    fn state(profiles: Vec<FargateProfile>) -> ProfileState {
        ProfileState {
            fargate_profiles: profiles,
            client_request_tokens: BTreeMap::new(),
        }
    }

    /// (what, state, token, quota, expected code, profiles after)
    type CreateCase<'a> = (
        &'a str,
        ProfileState,
        Option<&'a str>,
        usize,
        &'a str,
        usize,
    );

    fn code(result: &Result<(), Refusal>) -> &'static str {
        match result {
            Ok(()) => "ok",
            Err(Refusal::Error(e)) => e.code,
            Err(Refusal::Replay(_)) => "replay",
            Err(Refusal::NoChange) => "no change",
        }
    }

    #[test]
    fn create_checks_in_eks_order() {
        let new = profile("new", ProfileStatus::Creating);
        let limits = |max_profiles| Limits {
            max_profiles,
            ..Limits::default()
        };
        let with_token = |mut s: ProfileState, digest: &str| {
            s.client_request_tokens.insert(
                "tok".into(),
                TokenRecord {
                    fargate_profile_name: "new".into(),
                    fargate_profile_arn: "arn/new".into(),
                    request_digest: digest.into(),
                },
            );
            s
        };
        let active = |n: &str| profile(n, ProfileStatus::Active);
        let mut remade = active("new");
        remade.fargate_profile_arn = Some("arn/new-2".into());
        let cases: Vec<CreateCase> = vec![
            ("empty cluster", state(vec![]), None, 10, "ok", 1),
            (
                "beside an ACTIVE one",
                state(vec![active("a")]),
                None,
                10,
                "ok",
                2,
            ),
            (
                "duplicate name",
                state(vec![profile("new", ProfileStatus::Active)]),
                None,
                10,
                "ResourceInUseException",
                1,
            ),
            (
                "quota reached",
                state(vec![active("a"), active("b")]),
                None,
                2,
                "ResourceLimitExceededException",
                2,
            ),
            (
                "quota before busy",
                state(vec![profile("a", ProfileStatus::Creating)]),
                None,
                1,
                "ResourceLimitExceededException",
                1,
            ),
            (
                "another CREATING",
                state(vec![profile("a", ProfileStatus::Creating)]),
                None,
                10,
                "ResourceInUseException",
                1,
            ),
            (
                "another DELETING",
                state(vec![profile("a", ProfileStatus::Deleting)]),
                None,
                10,
                "ResourceInUseException",
                1,
            ),
            (
                "same token, same request",
                with_token(state(vec![profile("new", ProfileStatus::Creating)]), "d"),
                Some("tok"),
                10,
                "replay",
                1,
            ),
            (
                "same token, other request",
                with_token(state(vec![profile("new", ProfileStatus::Active)]), "other"),
                Some("tok"),
                10,
                "InvalidParameterException",
                1,
            ),
            (
                "stale token (its profile is gone)",
                with_token(state(vec![]), "other"),
                Some("tok"),
                10,
                "ok",
                1,
            ),
            (
                "stale token (a profile of its name made again: another ARN)",
                with_token(state(vec![remade.clone()]), "d"),
                Some("tok"),
                10,
                "ResourceInUseException",
                1,
            ),
        ];
        for (what, mut s, token, max, want, after) in cases {
            let request = CreateRequest {
                profile: &new,
                token,
                digest: "d",
                activate_now: false,
            };
            let result = create(&mut s, &request, &limits(max), CLUSTER, arn);
            assert_eq!(code(&result), want, "{what}");
            assert_eq!(s.fargate_profiles.len(), after, "{what}");
        }
    }

    #[test]
    fn a_create_forgets_the_tokens_of_profiles_that_are_gone() {
        let record = |name: &str, arn: &str| TokenRecord {
            fargate_profile_name: name.into(),
            fargate_profile_arn: arn.into(),
            request_digest: "d".into(),
        };
        // `gone` was removed with kubectl: nothing dropped its token.
        let mut s = state(vec![profile("kept", ProfileStatus::Active)]);
        s.client_request_tokens
            .insert("kept-tok".into(), record("kept", "arn/kept"));
        s.client_request_tokens
            .insert("gone-tok".into(), record("gone", "arn/gone"));
        let new = profile("new", ProfileStatus::Creating);
        let request = CreateRequest {
            profile: &new,
            token: None,
            digest: "d",
            activate_now: false,
        };
        create(&mut s, &request, &Limits::default(), CLUSTER, arn).unwrap();
        let left: Vec<&str> = s.client_request_tokens.keys().map(String::as_str).collect();
        assert_eq!(left, ["kept-tok"]);
    }

    #[test]
    fn create_stores_the_profile_and_its_token() {
        let new = profile("new", ProfileStatus::Creating);
        for activate_now in [false, true] {
            let mut s = state(vec![]);
            let request = CreateRequest {
                profile: &new,
                token: Some("tok"),
                digest: "d",
                activate_now,
            };
            create(&mut s, &request, &Limits::default(), CLUSTER, arn).unwrap();
            let want = if activate_now {
                ProfileStatus::Active
            } else {
                ProfileStatus::Creating
            };
            assert_eq!(s.fargate_profiles[0].status, want);
            let record = &s.client_request_tokens["tok"];
            assert_eq!(
                (
                    record.fargate_profile_name.as_str(),
                    record.fargate_profile_arn.as_str(),
                    record.request_digest.as_str()
                ),
                ("new", "arn/new", "d")
            );
        }
        let err = create(
            &mut state(vec![profile("a", ProfileStatus::Deleting)]),
            &CreateRequest {
                profile: &new,
                token: None,
                digest: "d",
                activate_now: false,
            },
            &Limits::default(),
            CLUSTER,
            arn,
        );
        let Err(Refusal::Error(e)) = err else {
            panic!("not refused")
        };
        assert_eq!(
            e.message,
            "Cannot create Fargate Profile new because cluster fargate currently has Fargate profile a in status DELETING"
        );
    }

    #[test]
    fn drop_tokens_forgets_only_the_removed_profiles_own() {
        let record = |name: &str, arn: &str| TokenRecord {
            fargate_profile_name: name.into(),
            fargate_profile_arn: arn.into(),
            request_digest: "d".into(),
        };
        let mut s = state(vec![]);
        for (token, name, arn) in [
            ("mine", "a", "arn/a"),
            ("same-name-other-arn", "a", "arn/a-2"),
            ("other-name-same-arn", "b", "arn/a"),
            ("other", "b", "arn/b"),
        ] {
            s.client_request_tokens
                .insert(token.into(), record(name, arn));
        }
        drop_tokens(&mut s, "a", "arn/a");
        let left: Vec<&str> = s.client_request_tokens.keys().map(String::as_str).collect();
        assert_eq!(
            left,
            ["other", "other-name-same-arn", "same-name-other-arn"]
        );
    }

    #[test]
    fn delete_cases() {
        // Not found, busy, DELETING, removed at once with its tokens.
        let mut s = state(vec![profile("a", ProfileStatus::Active)]);
        let Err(Refusal::Error(e)) = delete(&mut s, "b", CLUSTER, false, arn) else {
            panic!("found b")
        };
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                "ResourceNotFoundException",
                "No Fargate Profile found with name: b."
            )
        );
        let mut busy = state(vec![
            profile("a", ProfileStatus::Active),
            profile("c", ProfileStatus::Creating),
        ]);
        let Err(Refusal::Error(e)) = delete(&mut busy, "a", CLUSTER, false, arn) else {
            panic!("deleted while c is CREATING")
        };
        assert_eq!(
            (e.status.as_u16(), e.code, e.message.as_str()),
            (
                409,
                "ResourceInUseException",
                "Cannot Delete Fargate Profile a because cluster fargate currently has an update in progress"
            )
        );
        // The CREATING profile itself: 400, as for one that is DELETING.
        let Err(Refusal::Error(e)) = delete(&mut busy, "c", CLUSTER, false, arn) else {
            panic!("deleted c while CREATING")
        };
        assert_eq!(
            (e.status.as_u16(), e.code, e.message.as_str()),
            (
                400,
                "InvalidRequestException",
                "Fargate Profile is currently not in Active State."
            )
        );
        // A DELETING profile is named, also when another is CREATING (hand-written states).
        busy.fargate_profiles
            .push(profile("d", ProfileStatus::Deleting));
        let Err(Refusal::Error(e)) = delete(&mut busy, "a", CLUSTER, false, arn) else {
            panic!("deleted while d is DELETING")
        };
        assert_eq!(
            e.message,
            "Cannot Delete Fargate Profile a because cluster fargate currently has Fargate profile d in status DELETING"
        );
        let answered = delete(&mut s, "a", CLUSTER, false, arn).unwrap();
        assert_eq!(answered.status, ProfileStatus::Deleting);
        assert_eq!(s.fargate_profiles[0].status, ProfileStatus::Deleting);
        // Deleting one that is itself DELETING: 400, not the 409 of another busy profile.
        let Err(Refusal::Error(e)) = delete(&mut s, "a", CLUSTER, false, arn) else {
            panic!("deleted a DELETING profile")
        };
        assert_eq!(
            (e.status.as_u16(), e.code, e.message.as_str()),
            (
                400,
                "InvalidRequestException",
                "Fargate Profile is currently not in Active State."
            )
        );

        let mut now = state(vec![profile("a", ProfileStatus::Active)]);
        now.client_request_tokens.insert(
            "tok".into(),
            TokenRecord {
                fargate_profile_name: "a".into(),
                fargate_profile_arn: "arn/a".into(),
                request_digest: "d".into(),
            },
        );
        let answered = delete(&mut now, "a", CLUSTER, true, arn).unwrap();
        assert_eq!(answered.status, ProfileStatus::Deleting);
        assert!(now.fargate_profiles.is_empty());
        assert!(now.client_request_tokens.is_empty());
    }

    #[test]
    fn advance_only_moves_the_expected_status_of_the_same_profile() {
        use ProfileStatus::*;
        let cases = [
            (Transition::Activate, Creating, "arn/a", true, Some(Active)),
            (Transition::Activate, Active, "arn/a", false, Some(Active)),
            (
                Transition::Activate,
                Deleting,
                "arn/a",
                false,
                Some(Deleting),
            ),
            (Transition::Remove, Deleting, "arn/a", true, None),
            (Transition::Remove, Active, "arn/a", false, Some(Active)),
            (
                Transition::Activate,
                Creating,
                "arn/other",
                false,
                Some(Creating),
            ),
        ];
        for (transition, status, target, changed, after) in cases {
            let mut s = state(vec![profile("a", status)]);
            assert_eq!(
                advance(&mut s, transition, "a", target, arn),
                changed,
                "{transition:?} {status:?} {target}"
            );
            assert_eq!(s.fargate_profiles.first().map(|p| p.status), after);
        }
    }

    #[test]
    fn fail_only_marks_the_expected_status_of_the_same_profile() {
        use ProfileStatus::*;
        let health = crate::profile::Health {
            issues: vec![crate::profile::HealthIssue {
                code: Some("InjectedFault".into()),
                ..Default::default()
            }],
        };
        // (transition, status of profile a, name and ARN the step is for, failed?)
        let cases = [
            (Transition::Activate, Creating, "a", "arn/a", true),
            (Transition::Remove, Deleting, "a", "arn/a", true),
            (Transition::Activate, Deleting, "a", "arn/a", false),
            (Transition::Remove, Creating, "a", "arn/a", false),
            (Transition::Activate, Active, "a", "arn/a", false),
            // A profile of the same name made again since the step was planned: another ARN.
            (Transition::Activate, Creating, "a", "arn/other", false),
            // A step for another profile, gone: a being CREATING does not make it a's.
            (Transition::Activate, Creating, "b", "arn/b", false),
        ];
        for (transition, status, name, target, failed) in cases {
            let failed_status = match transition {
                Transition::Activate => CreateFailed,
                Transition::Remove => DeleteFailed,
            };
            let mut s = state(vec![profile("a", status)]);
            let what = format!("{transition:?} {status:?} {name} {target}");
            assert_eq!(
                fail(
                    &mut s,
                    transition,
                    name,
                    target,
                    failed_status,
                    &health,
                    arn
                ),
                failed,
                "{what}"
            );
            let a = &s.fargate_profiles[0];
            let want = if failed {
                (failed_status, Some(&health))
            } else {
                (status, None)
            };
            assert_eq!((a.status, a.health.as_ref()), want, "{what}");
        }
    }
}
