//! Transport: TLS, HTTP serving, and the two handlers that sit on it (webhook and ops). Handlers
//! only decode, ask [`crate::decision`] (through [`crate::admission`]) and encode.

pub mod http;
pub mod tls;

use crate::admission::{self, ReviewError};
use crate::decision::{NoMatch, Options, Outcome, SharedSnapshot};
use crate::metrics::Metrics;
use bytes::Bytes;
use http::RequestBody;
use http_body_util::Full;
use hyper::{Method, Request, Response};
use std::sync::Arc;
use std::time::Instant;

/// kube-apiserver sends objects up to ~3 MiB; anything over this is not a review.
pub const MAX_REVIEW_BYTES: usize = 8 * 1024 * 1024;
pub const MUTATE_PATH: &str = "/mutate";

pub struct Webhook {
    pub snapshot: SharedSnapshot,
    /// Whether the store has loaded the profiles: until then `snapshot` is empty, and an answer
    /// from it would admit every pod unmutated without anyone seeing it (README, "Failure modes").
    pub profiles_loaded: Arc<dyn Fn() -> bool + Send + Sync>,
    pub options: Options,
    pub metrics: Arc<Metrics>,
}

impl Webhook {
    pub fn handler(self: Arc<Self>) -> http::Handler {
        Arc::new(move |req| {
            let this = Arc::clone(&self);
            Box::pin(async move { this.handle(req).await })
        })
    }

    async fn handle(&self, req: Request<RequestBody>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        // Wrong paths and methods are HTTP noise (scanners, misdirected probes), not reviews.
        if req.uri().path() != MUTATE_PATH {
            return self.reject(404, "NotFound", "not_found", "only /mutate is served here");
        }
        if req.method() != Method::POST {
            return self.reject(405, "MethodNotAllowed", "method", "use POST");
        }
        let (response, outcome) = self.route(req).await;
        self.metrics
            .admission_duration
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        response
    }

    fn reject(
        &self,
        code: u16,
        k8s_reason: &str,
        reason: &str,
        message: &str,
    ) -> Response<Full<Bytes>> {
        self.metrics
            .http_rejected
            .with_label_values(&["webhook", reason])
            .inc();
        http::json(code, admission::error_body(code, k8s_reason, message))
    }

