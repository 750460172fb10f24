//! The operations on profiles: Create, Describe, List, Delete (the rules they apply to the
//! store's state are in `rules`).

use super::Api;
use super::error::ApiError;
use super::route::Route;
use super::rules::{self, Refusal, Transition};
use super::wire::*;
use crate::profile::{self, FargateProfile, ProfileState, ProfileStatus, Selector};
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::SystemTime;

/// Largest page of ListFargateProfiles (and the default).
pub const MAX_RESULTS: usize = 100;
/// Longest accepted `clientRequestToken`.
pub const MAX_TOKEN_LEN: usize = 256;

fn now_epoch_millis_secs() -> f64 {
    jiff::Timestamp::now().as_millisecond() as f64 / 1000.0
}

impl Api {
    /// Route, verify the signature when configured, run the operation.
    pub(crate) async fn execute(
        &self,
        parts: http::request::Parts,
        body: Bytes,
    ) -> (&'static str, Result<Value, ApiError>) {
        let route = Route::of(&parts.method, parts.uri.path());
        let operation = route.operation();
        if let Some(verifier) = &self.inner.verifier
            && let Err(error) = verifier.verify(
                parts.method.as_str(),
                parts.uri.path(),
                parts.uri.query().unwrap_or(""),
                &parts.headers,
                &body,
                SystemTime::now(),
            )
        {
            return (operation, Err(error));
        }
        let query = parts.uri.query().unwrap_or("");
        let result = match route {
            Route::Create { cluster } => self.create(&cluster, &body).await,
            Route::List { cluster } => self.list(&cluster, query),
            Route::Describe { cluster, name } => self.describe(&cluster, &name),
            Route::Delete { cluster, name } => self.delete(&cluster, &name).await,
            Route::Tag { arn } => self.tag(&arn, &body).await,
            Route::Untag { arn } => self.untag(&arn, query).await,
            Route::ListTags { arn } => self.list_tags(&arn),
            Route::Faults { method } => self.fault_injection(&method, &parts, &body),
            Route::BadEncoding(op) => Err(if op.ends_with("Resource") {
                ApiError::bad_request("The resource ARN is not valid percent-encoded UTF-8.")
            } else {
                ApiError::invalid_parameter("The request path is not valid percent-encoded UTF-8.")
            }),
            Route::Unknown => Err(ApiError::unknown_operation(&parts.method, parts.uri.path())),
        };
        (operation, result)
    }

    /// `/fault-injection`: read, set or clear the faults (404 unless `--fault-injection`).
    fn fault_injection(
        &self,
        method: &http::Method,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        let Some(mut state) = self.faults() else {
            return Err(ApiError::unknown_operation(method, parts.uri.path()));
        };
        match *method {
            http::Method::GET => {}
            http::Method::PUT => {
                let faults = super::faults::Faults::parse(body)?;
                tracing::warn!(rules = faults.rules.len(), window = ?faults.update_in_progress_for, "failure injection set");
                state.set(faults, std::time::Instant::now());
            }
            http::Method::DELETE => state.set(Default::default(), std::time::Instant::now()),
            _ => return Err(ApiError::unknown_operation(method, parts.uri.path())),
        }
        serde_json::to_value(&state.faults).map_err(|e| ApiError::server(e.to_string()))
    }

