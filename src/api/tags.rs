//! TagResource, UntagResource and ListTagsForResource on profile ARNs.

use super::Api;
use super::error::ApiError;
use super::rules::{Refusal, refuse};
use super::wire::*;
use crate::profile::{self, ProfileState};
use serde_json::{Value, json};

impl Api {
    /// The index of the profile an ARN names, or 400/404 as the tag operations answer.
    pub(super) fn find_by_arn(&self, state: &ProfileState, arn: &str) -> Result<usize, ApiError> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        if parts.len() != 6 || parts[0] != "arn" || parts[2] != "eks" || parts[5].is_empty() {
            return Err(ApiError::bad_request(format!("Invalid ARN: {arn}")));
        }
        if !parts[5].starts_with("fargateprofile/") {
            return Err(ApiError::not_found(format!(
                "Resource not found: {arn}. Only Fargate profile ARNs can be tagged here."
            )));
        }
        state
            .fargate_profiles
            .iter()
            .position(|p| self.arn_of(p) == arn)
            .ok_or_else(|| {
                ApiError::not_found(format!("No Fargate Profile found with ARN: {arn}."))
            })
    }

    pub(super) fn list_tags(&self, arn: &str) -> Result<Value, ApiError> {
        let state = self.inner.store.current();
        let index = self.find_by_arn(&state, arn)?;
        Ok(json!({ "tags": state.fargate_profiles[index].tags }))
    }

    pub(super) async fn tag(&self, arn: &str, body: &[u8]) -> Result<Value, ApiError> {
        let body: TagBody = parse_json(body, ApiError::bad_request)?;
        let tags = body.tags.unwrap_or_default();
        if tags.is_empty() {
            return Err(ApiError::bad_request("tags must contain at least one tag."));
        }
        profile::validate_tags(&tags).map_err(|v| ApiError::bad_request(v.0))?;
        let result = self
            .run(|state: &mut ProfileState| {
                let index = self.find_by_arn(state, arn).map_err(refuse)?;
                let mut merged = state.fargate_profiles[index].tags.clone();
                merged.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
                profile::validate_tags(&merged).map_err(|v| refuse(ApiError::bad_request(v.0)))?;
                let profile = &mut state.fargate_profiles[index];
                if profile.fargate_profile_arn.is_none() {
                    profile.fargate_profile_arn = Some(arn.to_owned());
                }
                profile.tags = merged;
                Ok(())
            })
            .await?;
        self.tag_result(result)
    }

    pub(super) async fn untag(&self, arn: &str, query: &str) -> Result<Value, ApiError> {
        let pairs = query_pairs(query).map_err(|e| ApiError::bad_request(e.message))?;
        let keys: Vec<String> = pairs
            .into_iter()
            .filter(|(k, _)| k == "tagKeys")
            .map(|(_, v)| v)
            .collect();
        if keys.is_empty() {
            return Err(ApiError::bad_request(
                "tagKeys must contain at least one key.",
            ));
        }
        if keys.len() > profile::MAX_TAGS {
            return Err(ApiError::bad_request(format!(
                "tagKeys may contain at most {} keys.",
                profile::MAX_TAGS
            )));
        }
        if let Some(bad) = keys
            .iter()
            .find(|k| k.is_empty() || k.chars().count() > profile::MAX_TAG_KEY_LEN)
        {
            return Err(ApiError::bad_request(format!(
                "Tag key '{bad}' must be 1 to {} characters.",
                profile::MAX_TAG_KEY_LEN
            )));
        }
        let result = self
            .run(|state: &mut ProfileState| {
                let index = self.find_by_arn(state, arn).map_err(refuse)?;
                let profile = &mut state.fargate_profiles[index];
                if !keys.iter().any(|k| profile.tags.contains_key(k)) {
                    return Err(Refusal::NoChange);
                }
                for key in &keys {
                    profile.tags.remove(key);
                }
                Ok(())
            })
            .await?;
        self.tag_result(result)
    }

    pub(super) fn tag_result(
        &self,
        result: Result<std::sync::Arc<ProfileState>, Refusal>,
    ) -> Result<Value, ApiError> {
        match result {
            Ok(_) => Ok(json!({})),
            Err(Refusal::Error(error)) => Err(error),
            // Removing keys that are not there is a success that writes nothing.
            Err(Refusal::NoChange) => Ok(json!({})),
            Err(Refusal::Replay(_)) => Err(ApiError::server("Unexpected replay.")),
        }
    }
}