    /// The answer and the outcome label of the latency histogram.
    async fn route(&self, req: Request<RequestBody>) -> (Response<Full<Bytes>>, &'static str) {
        let (parts, body) = req.into_parts();
        let body = match http::read_body(&parts.headers, body, MAX_REVIEW_BYTES).await {
            Ok(body) => body,
            Err(http::BodyError::TooLarge) => return (self.too_large(), "error"),
            // The body is left unread, so hyper closes an HTTP/1.1 connection after this answer.
            Err(http::BodyError::TimedOut(error)) => {
                return (self.refuse(408, "Timeout", "body_timeout", &error), "error");
            }
            Err(http::BodyError::Busy(error)) => {
                return (
                    self.refuse(503, "ServiceUnavailable", "busy", &error),
                    "error",
                );
            }
            Err(http::BodyError::Read(error)) => {
                return (
                    self.refuse(
                        400,
                        "BadRequest",
                        "body",
                        &format!("reading the body failed: {error}"),
                    ),
                    "error",
                );
            }
        };
        if !(self.profiles_loaded)() {
            // A 503 is a failed call to the apiserver: it applies the failurePolicy and counts a
            // fail-open, where an answer from the empty snapshot would pass unseen. Only reached
            // before /readyz turns ready: a restarted process on the same pod IP, a direct URL.
            return (
                self.refuse(
                    503,
                    "ServiceUnavailable",
                    "not_loaded",
                    "the Fargate profiles are not loaded yet",
                ),
                "error",
            );
        }
        let snapshot = self.snapshot.load();
        match admission::answer(&body, &snapshot, &self.options) {
            Ok(answer) => {
                let span = tracing::debug_span!("review", uid = %answer.uid, namespace = %answer.namespace, pod = %answer.pod_name, operation = %answer.operation);
                let _enter = span.enter();
                let (outcome, reason, profile): (&str, &str, &str) = match &answer.decision {
                    Ok(d) => match &d.outcome {
                        Outcome::Mutated { profile, .. } => ("mutated", "", profile.as_str()),
                        Outcome::NotMatched(no) => {
                            if !matches!(no, NoMatch::NoProfile) {
                                tracing::info!(reason = no.as_str(), warnings = ?d.warnings, "pinned profile not applied");
                            }
                            ("not_matched", no.as_str(), "")
                        }
                        Outcome::Skipped(reason) => ("skipped", reason.as_str(), ""),
                    },
                    Err(error) => {
                        tracing::warn!(%error, "object is not a readable Pod; allowed unpatched");
                        ("error", "unreadable_pod", "")
                    }
                };
                if let Ok(d) = &answer.decision
                    && !d.warnings.is_empty()
                {
                    tracing::info!(warnings = ?d.warnings, "admission warnings");
                }
                tracing::debug!(outcome, reason, profile, "answered");
                self.metrics
                    .admission_requests
                    .with_label_values(&[outcome, reason, profile])
                    .inc();
                (http::json(200, answer.body), outcome)
            }
            Err(error) => {
                let reason = match &error {
                    ReviewError::Empty => "empty_body",
                    ReviewError::Json(_) | ReviewError::NotAnObject => "invalid_json",
                    ReviewError::WrongKind { .. } => "wrong_kind",
                    ReviewError::NoRequest => "no_request",
                    ReviewError::NoUid => "no_uid",
                };
                tracing::warn!(%error, "undecodable admission review");
                (
                    self.refuse(400, "BadRequest", reason, &error.to_string()),
                    "error",
                )
            }
        }
    }

    fn too_large(&self) -> Response<Full<Bytes>> {
        self.refuse(
            413,
            "RequestEntityTooLarge",
            "too_large",
            &format!("request body is larger than {MAX_REVIEW_BYTES} bytes"),
        )
    }

    /// An answer that is not an AdmissionReview (counted as `outcome="error"` with `reason`).
    fn refuse(
        &self,
        code: u16,
        k8s_reason: &str,
        reason: &str,
        message: &str,
    ) -> Response<Full<Bytes>> {
        self.metrics
            .admission_requests
            .with_label_values(&["error", reason, ""])
            .inc();
        http::json(code, admission::error_body(code, k8s_reason, message))
    }
}

/// What `/readyz` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Profiles or the certificate are not loaded yet.
    Loading,
    /// SIGTERM received: draining, so endpoints should stop sending.
    ShuttingDown,
}

/// The ops port: liveness is independent of everything; readiness asks `ready`.
pub fn ops_handler(
    metrics: Arc<Metrics>,
    ready: Arc<dyn Fn() -> Readiness + Send + Sync>,
) -> http::Handler {
    Arc::new(move |req: Request<RequestBody>| {
        let response = match req.uri().path() {
            "/healthz" | "/livez" => text(
                200,
                "text/plain; charset=utf-8",
                Bytes::from_static(b"ok\n"),
            ),
            "/readyz" => {
                let (status, body): (u16, &'static [u8]) = match ready() {
                    Readiness::Ready => (200, b"ready\n"),
                    Readiness::Loading => {
                        (503, b"not ready: profiles or certificate not loaded yet\n")
                    }
                    Readiness::ShuttingDown => (503, b"not ready: shutting down\n"),
                };
                text(
                    status,
                    "text/plain; charset=utf-8",
                    Bytes::from_static(body),
                )
            }
            "/metrics" => text(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(metrics.render()),
            ),
            _ => text(
                404,
                "text/plain; charset=utf-8",
                Bytes::from_static(b"not found\n"),
            ),
        };
        Box::pin(async move { response })
    })
}

fn text(status: u16, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .expect("static headers are valid")
}
