//! Routing, the seven operations and the lifecycle transitions.

use super::error::ApiError;
use super::{Api, Cluster};
use crate::profile::{
    self, FargateProfile, Health, ProfileState, ProfileStatus, Selector, TokenRecord,
};
use crate::store::{Step, UpdateError, Updated, Violation};
use bytes::Bytes;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Largest page of ListFargateProfiles (and the default).
pub const MAX_RESULTS: usize = 100;
/// Longest accepted `clientRequestToken`.
pub const MAX_TOKEN_LEN: usize = 256;

/// One operation, with its decoded path parameters.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Create {
        cluster: String,
    },
    List {
        cluster: String,
    },
    Describe {
        cluster: String,
        name: String,
    },
    Delete {
        cluster: String,
        name: String,
    },
    Tag {
        arn: String,
    },
    Untag {
        arn: String,
    },
    ListTags {
        arn: String,
    },
    Unknown,
    /// A path segment that is not valid percent-encoded UTF-8.
    BadEncoding(&'static str),
}

fn decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

impl Route {
    /// Route on the raw path: split on `/` first, then decode each segment (an encoded `%2F` in a
    /// name stays inside its segment).
    pub fn of(method: &Method, path: &str) -> Route {
        if let Some(arn) = path.strip_prefix("/tags/").filter(|a| !a.is_empty()) {
            let op = match *method {
                Method::POST => "TagResource",
                Method::DELETE => "UntagResource",
                Method::GET => "ListTagsForResource",
                _ => return Route::Unknown,
            };
            let Some(arn) = decode(arn) else {
                return Route::BadEncoding(op);
            };
            return match op {
                "TagResource" => Route::Tag { arn },
                "UntagResource" => Route::Untag { arn },
                _ => Route::ListTags { arn },
            };
        }
        let segments: Vec<&str> = match path.strip_prefix('/') {
            Some(rest) => rest.split('/').collect(),
            None => return Route::Unknown,
        };
        match (method, segments.as_slice()) {
            (&Method::POST | &Method::GET, ["clusters", cluster, "fargate-profiles"])
                if !cluster.is_empty() =>
            {
                let create = *method == Method::POST;
                let op = if create {
                    "CreateFargateProfile"
                } else {
                    "ListFargateProfiles"
                };
                match decode(cluster) {
                    Some(cluster) if create => Route::Create { cluster },
                    Some(cluster) => Route::List { cluster },
                    None => Route::BadEncoding(op),
                }
            }
            (&Method::GET | &Method::DELETE, ["clusters", cluster, "fargate-profiles", name])
                if !cluster.is_empty() && !name.is_empty() =>
            {
                let describe = *method == Method::GET;
                let op = if describe {
                    "DescribeFargateProfile"
                } else {
                    "DeleteFargateProfile"
                };
                match (decode(cluster), decode(name)) {
                    (Some(cluster), Some(name)) if describe => Route::Describe { cluster, name },
                    (Some(cluster), Some(name)) => Route::Delete { cluster, name },
                    _ => Route::BadEncoding(op),
                }
            }
            _ => Route::Unknown,
        }
    }

    /// The operation name, also the metrics label.
    pub fn operation(&self) -> &'static str {
        match self {
            Route::Create { .. } => "CreateFargateProfile",
            Route::List { .. } => "ListFargateProfiles",
            Route::Describe { .. } => "DescribeFargateProfile",
            Route::Delete { .. } => "DeleteFargateProfile",
            Route::Tag { .. } => "TagResource",
            Route::Untag { .. } => "UntagResource",
            Route::ListTags { .. } => "ListTagsForResource",
            Route::Unknown => "Unknown",
            Route::BadEncoding(op) => op,
        }
    }
}

/// Why a change closure refused to change the state.
#[derive(Debug)]
enum Refusal {
    Error(ApiError),
    /// The token was already used for this very request: answer with this profile.
    Replay(Box<FargateProfile>),
    /// Nothing to do (a transition whose profile is gone or changed).
    NoChange,
}

