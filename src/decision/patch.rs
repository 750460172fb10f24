//! RFC 6902 JSON Patch for a matching pod (`docs/eks-behaviour.md` §4). Only members the webhook owns are
//! touched; a map is added whole only when it is absent.

use super::pod::Pod;
use crate::profile::PROFILE_LABEL;
use serde::Serialize;
use serde_json::Value;

pub const FARGATE_SCHEDULER: &str = "fargate-scheduler";
pub const FARGATE_PRIORITY_CLASS: &str = "system-node-critical";
/// The value of the built-in `system-node-critical` class; it must agree with the class name
/// because the Priority admission plugin ran before the webhooks.
pub const FARGATE_PRIORITY: i32 = 2_000_001_000;
pub const FARGATE_PREEMPTION_POLICY: &str = "PreemptLowerPriority";
/// Kubernetes label values are at most 63 characters; EKS profile names may be 100.
pub const MAX_LABEL_VALUE_LEN: usize = 63;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PatchOp {
    pub op: &'static str,
    pub path: String,
    pub value: Value,
}

/// Escape one JSON-pointer reference token (RFC 6901): `~` → `~0`, `/` → `~1`.
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// `add` on an object member inserts or replaces (RFC 6902 §4.1), so it is right whether or not
/// the member exists; `replace` is used where the member exists, which reads better in audits.
fn set_member(ops: &mut Vec<PatchOp>, path: String, exists: bool, value: Value) {
    ops.push(PatchOp {
        op: if exists { "replace" } else { "add" },
        path,
        value,
    });
}

fn set_map_entry(
    ops: &mut Vec<PatchOp>,
    map_path: &str,
    map: Option<&std::collections::BTreeMap<String, String>>,
    key: &str,
    value: &str,
) {
    match map {
        None => ops.push(PatchOp {
            op: "add",
            path: map_path.to_string(),
            value: serde_json::json!({ key: value }),
        }),
        Some(entries) if entries.get(key).map(String::as_str) == Some(value) => {}
        Some(entries) => set_member(
            ops,
            format!("{map_path}/{}", escape_pointer_token(key)),
            entries.contains_key(key),
            Value::String(value.to_string()),
        ),
    }
}

/// Build the patch that sends `pod` to Fargate profile `profile`. Returns the patch and whether the
/// label had to be left out (name too long for a label value).
pub fn build(pod: &Pod, profile: &str, priority_override: bool) -> (Vec<PatchOp>, bool) {
    let mut ops = Vec::with_capacity(6);
    let spec = &pod.spec;
    if spec.scheduler_name.as_deref() != Some(FARGATE_SCHEDULER) {
        set_member(
            &mut ops,
            "/spec/schedulerName".into(),
            spec.scheduler_name.is_some(),
            Value::String(FARGATE_SCHEDULER.into()),
        );
    }
    let label_fits = profile.len() <= MAX_LABEL_VALUE_LEN;
    if label_fits {
        set_map_entry(
            &mut ops,
            "/metadata/labels",
            pod.metadata.labels.as_ref(),
            PROFILE_LABEL,
            profile,
        );
    }
    set_map_entry(
        &mut ops,
        "/metadata/annotations",
        pod.metadata.annotations.as_ref(),
        PROFILE_LABEL,
        profile,
    );
    if priority_override {
        if spec.priority_class_name.as_deref() != Some(FARGATE_PRIORITY_CLASS) {
            set_member(
                &mut ops,
                "/spec/priorityClassName".into(),
                spec.priority_class_name.is_some(),
                Value::String(FARGATE_PRIORITY_CLASS.into()),
            );
        }
        if spec.priority != Some(FARGATE_PRIORITY) {
            set_member(
                &mut ops,
                "/spec/priority".into(),
                spec.priority.is_some(),
                Value::from(FARGATE_PRIORITY),
            );
        }
        if spec
            .preemption_policy
            .as_deref()
            .is_some_and(|p| p != FARGATE_PREEMPTION_POLICY)
        {
            set_member(
                &mut ops,
                "/spec/preemptionPolicy".into(),
                true,
                Value::String(FARGATE_PREEMPTION_POLICY.into()),
            );
        }
    }
    (ops, !label_fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_escaping() {
        assert_eq!(
            escape_pointer_token("eks.amazonaws.com/fargate-profile"),
            "eks.amazonaws.com~1fargate-profile"
        );
        assert_eq!(escape_pointer_token("a~b/c"), "a~0b~1c");
        assert_eq!(escape_pointer_token("~1"), "~01");
    }
}