    /// The injected "update in progress" 409, while its window lasts.
    fn update_in_progress(&self, verb: &str, profile: &str) -> Result<(), ApiError> {
        match self.faults().and_then(|f| {
            f.update_in_progress(
                std::time::Instant::now(),
                verb,
                profile,
                &self.cluster().name,
            )
        }) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    pub(super) async fn create(&self, cluster: &str, body: &[u8]) -> Result<Value, ApiError> {
        self.check_cluster(cluster)?;
        let c = self.cluster();
        let body: CreateBody = parse_json(body, ApiError::invalid_parameter)?;
        let name = body.fargate_profile_name.unwrap_or_default();
        self.update_in_progress("create", &name)?;
        let on_profile = |e: ApiError| e.with_cluster(&c.name).with_profile(&name);
        profile::validate_name(&name).map_err(|v| on_profile(ApiError::invalid_parameter(v.0)))?;
        let role = body.pod_execution_role_arn.unwrap_or_default();
        profile::validate_role_arn(&role)
            .map_err(|v| on_profile(ApiError::invalid_parameter(v.0)))?;
        let selectors: Vec<Selector> = body
            .selectors
            .unwrap_or_default()
            .into_iter()
            .map(|s| Selector {
                namespace: s.namespace,
                labels: s.labels.unwrap_or_default(),
            })
            .collect();
        profile::validate_selectors(&selectors, &self.inner.limits)
            .map_err(|v| on_profile(ApiError::invalid_parameter(v.0)))?;
        let requested_subnets = body.subnets.filter(|s| !s.is_empty());
        let subnets = match &requested_subnets {
            None => c.private_subnets.clone(),
            Some(list) => {
                let mut out: Vec<String> = Vec::with_capacity(list.len());
                for subnet in list {
                    if c.public_subnets.contains(subnet) {
                        return Err(on_profile(ApiError::invalid_parameter(format!(
                            "Subnet {subnet} provided in Fargate Profile is not a private subnet"
                        ))));
                    }
                    if !c.private_subnets.contains(subnet) {
                        return Err(on_profile(ApiError::invalid_parameter(format!(
                            "Subnet {subnet} provided in Fargate Profile is not a subnet of cluster {}",
                            c.name
                        ))));
                    }
                    if !out.contains(subnet) {
                        out.push(subnet.clone());
                    }
                }
                out
            }
        };
        let tags = body.tags.unwrap_or_default();
        profile::validate_tags(&tags).map_err(|v| on_profile(ApiError::invalid_parameter(v.0)))?;
        let token = body.client_request_token.filter(|t| !t.is_empty());
        if token.as_ref().is_some_and(|t| t.len() > MAX_TOKEN_LEN) {
            return Err(on_profile(ApiError::invalid_parameter(format!(
                "clientRequestToken must be at most {MAX_TOKEN_LEN} characters."
            ))));
        }
        let digest = hex::encode(Sha256::digest(
            serde_json::to_vec(&DigestInput {
                name: &name,
                role: &role,
                subnets: &requested_subnets,
                selectors: &selectors,
                tags: &tags,
            })
            .unwrap_or_default(),
        ));

        let arn = self.profile_arn(&name, &uuid::Uuid::new_v4().to_string());
        // An injected rule for this profile always goes through the lifecycle timer.
        let injected = self
            .faults()
            .is_some_and(|f| f.faults.rule_for(&name).is_some());
        let activate_now = self.inner.create_delay.is_zero() && !injected;
        let new_profile = FargateProfile {
            fargate_profile_name: name.clone(),
            fargate_profile_arn: Some(arn.clone()),
            cluster_name: Some(c.name.clone()),
            created_at: Some(now_epoch_millis_secs()),
            pod_execution_role_arn: role,
            subnets,
            selectors,
            status: ProfileStatus::Creating,
            tags,
            health: None,
        };
        let limits = self.inner.limits;
        let request = rules::CreateRequest {
            profile: &new_profile,
            token: token.as_deref(),
            digest: &digest,
            activate_now,
        };
        let result = self
            .run(|state: &mut ProfileState| {
                rules::create(state, &request, &limits, &c.name, |p| self.arn_of(p))
            })
            .await?;
        match result {
            Ok(_) => {
                if !activate_now {
                    self.spawn_transition(Transition::Activate, name.clone(), arn.clone());
                }
                Ok(json!({ "fargateProfile": self.render(&new_profile) }))
            }
            Err(Refusal::Replay(original)) => {
                Ok(json!({ "fargateProfile": self.render(&original) }))
            }
            Err(Refusal::Error(error)) => Err(error),
            Err(Refusal::NoChange) => Err(ApiError::server("The create request changed nothing.")),
        }
    }

    pub(super) fn describe(&self, cluster: &str, name: &str) -> Result<Value, ApiError> {
        self.check_cluster(cluster)?;
        let state = self.inner.store.current();
        match state
            .fargate_profiles
            .iter()
            .find(|p| p.fargate_profile_name == name)
        {
            Some(profile) => Ok(json!({ "fargateProfile": self.render(profile) })),
            None => Err(self.profile_not_found(name)),
        }
    }

    pub(super) fn list(&self, cluster: &str, query: &str) -> Result<Value, ApiError> {
        self.check_cluster(cluster)?;
        let on_cluster = |e: ApiError| e.with_cluster(cluster);
        let mut max_results = MAX_RESULTS;
        let mut after: Option<String> = None;
        let mut seen_max = false;
        let mut seen_token = false;
        for (key, value) in query_pairs(query).map_err(on_cluster)? {
            match key.as_str() {
                "maxResults" if !seen_max => {
                    seen_max = true;
                    max_results = value
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_RESULTS).contains(n))
                        .ok_or_else(|| {
                            on_cluster(ApiError::invalid_parameter(format!(
                                "maxResults must be an integer from 1 to {MAX_RESULTS}, got '{value}'."
                            )))
                        })?;
                }
                "nextToken" if !seen_token => {
                    seen_token = true;
                    if !value.is_empty() {
                        after = Some(self.inner.page_tokens.open(&value).ok_or_else(|| {
                            on_cluster(ApiError::invalid_parameter(
                                "The nextToken is not valid: use a token returned by a previous ListFargateProfiles call.",
                            ))
                        })?);
                    }
                }
                _ => {}
            }
        }
        let state = self.inner.store.current();
        let mut names: Vec<&str> = state
            .fargate_profiles
            .iter()
            .map(|p| p.fargate_profile_name.as_str())
            .collect();
        names.sort_unstable();
        let start = match &after {
            Some(last) => names.partition_point(|n| *n <= last.as_str()),
            None => 0,
        };
        let end = (start + max_results).min(names.len());
        let page = &names[start..end];
        let mut out = json!({ "fargateProfileNames": page });
        if end < names.len()
            && let Some(last) = page.last()
        {
            out["nextToken"] = Value::String(self.inner.page_tokens.issue(last));
        }
        Ok(out)
    }

    pub(super) async fn delete(&self, cluster: &str, name: &str) -> Result<Value, ApiError> {
        self.check_cluster(cluster)?;
        self.update_in_progress("Delete", name)?;
        let c = self.cluster();
        let injected = self
            .faults()
            .is_some_and(|f| f.faults.rule_for(name).is_some());
        let remove_now = self.inner.delete_delay.is_zero() && !injected;
        let mut answer: Option<FargateProfile> = None;
        let result = self
            .run(|state: &mut ProfileState| {
                answer = Some(rules::delete(state, name, &c.name, remove_now, |p| {
                    self.arn_of(p)
                })?);
                Ok(())
            })
            .await?;
        match result {
            Ok(_) => {
                let profile =
                    answer.ok_or_else(|| ApiError::server("The delete changed nothing."))?;
                if !remove_now {
                    self.spawn_transition(
                        Transition::Remove,
                        name.to_owned(),
                        self.arn_of(&profile),
                    );
                }
                Ok(json!({ "fargateProfile": self.render(&profile) }))
            }
            Err(Refusal::Error(error)) => Err(error),
            Err(_) => Err(ApiError::server("The delete changed nothing.")),
        }
    }
}