fn refuse(error: ApiError) -> Refusal {
    Refusal::Error(error)
}

/// Map a store failure to EKS: a broken store rule to the parameter or in-use error it is, a
/// store that has not loaded its state to the EKS "cluster not ACTIVE" client error (no retry
/// storm), storage trouble to 500.
fn store_error(error: UpdateError, cluster: &str) -> ApiError {
    match error {
        UpdateError::Violation(violation) => match violation {
            Violation::DuplicateName | Violation::NameStillDeleting => {
                ApiError::resource_in_use(violation.to_string())
            }
            Violation::Invalid(_) | Violation::Immutable(_) => {
                ApiError::invalid_parameter(violation.to_string())
            }
        },
        UpdateError::NotLoaded(reason) => {
            tracing::warn!(%reason, "write refused: the profile store has not loaded its state");
            ApiError::invalid_request(format!("Cluster '{cluster}' is not in ACTIVE status"))
        }
        error @ UpdateError::Storage { .. } => {
            tracing::error!(error = %crate::store::report(&error), "profile store write failed");
            ApiError::server("The Fargate profile could not be stored; retry the request.")
        }
    }
}

/// The Create request body. Unknown keys are ignored, as AWS services do.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    fargate_profile_name: Option<String>,
    pod_execution_role_arn: Option<String>,
    subnets: Option<Vec<String>>,
    selectors: Option<Vec<SelectorBody>>,
    client_request_token: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct SelectorBody {
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct TagBody {
    tags: Option<BTreeMap<String, String>>,
}

/// What a token's digest covers: the request's meaningful content.
#[derive(Serialize)]
struct DigestInput<'a> {
    name: &'a str,
    role: &'a str,
    subnets: &'a Option<Vec<String>>,
    selectors: &'a [Selector],
    tags: &'a BTreeMap<String, String>,
}

/// The FargateProfile object as sent on the wire: every member present, `tags` `{}` when none.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProfileOut<'a> {
    fargate_profile_name: &'a str,
    fargate_profile_arn: String,
    cluster_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<f64>,
    pod_execution_role_arn: &'a str,
    subnets: &'a [String],
    selectors: Vec<SelectorOut<'a>>,
    status: ProfileStatus,
    tags: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<&'a Health>,
}

#[derive(Serialize)]
struct SelectorOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    labels: &'a BTreeMap<String, String>,
}

fn now_epoch_millis_secs() -> f64 {
    jiff::Timestamp::now().as_millisecond() as f64 / 1000.0
}

fn is_busy(status: ProfileStatus) -> bool {
    matches!(status, ProfileStatus::Creating | ProfileStatus::Deleting)
}

fn parse_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    bad: fn(String) -> ApiError,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| bad(format!("The request body is not valid: {e}")))
}

