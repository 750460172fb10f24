//! The EKS Fargate-profile REST API (CreateFargateProfile, Describe, List, Delete, and
//! TagResource / UntagResource / ListTagsForResource on profile ARNs), wire-compatible with the
//! AWS CLI and boto3 (rest-json, API version 2017-11-01).
//!
//! The API writes through a [`ProfileStore`]; every rule that depends on other profiles (name
//! uniqueness, the quota, one profile CREATING or DELETING at a time, token reuse) is checked
//! inside the store's change closure, so concurrent requests cannot break them.
//!
//! Decisions where EKS is silent:
//! - `createdAt` is stored and sent as epoch seconds rounded to the millisecond.
//! - A zero `--create-delay` commits the profile ACTIVE in the same write (the answer still says
//!   CREATING, as EKS always does); a zero `--delete-delay` removes it in the same write.
//! - A `clientRequestToken` is kept as long as its profile exists and dropped when the profile is
//!   removed after deletion (the token map stays bounded by the profile count).
//! - A hand-written profile without ARN gets a stable one derived from its name.
//! - `nextToken` is the last name returned, HMAC-authenticated; it survives restarts.

mod change;
pub mod error;
pub mod faults;
mod identity;
mod lifecycle;
mod operations;
pub mod paging;
mod route;
mod rules;
pub mod sigv4;
mod tags;
mod wire;

pub use error::ApiError;

use crate::claim::Claim;
use crate::metrics::Metrics;
use crate::profile::Limits;
use crate::store::ProfileStore;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// The names of the profiles whose pods reach the webhook, as the claim holder last wrote them.
pub type Covered = tokio::sync::watch::Receiver<Arc<std::collections::BTreeSet<String>>>;

/// How often the claim holder gives CREATING and DELETING profiles without a timer one (a profile
/// created through another replica waits at most this long more than its delay). A look at the
/// in-memory state: cheap.
pub const LIFECYCLE_SWEEP: Duration = Duration::from_millis(500);

pub const DEFAULT_PRIVATE_SUBNETS: &str = "subnet-0420a37ee456daf3f,subnet-09a8afb8db4f02d21";

/// What the API is configured with (the flags of `fargate-webhook serve`, see `cli::ApiArgs`).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The one cluster this API serves; other names answer 404 ResourceNotFoundException.
    pub cluster_name: String,
    /// Region used in ARNs and required in SigV4 credential scopes.
    pub region: String,
    /// 12-digit account id used in ARNs.
    pub account_id: String,
    /// The cluster's private subnets: profiles may use these; the default when a profile names none.
    pub private_subnets: Vec<String>,
    /// The cluster's public subnets: refused in profiles.
    pub public_subnets: Vec<String>,
    /// Time a new profile stays CREATING before it turns ACTIVE.
    pub create_delay: Duration,
    /// Time a deleted profile stays DELETING before it disappears.
    pub delete_delay: Duration,
    /// The longest a request may take before it is answered `503 ServiceUnavailableException`.
    pub request_deadline: Duration,
    /// Quota: Fargate profiles per cluster.
    pub max_profiles: usize,
    /// Quota: selectors per profile.
    pub max_selectors: usize,
    /// Quota: label pairs per selector.
    pub max_labels: usize,
    /// Verify SigV4 signatures with the key pairs in this file (`ACCESS_KEY_ID SECRET` per line).
    pub sigv4_credentials: Option<PathBuf>,
    /// Verify SigV4 signatures with these key pairs (`ACCESS_KEY_ID:SECRET`).
    pub sigv4_keys: Vec<String>,
    /// Serve `/fault-injection` (docs/eks-api.md "Failure injection").
    pub fault_injection: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            cluster_name: "fargate".into(),
            region: "us-west-2".into(),
            account_id: "012345678910".into(),
            private_subnets: DEFAULT_PRIVATE_SUBNETS
                .split(',')
                .map(str::to_owned)
                .collect(),
            public_subnets: Vec::new(),
            create_delay: Duration::from_secs(2),
            delete_delay: Duration::from_secs(2),
            request_deadline: Duration::from_secs(10),
            max_profiles: 10,
            max_selectors: 5,
            max_labels: 5,
            sigv4_credentials: None,
            sigv4_keys: Vec::new(),
            fault_injection: false,
        }
    }
}

impl ApiConfig {
    /// The quotas, also to be given to the store so that file loads apply the same selector limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_profiles: self.max_profiles,
            max_selectors: self.max_selectors,
            max_labels: self.max_labels,
        }
    }
}

/// The cluster this API serves.
#[derive(Clone, Debug)]
pub(crate) struct Cluster {
    pub name: String,
    pub region: String,
    pub account_id: String,
    pub private_subnets: Vec<String>,
    pub public_subnets: Vec<String>,
}

impl Cluster {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:eks:{}:{}:cluster/{}",
            self.region, self.account_id, self.name
        )
    }
}

