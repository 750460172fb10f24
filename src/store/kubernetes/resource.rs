//! What a FargateProfile resource means for the store: its status (recorded, or the one it was
//! created with), the finalizer, and the EKS profile it stands for.

use super::{FINALIZER, INITIAL_STATUS_ANNOTATION, PART_OF};
use crate::profile::{FargateProfile, ProfileState, ProfileStatus, TokenRecord};
use crate::store::crd::{
    self, FargateProfile as ProfileResource, FargateProfileSpec, FargateProfileStatus,
};
use ::kube::ResourceExt;
use std::collections::BTreeMap;

/// A resource's name and `resourceVersion`: what was reported or housekept already is kept by it.
pub(super) fn version_key(
    name: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> (String, String) {
    (
        name.to_owned(),
        meta.resource_version.clone().unwrap_or_default(),
    )
}

pub(super) fn has_finalizer(obj: &ProfileResource) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// The status subresource, when it says something.
pub(super) fn recorded_status(obj: &ProfileResource) -> Option<&FargateProfileStatus> {
    obj.status.as_ref().filter(|s| s.status.is_some())
}

pub(super) fn initial_status(obj: &ProfileResource) -> Option<FargateProfileStatus> {
    let text = obj.annotations().get(INITIAL_STATUS_ANNOTATION)?;
    serde_json::from_str(text).ok()
}

/// Whether `obj` is the resource a create with this status made.
pub(super) fn created_by(obj: &ProfileResource, status: &FargateProfileStatus) -> bool {
    initial_status(obj).is_some_and(|initial| {
        initial.fargate_profile_arn == status.fargate_profile_arn
            && initial.created_at == status.created_at
    })
}

pub(super) fn same_status(
    current: Option<&FargateProfileStatus>,
    desired: &FargateProfileStatus,
) -> bool {
    current.is_some_and(|current| {
        let mut current = current.clone();
        current.observed_generation = None;
        let mut desired = desired.clone();
        desired.observed_generation = None;
        current == desired
    })
}

pub(super) fn new_resource(
    name: &str,
    spec: &FargateProfileSpec,
    status: &FargateProfileStatus,
) -> ProfileResource {
    let mut obj = ProfileResource::new(name, spec.clone());
    obj.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    obj.metadata.labels = Some(BTreeMap::from([(PART_OF.0.into(), PART_OF.1.into())]));
    obj.metadata.annotations = Some(BTreeMap::from([(
        INITIAL_STATUS_ANNOTATION.to_owned(),
        serde_json::to_string(status).expect("status serializes"),
    )]));
    obj
}

/// The EKS profile a resource stands for; None when it is gone for us (being deleted, and our
/// finalizer already dropped).
pub fn profile_from_resource(obj: &ProfileResource) -> Option<FargateProfile> {
    let deleting = obj.metadata.deletion_timestamp.is_some();
    if deleting && !has_finalizer(obj) {
        return None;
    }
    let status = recorded_status(obj)
        .cloned()
        .or_else(|| initial_status(obj))
        .unwrap_or_default();
    let created_at = status
        .created_at
        .as_deref()
        .and_then(crd::parse_created_at)
        .or_else(|| {
            obj.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_millisecond() as f64 / 1000.0)
        });
    Some(FargateProfile {
        fargate_profile_name: obj.name_any(),
        fargate_profile_arn: status.fargate_profile_arn,
        cluster_name: status.cluster_name,
        created_at,
        pod_execution_role_arn: obj.spec.pod_execution_role_arn.clone(),
        subnets: obj.spec.subnets.clone(),
        selectors: obj.spec.eks_selectors(),
        status: if deleting {
            ProfileStatus::Deleting
        } else {
            status.status.unwrap_or(ProfileStatus::Active)
        },
        tags: obj.spec.tags.clone(),
        health: status.health,
    })
}

/// The state a change runs on: every listed resource that stands for a profile (invalid ones
/// included: the change sees what is there, e.g. to refuse a duplicate name), and the tokens.
pub(super) fn state_of(
    listed: &BTreeMap<String, ProfileResource>,
    tokens: &BTreeMap<String, TokenRecord>,
) -> ProfileState {
    ProfileState {
        fargate_profiles: listed.values().filter_map(profile_from_resource).collect(),
        client_request_tokens: tokens.clone(),
    }
}

/// The status part of a profile, compared at the precision the resource keeps.
pub(super) fn status_part(
    p: &FargateProfile,
) -> (ProfileStatus, Option<&str>, Option<&str>, Option<String>) {
    (
        p.status,
        p.fargate_profile_arn.as_deref(),
        p.cluster_name.as_deref(),
        p.created_at.and_then(crd::format_created_at),
    )
}
