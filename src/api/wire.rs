//! The wire shapes of the API: request bodies, the FargateProfile object as sent, query strings.

use super::Api;
use super::error::ApiError;
use super::route::decode;
use crate::profile::{FargateProfile, Health, ProfileStatus, Selector};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The Create request body. Unknown keys are ignored, as AWS services do.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateBody {
    pub(crate) fargate_profile_name: Option<String>,
    pub(crate) pod_execution_role_arn: Option<String>,
    pub(crate) subnets: Option<Vec<String>>,
    pub(crate) selectors: Option<Vec<SelectorBody>>,
    pub(crate) client_request_token: Option<String>,
    pub(crate) tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
pub(crate) struct SelectorBody {
    pub(crate) namespace: Option<String>,
    pub(crate) labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
pub(crate) struct TagBody {
    pub(crate) tags: Option<BTreeMap<String, String>>,
}

/// What a token's digest covers: the request's meaningful content.
#[derive(Serialize)]
pub(crate) struct DigestInput<'a> {
    pub(crate) name: &'a str,
    pub(crate) role: &'a str,
    pub(crate) subnets: &'a Option<Vec<String>>,
    pub(crate) selectors: &'a [Selector],
    pub(crate) tags: &'a BTreeMap<String, String>,
}

/// The FargateProfile object as sent on the wire: every member present, `tags` `{}` when none.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProfileOut<'a> {
    pub(crate) fargate_profile_name: &'a str,
    pub(crate) fargate_profile_arn: String,
    pub(crate) cluster_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) created_at: Option<f64>,
    pub(crate) pod_execution_role_arn: &'a str,
    pub(crate) subnets: &'a [String],
    pub(crate) selectors: Vec<SelectorOut<'a>>,
    pub(crate) status: ProfileStatus,
    pub(crate) tags: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) health: Option<&'a Health>,
}

#[derive(Serialize)]
pub(crate) struct SelectorOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) namespace: Option<&'a str>,
    pub(crate) labels: &'a BTreeMap<String, String>,
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    bad: fn(String) -> ApiError,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| bad(format!("The request body is not valid: {e}")))
}

/// Query parameters, decoded, in order.
pub(crate) fn query_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match (decode(k), decode(v)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(ApiError::invalid_parameter(
                    "The query string is not valid percent-encoded UTF-8.",
                )),
            }
        })
        .collect()
}

impl Api {
    pub(super) fn render(&self, profile: &FargateProfile) -> Value {
        let out = ProfileOut {
            fargate_profile_name: &profile.fargate_profile_name,
            fargate_profile_arn: self.arn_of(profile),
            cluster_name: &self.cluster().name,
            created_at: profile.created_at,
            pod_execution_role_arn: &profile.pod_execution_role_arn,
            subnets: &profile.subnets,
            selectors: profile
                .selectors
                .iter()
                .map(|s| SelectorOut {
                    namespace: s.namespace.as_deref(),
                    labels: &s.labels,
                })
                .collect(),
            status: profile.status,
            tags: &profile.tags,
            health: profile.health.as_ref(),
        };
        serde_json::to_value(out).unwrap_or(Value::Null)
    }
}
