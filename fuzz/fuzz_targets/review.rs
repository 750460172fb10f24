//! libFuzzer target: arbitrary bytes as an AdmissionReview body through `admission::answer`.
//! No panic, and every answer is a well-formed review: JSON, `allowed: true`, the request's uid,
//! and a patch (when present) that is base64 of a non-empty JSON array with `patchType`.
#![no_main]

use base64::Engine;
use fargate_webhook::admission;
use fargate_webhook::decision::{Options, Snapshot};
use fargate_webhook::profile::{FargateProfile, Selector};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn profile(name: &str, namespace: &str, labels: &[(&str, &str)]) -> FargateProfile {
    FargateProfile {
        fargate_profile_name: name.into(),
        selectors: vec![Selector {
            namespace: Some(namespace.into()),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }],
        ..Default::default()
    }
}

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        Snapshot::new(vec![
            profile("fp-default", "default", &[("infrastructure", "fargate")]),
            profile("team", "team-?-*", &[("app*", "*")]),
            profile("zz-catch-all", "*", &[]),
        ])
    })
}

fuzz_target!(|body: &[u8]| {
    let options = Options {
        priority_override: true,
    };
    let Ok(answer) = admission::answer(body, snapshot(), &options) else {
        return;
    };
    let out: serde_json::Value = serde_json::from_slice(&answer.body).expect("an answer is JSON");
    assert_eq!(out["kind"], "AdmissionReview");
    let response = &out["response"];
    assert_eq!(response["allowed"], true);
    assert_eq!(response["uid"].as_str(), Some(answer.uid.as_str()));
    assert!(!answer.uid.is_empty());
    match (response.get("patch"), response.get("patchType")) {
        (None, None) => {}
        (Some(patch), Some(kind)) => {
            assert_eq!(kind, "JSONPatch");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(patch.as_str().expect("patch is a string"))
                .expect("patch is base64");
            let ops: Vec<serde_json::Value> =
                serde_json::from_slice(&bytes).expect("patch is a JSON array");
            assert!(!ops.is_empty());
        }
        other => panic!("patch and patchType must come together: {other:?}"),
    }
});
