//! AdmissionReview decode and encode. Lean on purpose: only `request.uid`, `kind`, `operation`,
//! `namespace` and the pod fields the decision reads are decoded. The object is decoded as a lean
//! pod in the same pass; only when that fails is the review read again with the object kept raw,
//! to tell a non-Pod object (answered) from an unreadable pod.

use crate::decision::pod::ObjectOnly;
use crate::decision::{self, Decision, Options, Outcome, Pod, Snapshot};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub const API_VERSION_V1: &str = "admission.k8s.io/v1";
pub const API_VERSION_V1BETA1: &str = "admission.k8s.io/v1beta1";

/// The review envelope; `O` is how `request.object` is read (a lean pod, or a raw value).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "O: Deserialize<'de>"))]
struct ReviewIn<O> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<ObjectOnly<RequestIn<O>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "O: Deserialize<'de>"))]
struct RequestIn<O> {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    kind: ObjectOnly<GroupVersionKind>,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default = "none")]
    object: Option<O>,
}

fn none<O>() -> Option<O> {
    None
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
    /// The decision, or why the object could not be read as a pod (then answered allowed, unpatched).
    pub decision: Result<Decision, String>,
}

/// kube-apiserver always sends the pod on CREATE; patching an imagined empty pod would add members
/// under parents that do not exist.
const NO_OBJECT: &str = "the review carries no Pod object";

fn is_pod<O>(request: &RequestIn<O>) -> bool {
    let ObjectOnly(kind) = &request.kind;
    kind.kind == "Pod" && kind.group.is_empty()
}

impl<O> RequestIn<O> {
    fn without_object(self) -> RequestIn<()> {
        RequestIn {
            uid: self.uid,
            kind: self.kind,
            operation: self.operation,
            namespace: self.namespace,
            object: None,
        }
    }
}

/// Decode the envelope and check it is a review we answer.
fn decode<'a, O: Deserialize<'a>>(body: &'a [u8]) -> Result<(String, RequestIn<O>), ReviewError> {
    let review: ReviewIn<O> = serde_json::from_slice(body)?;
    if review.kind != "AdmissionReview"
        || (review.api_version != API_VERSION_V1 && review.api_version != API_VERSION_V1BETA1)
    {
        return Err(ReviewError::WrongKind {
            kind: review.kind,
            api_version: review.api_version,
        });
    }
    let ObjectOnly(request) = review.request.ok_or(ReviewError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(ReviewError::NoUid);
    }
    Ok((review.api_version, request))
}

