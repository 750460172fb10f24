//! The `FargateProfile` custom resource (`fargateprofiles.fargate-webhook.io`, `v1alpha1`,
//! cluster-scoped, short name `fp`): the Kubernetes store's representation of an EKS Fargate
//! profile, and the CRD generated from these types (the Helm chart ships [`crd_yaml`]).
//!
//! - `metadata.name` is the profile name. Kubernetes object names are lowercase DNS subdomains, so
//!   with this store a profile name is also limited to lowercase letters, digits and `-`, starting
//!   and ending with a letter or digit (see [`k8s_name_problem`]).
//! - `spec` is the EKS request shape (`podExecutionRoleArn`, `subnets`, `selectors`, `tags`); it is
//!   immutable except for `tags`, enforced by a CEL transition rule.
//! - `status` (the status subresource) is the lifecycle written by the EKS API through the store:
//!   `status`, `fargateProfileArn`, `clusterName`, `createdAt` (RFC 3339, millisecond precision)
//!   and `observedGeneration`.
//!
//! The OpenAPI schema enforces the per-profile limits that do not depend on configuration
//! (selectors 1..5, labels ≤ 5, tags ≤ 50 with keys 1..128 and values ≤ 256, the reserved `aws:`
//! and `eks-` prefixes, the role ARN shape); the store still runs [`profile::validate`] on every
//! object it reads, with the configured limits.

use crate::profile::{self, ProfileStatus, Selector};
use ::kube::core::CustomResourceExt;
use ::kube::{CustomResource, KubeSchema};
use jiff::Timestamp;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const GROUP: &str = "fargate-webhook.io";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "FargateProfile";
pub const PLURAL: &str = "fargateprofiles";
/// `<plural>.<group>`, the CRD's own name.
pub const CRD_NAME: &str = "fargateprofiles.fargate-webhook.io";

/// The CEL rule that keeps `spec` immutable except for `tags`.
pub const IMMUTABLE_SPEC_RULE: &str = "self.podExecutionRoleArn == oldSelf.podExecutionRoleArn \
     && self.selectors == oldSelf.selectors \
     && has(self.subnets) == has(oldSelf.subnets) \
     && (!has(self.subnets) || self.subnets == oldSelf.subnets)";
pub const IMMUTABLE_SPEC_MESSAGE: &str =
    "spec is immutable; create a new FargateProfile and delete the old one";

/// The profile as given to CreateFargateProfile. Immutable except for tags.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "fargate-webhook.io",
    version = "v1alpha1",
    kind = "FargateProfile",
    plural = "fargateprofiles",
    singular = "fargateprofile",
    shortname = "fp",
    status = "FargateProfileStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "An EKS Fargate profile. Pods whose namespace and labels match one of its selectors are sent to the fargate-scheduler while the profile is ACTIVE. The object name is the profile name.",
    label("app.kubernetes.io/part-of", "fargate-webhook"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status"),
    // The whole list: kube-apiserver prints only the first match of a `[*]` path (a real
    // apiserver showed one namespace of two with `.spec.selectors[*].namespace`).
    printcolumn(name = "Selectors", type_ = "string", json_path = ".spec.selectors"),
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".status.clusterName",
        priority = "1"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 100")
        .message("The Fargate profile name parameter should not be greater than 100 characters."),
    validation = Rule::new("!self.metadata.name.startsWith('eks-')")
        .message("The fargate profile name starts with the reserved prefix: 'eks-'."),
    validation = Rule::new("self.metadata.name.matches('^[0-9A-Za-z][A-Za-z0-9_-]*$')")
        .message("The Fargate profile name must start with a letter or digit and contain only letters, digits, '-' and '_'.")
)]
#[x_kube(validation = Rule::new(IMMUTABLE_SPEC_RULE).message(IMMUTABLE_SPEC_MESSAGE))]
#[serde(rename_all = "camelCase")]
pub struct FargateProfileSpec {
    /// The IAM role the Fargate pods run with: arn:<partition>:iam::<account>:role/<name>.
    #[schemars(
        length(max = 2048),
        regex(pattern = r"^arn:[a-z-]+:iam::[0-9]{12}:role/.+$")
    )]
    pub pod_execution_role_arn: String,
    /// Private subnets for the pods; omitted means the cluster's private subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(min = 1, max = 16),
        inner(length(min = 1, max = 64), regex(pattern = profile::SUBNET_ID_PATTERN))
    )]
    pub subnets: Vec<String>,
    /// A pod matches the profile when it matches any selector.
    #[schemars(length(min = 1, max = 5))]
    pub selectors: Vec<ProfileSelector>,
    /// Tags; the only part of spec that may change.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 50,
        "additionalProperties" = {"type": "string", "maxLength": 256}
    ))]
    #[x_kube(
        validation = Rule::new("self.all(k, k.size() >= 1 && k.size() <= 128)")
            .message("tag keys must be 1 to 128 characters long"),
        validation = Rule::new(
            "self.all(k, !['aws:', 'awS:', 'aWs:', 'aWS:', 'Aws:', 'AwS:', 'AWs:', 'AWS:'].exists(p, k.startsWith(p)))"
        )
        .message("tag keys must not start with the reserved prefix 'aws:'")
    )]
    pub tags: BTreeMap<String, String>,
}

