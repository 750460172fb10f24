//! Fixture AdmissionReviews with golden answers beside them: `<name>.review.json` is answered
//! against `profiles.json` and compared with `<name>.expected.json` (decoded patch and warnings).
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the expected files after a deliberate change.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use base64::Engine;
use fargate_webhook::admission;
use fargate_webhook::decision::{Options, Snapshot};
use fargate_webhook::profile::{Limits, parse_profiles_file};
use serde_json::{Value, json};
use std::path::Path;
use support::{apply_patch, fixtures_dir};

fn answer_fixture(review: &Path) -> Value {
    let profiles = std::fs::read(fixtures_dir().join("profiles.json")).unwrap();
    let snapshot = Snapshot::new(
        parse_profiles_file(&profiles, &Limits::default())
            .unwrap()
            .fargate_profiles,
    );
    let body = std::fs::read(review).unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap();
    let answer = admission::answer(
        &body,
        &snapshot,
        &Options {
            priority_override: true,
        },
    )
    .unwrap();
    let out: Value = serde_json::from_slice(&answer.body).unwrap();
    // Envelope rules that hold for every fixture.
    assert_eq!(
        out["apiVersion"], request["apiVersion"],
        "apiVersion echoed"
    );
    assert_eq!(out["kind"], "AdmissionReview");
    assert_eq!(
        out["response"]["uid"], request["request"]["uid"],
        "uid echoed"
    );
    assert_eq!(out["response"]["allowed"], true);
    let patch = match out["response"].get("patch") {
        Some(Value::String(b64)) => {
            assert_eq!(out["response"]["patchType"], "JSONPatch");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        }
        None => {
            assert!(
                out["response"].get("patchType").is_none(),
                "patchType only with a patch"
            );
            Value::Null
        }
        Some(other) => panic!("patch must be a base64 string, got {other}"),
    };
    json!({
        "patch": patch,
        "warnings": out["response"].get("warnings").cloned().unwrap_or(json!([])),
    })
}

#[test]
fn fixtures_match_their_golden_answers() {
    let mut reviews: Vec<_> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".review.json"))
        .collect();
    reviews.sort();
    assert!(reviews.len() >= 6, "fixtures missing: {reviews:?}");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for review in reviews {
        let got = answer_fixture(&review);
        let expected_path = review
            .to_string_lossy()
            .replace(".review.json", ".expected.json");
        if update {
            std::fs::write(
                &expected_path,
                serde_json::to_string_pretty(&got).unwrap() + "\n",
            )
            .unwrap();
            continue;
        }
        let expected: Value =
            serde_json::from_slice(&std::fs::read(&expected_path).unwrap_or_else(|_| {
                panic!("{expected_path} missing: run with UPDATE_GOLDEN=1 and review it")
            }))
            .unwrap();
        assert_eq!(got, expected, "{}", review.display());
    }
}

/// Applying the golden patch to the fixture pod must give a pod with exactly the EKS changes.
#[test]
fn replicaset_patch_applies_to_the_pod() {
    let review: Value = serde_json::from_slice(
        &std::fs::read(fixtures_dir().join("replicaset-pod.review.json")).unwrap(),
    )
    .unwrap();
    let got = answer_fixture(&fixtures_dir().join("replicaset-pod.review.json"));
    let mut pod = review["request"]["object"].clone();
    // Parents must exist, `replace` needs the member: as kube-apiserver applies it.
    apply_patch(&mut pod, got["patch"].as_array().unwrap());
    let name = "default-with-infrastructure-label";
    assert_eq!(pod["spec"]["schedulerName"], "fargate-scheduler");
    assert_eq!(
        pod["metadata"]["labels"]["eks.amazonaws.com/fargate-profile"],
        name
    );
    assert_eq!(
        pod["metadata"]["annotations"]["eks.amazonaws.com/fargate-profile"],
        name
    );
    assert_eq!(pod["spec"]["priorityClassName"], "system-node-critical");
    assert_eq!(pod["spec"]["priority"], 2000001000);
    // Nothing the webhook does not own was touched.
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/name"],
        "checkout-api"
    );
    assert_eq!(
        pod["spec"]["tolerations"],
        review["request"]["object"]["spec"]["tolerations"]
    );
}