/// Query parameters, decoded, in order.
fn query_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
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
    fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    fn check_cluster(&self, cluster: &str) -> Result<(), ApiError> {
        if cluster == self.cluster().name {
            Ok(())
        } else {
            Err(
                ApiError::resource_not_found(format!("No cluster found for name: {cluster}."))
                    .with_cluster(cluster),
            )
        }
    }

    /// A stable ARN for a profile that has none (hand-written): the uuid part derives from the name.
    fn derived_arn(&self, name: &str) -> String {
        let digest = Sha256::digest(format!("{}/{name}", self.cluster().arn()).as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        self.profile_arn(name, &uuid::Uuid::from_bytes(bytes).to_string())
    }

    fn profile_arn(&self, name: &str, suffix: &str) -> String {
        let c = self.cluster();
        format!(
            "arn:aws:eks:{}:{}:fargateprofile/{}/{name}/{suffix}",
            c.region, c.account_id, c.name
        )
    }

    fn arn_of(&self, profile: &FargateProfile) -> String {
        profile
            .fargate_profile_arn
            .clone()
            .unwrap_or_else(|| self.derived_arn(&profile.fargate_profile_name))
    }

    fn render(&self, profile: &FargateProfile) -> Value {
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
            Route::BadEncoding(op) => Err(if op.ends_with("Resource") {
                ApiError::bad_request("The resource ARN is not valid percent-encoded UTF-8.")
            } else {
                ApiError::invalid_parameter("The request path is not valid percent-encoded UTF-8.")
            }),
            Route::Unknown => Err(ApiError::unknown_operation(&parts.method, parts.uri.path())),
        };
        (operation, result)
    }

    async fn create(&self, cluster: &str, body: &[u8]) -> Result<Value, ApiError> {
        self.check_cluster(cluster)?;
        let c = self.cluster();
        let body: CreateBody = parse_json(body, ApiError::invalid_parameter)?;
        let name = body.fargate_profile_name.unwrap_or_default();
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
        let activate_now = self.inner.create_delay.is_zero();
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
        let result = self
            .run(|state: &mut ProfileState| {
                if let Some(token) = &token
                    && let Some(record) = state.client_request_tokens.get(token)
                {
                    let original = state.fargate_profiles.iter().find(|p| {
                        p.fargate_profile_name == record.fargate_profile_name
                            && self.arn_of(p) == record.fargate_profile_arn
                    });
                    // A record whose profile is gone is stale: the token is free again.
                    if let Some(original) = original {
                        if record.request_digest == digest {
                            return Err(Refusal::Replay(Box::new(original.clone())));
                        }
                        return Err(refuse(on_profile(ApiError::invalid_parameter(format!(
                            "The client request token {token} was already used with a different request."
                        )))));
                    }
                }
                if state
                    .fargate_profiles
                    .iter()
                    .any(|p| p.fargate_profile_name == name)
                {
                    return Err(refuse(on_profile(ApiError::resource_in_use(
                        "A Fargate Profile already exists with this name in this cluster.",
                    ))));
                }
                if state.fargate_profiles.len() >= limits.max_profiles {
                    return Err(refuse(on_profile(ApiError::limit_exceeded(
                        "Fargate Profile limit exceeded for cluster.",
                    ))));
                }
                if let Some(busy) = state.fargate_profiles.iter().find(|p| is_busy(p.status)) {
                    return Err(refuse(on_profile(ApiError::resource_in_use(format!(
                        "Cannot create Fargate Profile {name} because cluster {} currently has Fargate profile {} in status {}",
                        c.name, busy.fargate_profile_name, busy.status
                    )))));
                }
                let mut stored = new_profile.clone();
                if activate_now {
                    stored.status = ProfileStatus::Active;
                }
                state.fargate_profiles.push(stored);
                if let Some(token) = &token {
                    state.client_request_tokens.insert(
                        token.clone(),
                        TokenRecord {
                            fargate_profile_name: name.clone(),
                            fargate_profile_arn: arn.clone(),
                            request_digest: digest.clone(),
                        },
                    );
                }
                Ok(())
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

    fn describe(&self, cluster: &str, name: &str) -> Result<Value, ApiError> {
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

    fn profile_not_found(&self, name: &str) -> ApiError {
        ApiError::resource_not_found(format!("No Fargate Profile found with name: {name}."))
            .with_cluster(&self.cluster().name)
            .with_profile(name)
    }

    fn list(&self, cluster: &str, query: &str) -> Result<Value, ApiError> {
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

    async fn delete(&self, cluster: &str, name: &str) -> Result<Value, ApiError> {
        self.check_cluster(cluster)?;
        let c = self.cluster();
        let remove_now = self.inner.delete_delay.is_zero();
        let mut answer: Option<FargateProfile> = None;
        let result = self
            .run(|state: &mut ProfileState| {
                let Some(index) = state
                    .fargate_profiles
                    .iter()
                    .position(|p| p.fargate_profile_name == name)
                else {
                    return Err(refuse(self.profile_not_found(name)));
                };
                if let Some(busy) = state.fargate_profiles.iter().find(|p| is_busy(p.status)) {
                    return Err(refuse(
                        ApiError::resource_in_use(format!(
                            "Cannot Delete Fargate Profile {name} because cluster {} currently has Fargate profile {} in status {}",
                            c.name, busy.fargate_profile_name, busy.status
                        ))
                        .with_cluster(&c.name)
                        .with_profile(name),
                    ));
                }
                let mut profile = state.fargate_profiles[index].clone();
                profile.status = ProfileStatus::Deleting;
                if remove_now {
                    let arn = self.arn_of(&profile);
                    state.fargate_profiles.remove(index);
                    drop_tokens(state, name, &arn);
                } else {
                    state.fargate_profiles[index].status = ProfileStatus::Deleting;
                }
                answer = Some(profile);
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

    /// The index of the profile an ARN names, or 400/404 as the tag operations answer.
    fn find_by_arn(&self, state: &ProfileState, arn: &str) -> Result<usize, ApiError> {
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

    fn list_tags(&self, arn: &str) -> Result<Value, ApiError> {
        let state = self.inner.store.current();
        let index = self.find_by_arn(&state, arn)?;
        Ok(json!({ "tags": state.fargate_profiles[index].tags }))
    }

    async fn tag(&self, arn: &str, body: &[u8]) -> Result<Value, ApiError> {
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

    async fn untag(&self, arn: &str, query: &str) -> Result<Value, ApiError> {
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

    fn tag_result(
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

    /// Run a change through the store. A refusal the change returns aborts the write and comes
    /// back as a value; a store failure comes back as the EKS error it maps to.
    async fn run<F>(
        &self,
        mut change: F,
    ) -> Result<Result<std::sync::Arc<ProfileState>, Refusal>, ApiError>
    where
        F: FnMut(&mut ProfileState) -> Result<(), Refusal> + Send,
    {
        let mut refusal = None;
        let outcome = self
            .inner
            .store
            .update(Box::new(|state: &mut ProfileState| match change(state) {
                Ok(()) => {
                    refusal = None;
                    Step::Commit
                }
                Err(why) => {
                    refusal = Some(why);
                    Step::Abort
                }
            }))
            .await;
        match outcome {
            Ok(Updated::Committed(state)) => Ok(Ok(state)),
            Ok(Updated::Aborted) => Ok(Err(refusal.unwrap_or(Refusal::NoChange))),
            Err(error) => Err(store_error(error, &self.inner.cluster.name)),
        }
    }

    /// Start the timers for the profiles found CREATING or DELETING.
    pub(crate) fn resume_transitions(&self) {
        let state = self.inner.store.current();
        // Only profiles the API wrote (they carry `createdAt`) follow its lifecycle: a hand-written
        // entry keeps the status written in it (spec §6).
        for profile in state
            .fargate_profiles
            .iter()
            .filter(|p| p.created_at.is_some())
        {
            let transition = match profile.status {
                ProfileStatus::Creating => Transition::Activate,
                ProfileStatus::Deleting => Transition::Remove,
                _ => continue,
            };
            self.spawn_transition(
                transition,
                profile.fargate_profile_name.clone(),
                self.arn_of(profile),
            );
        }
    }

    /// After the delay, CREATING → ACTIVE or DELETING → removed, if the profile is still the same
    /// one in the same status. Storage failures are retried (a profile stuck CREATING would block
    /// every later create).
    fn spawn_transition(&self, transition: Transition, name: String, arn: String) {
        let timer = format!("{arn} {transition:?}");
        if !self
            .inner
            .timers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(timer.clone())
        {
            return; // this profile's step is already scheduled here
        }
        tracing::debug!(profile = %name, ?transition, "lifecycle step scheduled");
        let api = self.clone();
        let delay = match transition {
            Transition::Activate => self.inner.create_delay,
            Transition::Remove => self.inner.delete_delay,
        };
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut backoff = Duration::from_millis(100);
            loop {
                let result =
                    api.inner
                        .store
                        .update(Box::new(|state: &mut ProfileState| -> Step {
                            let Some(index) = state.fargate_profiles.iter().position(|p| {
                                p.fargate_profile_name == name && api.arn_of(p) == arn
                            }) else {
                                return Step::Abort; // gone, or replaced by another profile
                            };
                            match (transition, state.fargate_profiles[index].status) {
                                (Transition::Activate, ProfileStatus::Creating) => {
                                    state.fargate_profiles[index].status = ProfileStatus::Active;
                                }
                                (Transition::Remove, ProfileStatus::Deleting) => {
                                    state.fargate_profiles.remove(index);
                                    drop_tokens(state, &name, &arn);
                                }
                                _ => return Step::Abort, // another writer moved it on
                            }
                            Step::Commit
                        }))
                        .await;
                match result {
                    Ok(Updated::Committed(_)) => {
                        tracing::info!(profile = %name, ?transition, "profile lifecycle step done");
                        break;
                    }
                    Ok(Updated::Aborted) => break,
                    Err(UpdateError::Violation(violation)) => {
                        tracing::error!(profile = %name, ?transition, %violation, "profile lifecycle step refused by the store");
                        break;
                    }
                    Err(error) => {
                        tracing::error!(profile = %name, ?transition, error = %crate::store::report(&error), "profile lifecycle step failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            api.inner
                .timers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&timer);
        });
    }
}

#[derive(Clone, Copy, Debug)]
enum Transition {
    Activate,
    Remove,
}

/// Forget the tokens that created a removed profile.
fn drop_tokens(state: &mut ProfileState, name: &str, arn: &str) {
    state
        .client_request_tokens
        .retain(|_, r| !(r.fargate_profile_name == name && r.fargate_profile_arn == arn));
}

#[cfg(test)]
mod tests {

    #[test]
    fn store_errors_map_to_eks_codes() {
        let cases = [
            (
                UpdateError::Violation(Violation::DuplicateName),
                "ResourceInUseException",
                "A Fargate Profile already exists with this name in this cluster.",
            ),
            (
                UpdateError::Violation(Violation::NameStillDeleting),
                "ResourceInUseException",
                "A Fargate Profile with this name is still being deleted; try again later.",
            ),
            (
                UpdateError::Violation(Violation::Invalid("bad name".into())),
                "InvalidParameterException",
                "bad name",
            ),
            (
                UpdateError::Violation(Violation::Immutable("web".into())),
                "InvalidParameterException",
                "Fargate profile web is immutable except for its tags.",
            ),
            (
                UpdateError::NotLoaded("corrupt".into()),
                "InvalidRequestException",
                "Cluster 'fargate' is not in ACTIVE status",
            ),
            (
                UpdateError::storage("writing x", std::io::Error::other("disk full")),
                "ServerException",
                "The Fargate profile could not be stored; retry the request.",
            ),
        ];
        for (error, code, message) in cases {
            let api = store_error(error, "fargate");
            assert_eq!((api.code, api.message.as_str()), (code, message));
        }
    }

    use super::*;

    #[test]
    fn routes() {
        let r = |m: Method, p: &str| Route::of(&m, p);
        assert_eq!(
            r(Method::POST, "/clusters/fargate/fargate-profiles"),
            Route::Create {
                cluster: "fargate".into()
            }
        );
        assert_eq!(
            r(Method::GET, "/clusters/a%20b/fargate-profiles/x%2Fy"),
            Route::Describe {
                cluster: "a b".into(),
                name: "x/y".into()
            }
        );
        assert_eq!(
            r(Method::GET, "/tags/arn%3Aaws%3Aeks%3Ax"),
            Route::ListTags {
                arn: "arn:aws:eks:x".into()
            }
        );
        assert_eq!(
            r(Method::PUT, "/clusters/f/fargate-profiles"),
            Route::Unknown
        );
        assert_eq!(
            r(Method::GET, "/clusters/f/fargate-profiles/"),
            Route::Unknown
        );
        assert_eq!(r(Method::GET, "/"), Route::Unknown);
        assert_eq!(
            r(Method::GET, "/clusters/f/fargate-profiles/%FF"),
            Route::BadEncoding("DescribeFargateProfile")
        );
    }
}