/// One selector: a namespace (or a pattern with `*` and `?`) and labels the pod must all carry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSelector {
    /// Namespace, or a pattern with '*' and '?'.
    #[schemars(length(min = 1, max = 63), regex(pattern = profile::NAMESPACE_PATTERN))]
    pub namespace: String,
    /// Labels the pod must all carry (values may use '*' and '?').
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 5,
        "additionalProperties" = {"type": "string", "maxLength": 63}
    ))]
    #[x_kube(validation = Rule::new("self.all(k, k.size() >= 1 && k.size() <= 317)")
        .message("label keys must be 1 to 317 characters long (a Kubernetes label key)"))]
    pub labels: BTreeMap<String, String>,
}

/// The lifecycle, written by the EKS API through the store (status subresource).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FargateProfileStatus {
    /// CREATING, ACTIVE, DELETING, CREATE_FAILED or DELETE_FAILED. Only ACTIVE profiles match pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_schema")]
    pub status: Option<ProfileStatus>,
    /// The profile's EKS ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fargate_profile_arn: Option<String>,
    /// The EKS cluster the profile belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Creation time, RFC 3339 (millisecond precision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub created_at: Option<String>,
    /// The `metadata.generation` this status was written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// EKS's `health`: the issues of a CREATE_FAILED or DELETE_FAILED profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<profile::Health>,
}

fn status_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = ProfileStatus::ALL.iter().map(|s| s.as_str()).collect();
    schemars::json_schema!({
        "description": "CREATING, ACTIVE, DELETING, CREATE_FAILED or DELETE_FAILED. Only ACTIVE profiles match pods.",
        "type": "string",
        "enum": names,
    })
}

/// The CustomResourceDefinition, as generated from the Rust types (plus `listKind` and the
/// implicit `apiVersion`/`kind`/`metadata` properties spelled out, as controller-gen does).
pub fn crd() -> CustomResourceDefinition {
    let mut crd = FargateProfile::crd();
    crd.spec.names.list_kind = Some(format!("{KIND}List"));
    for version in &mut crd.spec.versions {
        let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        schema.title = None;
        let properties = schema.properties.get_or_insert_default();
        for (name, kind) in [
            ("apiVersion", "string"),
            ("kind", "string"),
            ("metadata", "object"),
        ] {
            properties
                .entry(name.to_owned())
                .or_insert(JSONSchemaProps {
                    type_: Some(kind.to_owned()),
                    ..Default::default()
                });
        }
    }
    crd
}

/// Header of the generated YAML file.
pub const YAML_HEADER: &str = "# Generated from src/store/crd.rs: do not edit by hand.\n\
# Regenerate with `UPDATE_CRD=1 cargo test --test crd`; `cargo test --test crd` fails on drift.\n";

/// The CRD as YAML, as shipped in `charts/fargate-webhook/crds/fargateprofiles.yaml`.
pub fn crd_yaml() -> String {
    let body = serde_saphyr::to_string(&crd()).expect("a CRD always serializes");
    format!("{YAML_HEADER}{body}")
}

/// Why `name` cannot be the `metadata.name` of a FargateProfile resource, if it cannot: Kubernetes
/// names are lowercase RFC 1123 subdomains, a subset of what EKS accepts (which adds upper case
/// and `_`). The EKS rules themselves are [`profile::validate_name`]'s.
pub fn k8s_name_problem(name: &str) -> Option<String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    (!valid).then(|| {
        format!(
            "The Fargate profile name '{name}' cannot be stored as a Kubernetes FargateProfile: with the Kubernetes profile store, names may contain only lowercase letters, digits and '-', and must start and end with a letter or digit."
        )
    })
}

/// `createdAt` in the resource: RFC 3339 with millisecond precision, from EKS epoch seconds.
pub fn format_created_at(epoch_seconds: f64) -> Option<String> {
    if !epoch_seconds.is_finite() {
        return None;
    }
    let millis = (epoch_seconds * 1000.0).round();
    if millis.abs() > 9.0e15 {
        return None;
    }
    Timestamp::from_millisecond(millis as i64)
        .ok()
        .map(|t| format!("{t:.3}"))
}

/// EKS epoch seconds (rounded to the millisecond) from an RFC 3339 `createdAt`.
pub fn parse_created_at(text: &str) -> Option<f64> {
    let t: Timestamp = text.parse().ok()?;
    Some(t.as_millisecond() as f64 / 1000.0)
}

impl FargateProfileSpec {
    /// The spec part of an EKS profile.
    pub fn from_profile(profile: &profile::FargateProfile) -> Self {
        FargateProfileSpec {
            pod_execution_role_arn: profile.pod_execution_role_arn.clone(),
            subnets: profile.subnets.clone(),
            selectors: profile
                .selectors
                .iter()
                .map(|s| ProfileSelector {
                    namespace: s.namespace.clone().unwrap_or_default(),
                    labels: s.labels.clone(),
                })
                .collect(),
            tags: profile.tags.clone(),
        }
    }

    /// The selectors in the EKS model.
    pub fn eks_selectors(&self) -> Vec<Selector> {
        self.selectors
            .iter()
            .map(|s| Selector {
                namespace: Some(s.namespace.clone()),
                labels: s.labels.clone(),
            })
            .collect()
    }
}

impl FargateProfileStatus {
    /// The status part of an EKS profile.
    pub fn from_profile(profile: &profile::FargateProfile) -> Self {
        FargateProfileStatus {
            status: Some(profile.status),
            fargate_profile_arn: profile.fargate_profile_arn.clone(),
            cluster_name: profile.cluster_name.clone(),
            created_at: profile.created_at.and_then(format_created_at),
            observed_generation: None,
            health: profile.health.clone(),
        }
    }
}
