//! AdmissionReview decode and encode. Lean on purpose: only `request.uid`, `kind`, `operation`,
//! `namespace` and the pod fields the decision reads are decoded; the object stays raw until we
//! know it is a Pod.

use crate::decision::{self, Decision, Options, Outcome, Pod, Snapshot};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub const API_VERSION_V1: &str = "admission.k8s.io/v1";
pub const API_VERSION_V1BETA1: &str = "admission.k8s.io/v1beta1";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(borrow)]
    request: Option<RequestIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<'a> {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    kind: GroupVersionKind,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
}

#[derive(Default, Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    #[serde(default)]
    kind: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// Why a body is not a review we can answer. Each maps to a 4xx with a JSON body.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("request body is empty")]
    Empty,
    #[error("request body is not a JSON object")]
    NotAnObject,
    #[error("request body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "expected kind AdmissionReview with apiVersion admission.k8s.io/v1 or v1beta1, got kind '{kind}' apiVersion '{api_version}'"
    )]
    WrongKind { kind: String, api_version: String },
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("AdmissionReview request has no uid")]
    NoUid,
}

/// An answered review: the response body plus what the server logs and counts.
#[derive(Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    pub uid: String,
    pub namespace: String,
    pub pod_name: String,
    pub operation: String,
    /// `None` when the object could not be read as a pod (answered allowed, unpatched).
    pub decision: Result<Decision, String>,
}

/// Decode a review, decide, and encode the answer.
pub fn answer(body: &[u8], snapshot: &Snapshot, options: &Options) -> Result<Answer, ReviewError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ReviewError::Empty),
        // serde would read a JSON array as a struct in field order; a review is an object.
        Some(b'{') => {}
        Some(_) => return Err(ReviewError::NotAnObject),
    }
    let review: ReviewIn<'_> = serde_json::from_slice(body)?;
    if review.kind != "AdmissionReview"
        || (review.api_version != API_VERSION_V1 && review.api_version != API_VERSION_V1BETA1)
    {
        return Err(ReviewError::WrongKind {
            kind: review.kind,
            api_version: review.api_version,
        });
    }
    let request = review.request.ok_or(ReviewError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(ReviewError::NoUid);
    }
    let is_pod = request.kind.kind == "Pod" && request.kind.group.is_empty();
    let pod: Result<Pod, String> = match request.object {
        Some(raw) if is_pod && !raw.get().starts_with('{') => {
            Err("object is not a JSON object".to_string())
        }
        Some(raw) if is_pod => serde_json::from_str(raw.get())
            .map_err(|e| format!("object is not a readable Pod: {e}")),
        _ => Ok(Pod::default()),
    };
    let decision = pod.map(|pod| {
        let namespace = request
            .namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .or(pod.metadata.namespace.as_deref())
            .unwrap_or("default");
        let req = decision::Request {
            group: &request.kind.group,
            kind: &request.kind.kind,
            operation: &request.operation,
            namespace,
            pod: &pod,
        };
        (
            decision::decide(&req, snapshot, options),
            namespace.to_string(),
            pod.display_name().to_string(),
        )
    });
    let (decision, namespace, pod_name) = match decision {
        Ok((d, ns, name)) => (Ok(d), ns, name),
        Err(e) => (
            Err(e),
            request.namespace.clone().unwrap_or_default(),
            String::new(),
        ),
    };
    let body = encode(&review.api_version, &request.uid, decision.as_ref().ok());
    Ok(Answer {
        body,
        uid: request.uid,
        namespace,
        pod_name,
        operation: request.operation,
        decision,
    })
}

/// Always `allowed: true` (the webhook mutates, it never refuses a pod); `patchType` only with a patch.
fn encode(api_version: &str, uid: &str, decision: Option<&Decision>) -> Vec<u8> {
    let patch = decision.and_then(|d| match &d.outcome {
        Outcome::Mutated { patch, .. } if !patch.is_empty() => Some(
            base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(patch).expect("patch ops always serialize")),
        ),
        _ => None,
    });
    let review = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            uid,
            allowed: true,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: decision.map(|d| d.warnings.as_slice()).unwrap_or(&[]),
        },
    };
    serde_json::to_vec(&review).expect("review always serializes")
}

/// A Kubernetes-style `Status` body for a refused request.
pub fn error_body(code: u16, reason: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }))
    .expect("status always serializes")
}
