//! The commit journal kept in the coordination ConfigMap (the writes of the last commit, the
//! idempotency tokens) and the plan that turns one state into another as writes.

use super::commit::AttemptError;
use super::observed::Listed;
use super::resource::{profile_from_resource, status_part};
use super::{PENDING_KEY, QUARANTINE_KEY, TOKENS_KEY};
use crate::profile::{FargateProfile, Limits, ProfileState, TokenRecord};
use crate::store::crd::{
    self, FargateProfile as ProfileResource, FargateProfileSpec, FargateProfileStatus,
};
use crate::store::rules::{Journalled, check_journalled};
use crate::store::{Violation, check_change};
use k8s_openapi::api::core::v1::ConfigMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One write of a commit, as journaled in the coordination ConfigMap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Op {
    /// Create the resource and write its status.
    #[serde(rename_all = "camelCase")]
    Create {
        name: String,
        spec: FargateProfileSpec,
        status: FargateProfileStatus,
    },
    /// Change the tags and/or the status of the resource with this uid.
    #[serde(rename_all = "camelCase")]
    Update {
        name: String,
        uid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tags: Option<BTreeMap<String, String>>,
        /// The resource's `metadata.generation` the tags were planned on: a spec that moved past it
        /// was written since (by this op, or by kubectl after it), and the tags are not written
        /// again over it. Absent in journals of older builds: the tags are written as before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<FargateProfileStatus>,
    },
    /// Delete the resource with this uid and drop its finalizer.
    #[serde(rename_all = "camelCase")]
    Remove { name: String, uid: String },
}

impl Op {
    /// What the write does, for messages.
    pub fn verb(&self) -> &'static str {
        match self {
            Op::Create { .. } => "create",
            Op::Update { .. } => "update",
            Op::Remove { .. } => "removal",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Op::Create { name, .. } | Op::Update { name, .. } | Op::Remove { name, .. } => name,
        }
    }

    /// Whether the API could have made this write over `state` (the resources before it): a
    /// journal found in the ConfigMap is checked before it is carried out, since anyone with write
    /// access to the ConfigMap can write one ([`check_journalled`]).
    pub(super) fn check(&self, state: &ProfileState, limits: &Limits) -> Result<(), String> {
        let write = match self {
            Op::Create { name, spec, status } => {
                let mut resource = ProfileResource::new(name, spec.clone());
                resource.status = Some(status.clone());
                let profile = profile_from_resource(&resource)
                    .ok_or_else(|| format!("{name}: not a profile"))?;
                return check_journalled(state, Journalled::Create(&profile), limits);
            }
            Op::Update {
                name, tags, status, ..
            } => Journalled::Update {
                name,
                tags: tags.as_ref(),
                status: status.as_ref().and_then(|s| s.status),
            },
            Op::Remove { name, .. } => Journalled::Remove { name },
        };
        check_journalled(state, write, limits)
    }
}

/// The pending writes of the last commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub commit: String,
    pub ops: Vec<Op>,
}

/// A journalled write the apiserver refused for good, out of the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quarantined {
    pub commit: String,
    pub op: Op,
    /// The apiserver's answer.
    pub refused: String,
    /// When it was quarantined (RFC 3339).
    pub at: String,
}

/// The coordination ConfigMap as read.
#[derive(Debug)]
pub(super) struct Lock {
    pub(super) resource_version: String,
    pub(super) tokens: BTreeMap<String, TokenRecord>,
    pub(super) pending: Option<Pending>,
    pub(super) quarantined: Vec<Quarantined>,
}
/// Read the coordination ConfigMap. A part that does not parse is an error, never an empty value: an
/// unreadable token map read as empty would accept a replayed token for a second profile and the next
/// commit would overwrite it; an unreadable journal read as empty would drop writes already
/// acknowledged. Writes stop with that error until an operator repairs the ConfigMap (README, "Several
/// replicas").
pub(super) fn parse_lock(config_map: &ConfigMap) -> Result<Lock, String> {
    let data = config_map.data.clone().unwrap_or_default();
    let unreadable = |key: &str, error: serde_json::Error| {
        format!(
            "the coordination ConfigMap {}/{} has an unreadable `{key}` ({error}); profile writes stop \
             until it is repaired or removed, so that nothing is overwritten that could not be read",
            config_map.metadata.namespace.as_deref().unwrap_or_default(),
            config_map.metadata.name.as_deref().unwrap_or_default(),
        )
    };
    let tokens = match data.get(TOKENS_KEY) {
        None => BTreeMap::new(),
        Some(text) => serde_json::from_str(text).map_err(|e| unreadable(TOKENS_KEY, e))?,
    };
    let pending = match data.get(PENDING_KEY) {
        None => None,
        Some(text) => Some(serde_json::from_str(text).map_err(|e| unreadable(PENDING_KEY, e))?),
    };
    let quarantined = match data.get(QUARANTINE_KEY) {
        None => Vec::new(),
        Some(text) => serde_json::from_str(text).map_err(|e| unreadable(QUARANTINE_KEY, e))?,
    };
    Ok(Lock {
        quarantined,
        resource_version: config_map
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default(),
        tokens,
        pending,
    })
}

/// The writes that turn `before` into `after`.
pub(super) fn plan(
    before: &ProfileState,
    after: &ProfileState,
    listed: &Listed,
    limits: &Limits,
) -> Result<Vec<Op>, AttemptError> {
    check_change(before, after, limits).map_err(AttemptError::Violation)?;
    let taken = listed.names();
    let listed = &listed.objects;
    let old: BTreeMap<&str, &FargateProfile> = before
        .fargate_profiles
        .iter()
        .map(|p| (p.fargate_profile_name.as_str(), p))
        .collect();
    let new: BTreeMap<&str, &FargateProfile> = after
        .fargate_profiles
        .iter()
        .map(|p| (p.fargate_profile_name.as_str(), p))
        .collect();
    let uid_of = |name: &str| {
        listed
            .get(name)
            .and_then(|o| o.metadata.uid.clone())
            .unwrap_or_default()
    };
    let generation_of = |name: &str| listed.get(name).and_then(|o| o.metadata.generation);
    let mut ops = Vec::new();
    for name in old.keys() {
        if !new.contains_key(name) {
            ops.push(Op::Remove {
                name: (*name).to_owned(),
                uid: uid_of(name),
            });
        }
    }
    for (name, now) in &new {
        match old.get(name) {
            None => {
                if let Some(problem) = crd::k8s_name_problem(name) {
                    return Err(AttemptError::Violation(Violation::Invalid(problem)));
                }
                if taken.contains(*name) {
                    // There, but not a profile for the change: being deleted, or unreadable.
                    return Err(AttemptError::Violation(if listed.contains_key(*name) {
                        Violation::NameStillDeleting
                    } else {
                        Violation::DuplicateName
                    }));
                }
                ops.push(Op::Create {
                    name: (*name).to_owned(),
                    spec: FargateProfileSpec::from_profile(now),
                    status: FargateProfileStatus::from_profile(now),
                });
            }
            Some(was) => {
                let tags = (was.tags != now.tags).then(|| now.tags.clone());
                let status = (status_part(was) != status_part(now))
                    .then(|| FargateProfileStatus::from_profile(now));
                if tags.is_some() || status.is_some() {
                    ops.push(Op::Update {
                        name: (*name).to_owned(),
                        uid: uid_of(name),
                        generation: tags.as_ref().and_then(|_| generation_of(name)),
                        tags,
                        status,
                    });
                }
            }
        }
    }
    Ok(ops)
}