pub(crate) struct Inner {
    pub cluster: Cluster,
    pub limits: Limits,
    pub create_delay: Duration,
    pub delete_delay: Duration,
    pub request_deadline: Duration,
    pub store: Arc<dyn ProfileStore>,
    pub metrics: Arc<Metrics>,
    pub verifier: Option<sigv4::Verifier>,
    pub page_tokens: paging::PageTokens,
    /// Lifecycle timers running in this process, by profile ARN: a profile gets one timer, however
    /// often the sweep sees it CREATING or DELETING.
    pub timers: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The claim under which lifecycle steps are written (set by [`Api::resume_lifecycle`]); until
    /// then this process is taken for the only writer.
    pub claim: std::sync::OnceLock<Claim>,
    /// The profiles whose pods reach the webhook (set by [`Api::gate_activation`]): a CREATING
    /// profile turns ACTIVE only once it is among them.
    pub activation: std::sync::OnceLock<Covered>,
    /// Failure injection, when `--fault-injection` is on.
    pub faults: Option<std::sync::Mutex<faults::State>>,
}

/// The API: cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Api {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("cluster", &self.inner.cluster)
            .field("limits", &self.inner.limits)
            .field("sigv4", &self.inner.verifier)
            .finish()
    }
}

impl Api {
    pub fn new(
        args: &ApiConfig,
        store: Arc<dyn ProfileStore>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        // Every operation's series exist from the start (a rate over a missing series is no rate).
        for operation in route::OPERATIONS {
            metrics.api_requests.with_label_values(&[operation, "ok"]);
            metrics.api_duration.with_label_values(&[operation]);
        }
        let clean = |list: &[String]| -> Vec<String> {
            let mut out: Vec<String> = Vec::new();
            for s in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_owned());
                }
            }
            out
        };
        let cluster = Cluster {
            name: args.cluster_name.clone(),
            region: args.region.trim().to_owned(),
            account_id: args.account_id.trim().to_owned(),
            private_subnets: clean(&args.private_subnets),
            public_subnets: clean(&args.public_subnets),
        };
        crate::profile::validate_name(&cluster.name)
            .map_err(|e| anyhow::anyhow!("--cluster-name '{}': {e}", cluster.name))?;
        anyhow::ensure!(
            cluster.account_id.len() == 12
                && cluster.account_id.bytes().all(|b| b.is_ascii_digit()),
            "--account-id must be 12 digits, got '{}'",
            cluster.account_id
        );
        anyhow::ensure!(
            !cluster.region.is_empty()
                && cluster
                    .region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "--region must look like us-west-2, got '{}'",
            cluster.region
        );
        if let Some(both) = cluster
            .private_subnets
            .iter()
            .find(|s| cluster.public_subnets.contains(s))
        {
            anyhow::bail!("subnet {both} is given as both private and public");
        }
        if let Some(odd) = cluster
            .private_subnets
            .iter()
            .chain(&cluster.public_subnets)
            .find(|s| !crate::profile::is_subnet_id(s))
        {
            anyhow::bail!(
                "subnet '{odd}' is not a subnet ID (subnet- and lowercase letters or digits, as the FargateProfile CRD requires)"
            );
        }
        anyhow::ensure!(
            args.max_profiles >= 1 && args.max_selectors >= 1 && args.max_labels >= 1,
            "--max-profiles, --max-selectors and --max-labels must be at least 1"
        );
        let mut verifier = sigv4::Verifier::new(cluster.region.clone());
        if let Some(path) = &args.sigv4_credentials {
            verifier.add_key_file(path)?;
        }
        for spec in args.sigv4_keys.iter().filter(|s| !s.trim().is_empty()) {
            verifier.add_key_spec(spec)?;
        }
        let configured = args.sigv4_credentials.is_some()
            || args.sigv4_keys.iter().any(|s| !s.trim().is_empty());
        anyhow::ensure!(
            !configured || !verifier.is_empty(),
            "SigV4 verification was asked for, but no key pair was found"
        );
        let page_tokens = paging::PageTokens::new(&cluster.arn());
        Ok(Api {
            inner: Arc::new(Inner {
                cluster,
                limits: args.limits(),
                create_delay: args.create_delay,
                delete_delay: args.delete_delay,
                request_deadline: args.request_deadline,
                store,
                metrics,
                verifier: (!verifier.is_empty()).then_some(verifier),
                page_tokens,
                timers: Default::default(),
                claim: std::sync::OnceLock::new(),
                activation: std::sync::OnceLock::new(),
                faults: args.fault_injection.then(Default::default),
            }),
        })
    }

    /// Run the lifecycle under `claim`: while it is held, a CREATING profile turns ACTIVE after
    /// `--create-delay`, a DELETING one disappears after `--delete-delay`, whichever replica took the
    /// request or was holding the claim before; a replica without the claim writes no step. Call
    /// inside the Tokio runtime, once the store is loaded.
    /// Turn a CREATING profile ACTIVE only once `covered` holds its name: the generated
    /// matchConditions let its pods reach the webhook (README, "Which pods reach the webhook").
    pub fn gate_activation(&self, covered: Covered) {
        let _ = self.inner.activation.set(covered);
    }

    pub fn resume_lifecycle(&self, claim: Claim) {
        let _ = self.inner.claim.set(claim.clone());
        // While the claim is held, sweep: a CREATING profile whose timer was lost (the replica that
        // created it died, or is not the holder) would otherwise block every later create forever.
        let api = self.clone();
        tokio::spawn(async move {
            claim
                .while_held(&tokio_util::sync::CancellationToken::new(), |lost| {
                    let api = api.clone();
                    async move {
                        let mut sweep = tokio::time::interval(LIFECYCLE_SWEEP);
                        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        loop {
                            tokio::select! {
                                _ = lost.cancelled() => break,
                                _ = sweep.tick() => api.resume_transitions(),
                            }
                        }
                    }
                })
                .await
        });
    }

    /// The API as a request handler for [`crate::server::http::serve`] (which owns accepting,
    /// TLS, timeouts and draining for every port of the process).
    pub fn handler(&self) -> crate::server::http::Handler {
        let api = self.clone();
        std::sync::Arc::new(move |req| {
            let api = api.clone();
            Box::pin(async move { api.handle(req).await })
        })
    }

    /// Answer one HTTP request. Collects the body (at most [`MAX_BODY`] bytes, else 413); never
    /// panics on input: an internal failure answers 500 ServerException. Needs a multi-threaded
    /// Tokio runtime (the file store blocks in place while it writes).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request_id = uuid::Uuid::new_v4().to_string();
        let started = std::time::Instant::now();
        let (parts, body) = req.into_parts();
        let body = match crate::server::http::read_body(&parts.headers, body, MAX_BODY).await {
            Ok(body) => Ok(body),
            Err(crate::server::http::BodyError::TooLarge) => {
                Err(ApiError::payload_too_large(MAX_BODY))
            }
            Err(crate::server::http::BodyError::TimedOut(e)) => Err(ApiError::new(
                http::StatusCode::REQUEST_TIMEOUT,
                "RequestTimeoutException",
                e,
            )),
            Err(crate::server::http::BodyError::Busy(e)) => Err(ApiError::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                e,
            )),
            Err(crate::server::http::BodyError::Read(e)) => Err(ApiError::client(format!(
                "The request body could not be read: {e}"
            ))),
        };
        let body = match body {
            Ok(body) => body,
            Err(error) => {
                let operation = route::Route::of(&parts.method, parts.uri.path()).operation();
                return self.finish(operation, Err(error), &request_id, started);
            }
        };
        // Run the operation in its own task: a panic anywhere below becomes a 500, not a dropped
        // connection.
        let api = self.clone();
        let uri_path = parts.uri.path().to_owned();
        let method = parts.method.clone();
        let operation = route::Route::of(&method, &uri_path).operation();
        let task = tokio::spawn(async move { api.execute(parts, body).await });
        // [D] A deadline on every request (README, "Reliability"): when the apiserver or etcd stalls,
        // the client gets a retryable answer instead of waiting as long as the stall. The operation
        // goes on in its task: a write may still land, and a retry with the same clientRequestToken
        // then answers it.
        let (operation, result) = match tokio::time::timeout(self.inner.request_deadline, task)
            .await
        {
            Err(_) => (
                operation,
                Err(ApiError::new(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableException",
                    format!(
                        "The request did not complete within {} s: the profile store is not answering. It may still take effect; retry (with the same clientRequestToken for a create).",
                        self.inner.request_deadline.as_secs_f64()
                    ),
                )),
            ),
            Ok(Ok(done)) => done,
            Ok(Err(join_error)) => {
                tracing::error!(%join_error, "EKS API operation failed");
                (
                    operation,
                    Err(ApiError::server(
                        "An internal error occurred while processing the request.",
                    )),
                )
            }
        };
        self.finish(operation, result, &request_id, started)
    }

    fn finish(
        &self,
        operation: &'static str,
        result: Result<serde_json::Value, ApiError>,
        request_id: &str,
        started: std::time::Instant,
    ) -> Response<Full<Bytes>> {
        let (status, code, body) = match result {
            Ok(value) => (
                StatusCode::OK,
                None,
                serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec()),
            ),
            Err(error) => {
                if error.status.is_server_error() {
                    tracing::warn!(operation, code = error.code, message = %error.message, request_id, "EKS API request failed");
                } else {
                    tracing::debug!(operation, code = error.code, message = %error.message, request_id, "EKS API request refused");
                }
                (error.status, Some(error.code), error.body())
            }
        };
        self.inner
            .metrics
            .api_requests
            .with_label_values(&[operation, code.unwrap_or("ok")])
            .inc();
        self.inner
            .metrics
            .api_duration
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert("x-amzn-RequestId", value);
        }
        if let Some(code) = code {
            headers.insert("x-amzn-ErrorType", HeaderValue::from_static(code));
        }
        response
    }
}

impl Api {
    /// The failure-injection state, when on.
    pub(crate) fn faults(&self) -> Option<std::sync::MutexGuard<'_, faults::State>> {
        self.inner
            .faults
            .as_ref()
            .map(|f| f.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