/// Decode a review, decide, and encode the answer.
pub fn answer(body: &[u8], snapshot: &Snapshot, options: &Options) -> Result<Answer, ReviewError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ReviewError::Empty),
        // serde would read a JSON array as a struct in field order; a review is an object.
        Some(b'{') => {}
        Some(_) => return Err(ReviewError::NotAnObject),
    }
    let (api_version, request, pod) = match decode::<ObjectOnly<Pod>>(body) {
        Ok((api_version, mut request)) => {
            let pod = match (request.object.take(), is_pod(&request)) {
                (Some(ObjectOnly(pod)), true) => Ok(pod),
                (None, true) => Err(NO_OBJECT.to_string()),
                (_, false) => Ok(Pod::default()),
            };
            (api_version, request.without_object(), pod)
        }
        Err(_) => {
            let (api_version, request) = decode::<&RawValue>(body)?;
            let pod = match request.object {
                _ if !is_pod(&request) => Ok(Pod::default()),
                None => Err(NO_OBJECT.to_string()),
                Some(raw) if !raw.get().starts_with('{') => {
                    Err("object is not a JSON object".to_string())
                }
                Some(raw) => serde_json::from_str(raw.get())
                    .map_err(|e| format!("object is not a readable Pod: {e}")),
            };
            (api_version, request.without_object(), pod)
        }
    };
    let ObjectOnly(kind) = &request.kind;
    let decision = pod.map(|pod| {
        let namespace = request
            .namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .or(pod.metadata.namespace.as_deref())
            .unwrap_or("default");
        let req = decision::Request {
            group: &kind.group,
            kind: &kind.kind,
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
    let body = encode(&api_version, &request.uid, decision.as_ref().ok());
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
        // A mutated pod always has a patch: its schedulerName always changes (decision::patch).
        Outcome::Mutated { patch, .. } => Some(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::SkipReason;
    use crate::profile::{FargateProfile, Selector};

    fn snapshot() -> Snapshot {
        Snapshot::new(vec![FargateProfile {
            fargate_profile_name: "fp".into(),
            pod_execution_role_arn: "arn:aws:iam::012345678910:role/R".into(),
            selectors: vec![Selector {
                namespace: Some("*".into()),
                labels: Default::default(),
            }],
            ..Default::default()
        }])
    }

    fn run(body: &str) -> Result<Answer, ReviewError> {
        answer(body.as_bytes(), &snapshot(), &Options::default())
    }

    fn review(api_version: &str, kind: &str, group: &str, namespace: &str, object: &str) -> String {
        format!(
            r#"{{"apiVersion":"{api_version}","kind":"{kind}","request":{{"uid":"u","kind":{{"group":"{group}","version":"v1","kind":"Pod"}},"operation":"CREATE","namespace":"{namespace}","object":{object}}}}}"#
        )
    }

    #[test]
    fn envelope_versions_and_kinds() {
        let pod = r#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}}"#;
        // Both versions are answered, each in its own version.
        for version in [API_VERSION_V1, API_VERSION_V1BETA1] {
            let answer = run(&review(version, "AdmissionReview", "", "a", pod)).unwrap();
            let out: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            assert_eq!(out["apiVersion"], version);
            assert!(out["response"]["patch"].is_string(), "{out}");
        }
        for (version, kind) in [
            ("admission.k8s.io/v2", "AdmissionReview"),
            (API_VERSION_V1, "AdmissionReviewList"),
        ] {
            assert!(
                matches!(
                    run(&review(version, kind, "", "a", pod)),
                    Err(ReviewError::WrongKind { .. })
                ),
                "{version} {kind}"
            );
        }
    }

    #[test]
    fn objects_that_are_not_pods_or_not_objects() {
        let unreadable = r#"{"metadata":{"labels":[1]},"spec":{}}"#;
        // A kind that is not a core Pod is left alone, whatever its object.
        for (group, object) in [("apps", unreadable), ("", "[1, 2]")] {
            let body = review(API_VERSION_V1, "AdmissionReview", group, "a", object).replace(
                r#""kind":"Pod""#,
                if group.is_empty() {
                    r#""kind":"Service""#
                } else {
                    r#""kind":"Pod""#
                },
            );
            let answer = run(&body).unwrap();
            let decision = answer.decision.expect("left alone, not an error");
            assert!(
                matches!(decision.outcome, Outcome::Skipped(SkipReason::NotPod)),
                "{body}"
            );
        }
        // A Pod whose object is an array, or an object that is no pod: allowed unpatched, and why.
        for (object, reason) in [
            ("[{}, {}]", "object is not a JSON object"),
            (unreadable, "object is not a readable Pod"),
        ] {
            let answer = run(&review(API_VERSION_V1, "AdmissionReview", "", "a", object)).unwrap();
            let error = answer.decision.unwrap_err();
            assert!(error.starts_with(reason), "{object}: {error}");
        }
    }

    #[test]
    fn an_empty_request_namespace_falls_back_to_the_pods() {
        let pod = r#"{"metadata":{"name":"p","namespace":"team"},"spec":{}}"#;
        let answer = run(&review(API_VERSION_V1, "AdmissionReview", "", "", pod)).unwrap();
        assert_eq!(answer.namespace, "team");
        assert_eq!(answer.pod_name, "p");
        let answer = run(&review(
            API_VERSION_V1,
            "AdmissionReview",
            "",
            "",
            r#"{"metadata":{},"spec":{}}"#,
        ))
        .unwrap();
        assert_eq!(answer.namespace, "default");
    }

    #[test]
    fn arrays_in_place_of_objects_are_refused() {
        for body in [
            r#"["admission.k8s.io/v1","AdmissionReview",{"uid":"u"}]"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":["u2",["","Pod"],"CREATE"]}"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":["","v1","Pod"],"operation":"CREATE","object":{}}}"#,
        ] {
            assert!(run(body).is_err(), "{body} must be refused");
        }
        // A pod whose metadata or spec is an array is readable as a review but not as a pod.
        let answer = run(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"a","object":{"metadata":["n"],"spec":{}}}}"#).unwrap();
        assert!(answer.decision.is_err());
        assert!(!String::from_utf8(answer.body).unwrap().contains("patch"));
    }

    #[test]
    fn a_pod_review_without_an_object_gets_no_patch() {
        for object in ["", r#","object":null"#] {
            let body = format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","kind":{{"group":"","version":"v1","kind":"Pod"}},"operation":"CREATE","namespace":"a"{object}}}}}"#
            );
            let answer = run(&body).unwrap();
            assert!(answer.decision.is_err(), "{body}");
            let out: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            assert_eq!(out["response"]["uid"], "u");
            assert_eq!(out["response"]["allowed"], true);
            assert!(out["response"].get("patch").is_none(), "{out}");
        }
        // Other kinds need no object to be answered (and are skipped).
        let answer = run(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE"}}"#).unwrap();
        assert!(matches!(
            answer.decision.unwrap().outcome,
            Outcome::Skipped(crate::decision::SkipReason::NotPod)
        ));
    }
}
