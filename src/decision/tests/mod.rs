//! Table-driven tests, one group per rule of the spec (sections 2–5).
//!
//! This file holds the shared fixtures; the tests are in one file per concept.

mod explanations;
mod matching;
mod patching;
mod reach;
mod shadowing;

use super::*;
use crate::profile::{FargateProfile, Selector};
use serde_json::{Value, json};

fn profile(
    name: &str,
    status: ProfileStatus,
    selectors: &[(&str, &[(&str, &str)])],
) -> FargateProfile {
    FargateProfile {
        fargate_profile_name: name.into(),
        pod_execution_role_arn: "arn:aws:iam::012345678910:role/R".into(),
        status,
        selectors: selectors
            .iter()
            .map(|(ns, labels)| Selector {
                namespace: Some(ns.to_string()),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}

fn active(name: &str, selectors: &[(&str, &[(&str, &str)])]) -> FargateProfile {
    profile(name, ProfileStatus::Active, selectors)
}

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).expect("test pod")
}

fn labelled(labels: &[(&str, &str)]) -> Pod {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    pod(json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app"}]}}))
}

const ON: Options = Options {
    priority_override: true,
};

/// The review of a pod created in `ns`.
fn create_in<'a>(ns: &'a str, pod: &'a Pod) -> Request<'a> {
    Request {
        group: "",
        kind: "Pod",
        operation: "CREATE",
        namespace: ns,
        pod,
    }
}

fn decide_in(ns: &str, pod: &Pod, snapshot: &Snapshot) -> Decision {
    decide(&create_in(ns, pod), snapshot, &ON)
}

fn chosen(ns: &str, pod: &Pod, snapshot: &Snapshot) -> Option<String> {
    match decide_in(ns, pod, snapshot).outcome {
        Outcome::Mutated { profile, .. } => Some(profile),
        _ => None,
    }
}
