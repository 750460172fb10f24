//! AdmissionReviews built from the ReplicaSet fixture, the patch the fixture pod must get, and
//! [`Answer`], a decoded AdmissionReview answer.

use super::client::Reply;
use super::patch::{escape, set};
use hyper::StatusCode;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

/// Label and annotation EKS writes on a Fargate pod.
pub const PROFILE_LABEL: &str = "eks.amazonaws.com/fargate-profile";
/// The same key as a JSON-pointer token.
pub const PROFILE_LABEL_TOKEN: &str = "eks.amazonaws.com~1fargate-profile";
pub const FARGATE_SCHEDULER: &str = "fargate-scheduler";
pub const FARGATE_PRIORITY_CLASS: &str = "system-node-critical";
pub const FARGATE_PRIORITY: i64 = 2_000_001_000;

/// The realistic ReplicaSet pod review (namespace `default`, label `infrastructure=fargate`).
pub const FIXTURE: &str = include_str!("../fixtures/replicaset-pod.review.json");

static UID_SEQ: AtomicU64 = AtomicU64::new(1);

/// A uid unique within the test process.
pub fn fresh_uid(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        UID_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The fixture review with a fresh `request.uid`.
pub fn review() -> Value {
    let mut review: Value = serde_json::from_str(FIXTURE).expect("the fixture is JSON");
    set(&mut review, "/request/uid", json!(fresh_uid("uid")));
    review
}

/// The fixture review with its edits applied by `edit`.
pub fn review_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut review = review();
    edit(&mut review);
    review
}

pub fn uid_of(review: &Value) -> String {
    review["request"]["uid"]
        .as_str()
        .expect("review has a uid")
        .to_string()
}

/// Put the review (request and object) in another namespace.
pub fn set_namespace(review: &mut Value, namespace: &str) {
    set(review, "/request/namespace", json!(namespace));
    set(
        review,
        "/request/object/metadata/namespace",
        json!(namespace),
    );
}

/// Set a label on the reviewed object.
pub fn set_label(review: &mut Value, key: &str, value: &str) {
    set(
        review,
        &format!("/request/object/metadata/labels/{}", escape(key)),
        json!(value),
    );
}

/// Set an annotation on the reviewed object.
pub fn set_annotation(review: &mut Value, key: &str, value: &str) {
    set(
        review,
        &format!("/request/object/metadata/annotations/{}", escape(key)),
        json!(value),
    );
}

/// The patch the fixture pod gets from profile `name`: schedulerName and priority exist (replace),
/// labels and annotations exist without the profile key (add member), no priorityClassName (add),
/// preemptionPolicy already `PreemptLowerPriority` (untouched).
pub fn expected_fixture_patch(name: &str) -> Vec<Value> {
    vec![
        json!({"op": "replace", "path": "/spec/schedulerName", "value": FARGATE_SCHEDULER}),
        json!({"op": "add", "path": format!("/metadata/labels/{PROFILE_LABEL_TOKEN}"), "value": name}),
        json!({"op": "add", "path": format!("/metadata/annotations/{PROFILE_LABEL_TOKEN}"), "value": name}),
        json!({"op": "add", "path": "/spec/priorityClassName", "value": FARGATE_PRIORITY_CLASS}),
        json!({"op": "replace", "path": "/spec/priority", "value": FARGATE_PRIORITY}),
    ]
}

/// Ops sorted by path, for comparisons that do not depend on the order the server chose.
pub fn sorted_ops(mut ops: Vec<Value>) -> Vec<Value> {
    ops.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    ops
}

/// A decoded AdmissionReview answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub review: Value,
}

impl Answer {
    pub fn parse(body: &[u8]) -> Self {
        let review: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "answer is not JSON ({e}): {}",
                String::from_utf8_lossy(body)
            )
        });
        Answer { review }
    }

    pub fn response(&self) -> &Value {
        &self.review["response"]
    }

    pub fn uid(&self) -> &str {
        self.response()["uid"].as_str().unwrap_or("")
    }

    pub fn allowed(&self) -> bool {
        self.response()["allowed"] == json!(true)
    }

    pub fn patch_type(&self) -> Option<&str> {
        self.response().get("patchType").and_then(Value::as_str)
    }

    /// The base64 JSON Patch, decoded. `None` when the answer has no `patch` member.
    pub fn patch(&self) -> Option<Vec<Value>> {
        use base64::Engine;
        let encoded = self.response().get("patch")?;
        let text = encoded
            .as_str()
            .unwrap_or_else(|| panic!("patch must be a base64 string, got {encoded}"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("patch is standard base64");
        let ops: Value = serde_json::from_slice(&bytes).expect("decoded patch is JSON");
        Some(ops.as_array().expect("patch is an RFC 6902 array").to_vec())
    }

    pub fn warnings(&self) -> Vec<String> {
        self.response()
            .get("warnings")
            .and_then(Value::as_array)
            .map(|w| {
                w.iter()
                    .map(|s| s.as_str().expect("warnings are strings").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Allowed, no patch, no patchType: the pod is left alone.
    #[track_caller]
    pub fn assert_untouched(&self) {
        assert!(self.allowed(), "not allowed: {}", self.review);
        assert!(
            self.response().get("patch").is_none(),
            "unexpected patch: {}",
            self.review
        );
        assert!(
            self.response().get("patchType").is_none(),
            "patchType without a patch: {}",
            self.review
        );
    }

    /// Allowed with exactly the fixture patch for `profile`.
    #[track_caller]
    pub fn assert_fixture_mutated(&self, profile: &str) {
        assert!(self.allowed(), "not allowed: {}", self.review);
        assert_eq!(self.patch_type(), Some("JSONPatch"), "{}", self.review);
        let patch = self
            .patch()
            .unwrap_or_else(|| panic!("no patch: {}", self.review));
        assert_eq!(
            sorted_ops(patch),
            sorted_ops(expected_fixture_patch(profile)),
            "patch for profile {profile}"
        );
    }
}

/// A 200 JSON AdmissionReview that echoes `apiVersion`, `kind` and the uid of `review`.
#[track_caller]
pub fn check_admission_reply(reply: &Reply, review: &Value) -> Answer {
    assert_eq!(reply.status, StatusCode::OK, "body: {}", reply.text());
    assert!(
        reply.content_type().starts_with("application/json"),
        "content-type {:?}",
        reply.content_type()
    );
    let answer = Answer::parse(&reply.body);
    assert_eq!(
        answer.review["kind"], "AdmissionReview",
        "{}",
        answer.review
    );
    assert_eq!(
        answer.review["apiVersion"], review["apiVersion"],
        "apiVersion echoed"
    );
    assert_eq!(answer.uid(), uid_of(review), "uid echoed");
    answer
}
