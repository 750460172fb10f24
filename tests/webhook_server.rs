//! The real server (`app::start`) on ephemeral ports, with real TLS (a CA generated per test) and
//! real hyper clients over HTTP/2 and HTTP/1.1: admission answers, skip rules, warnings, bad
//! inputs, certificate rotation, profile hot reload, readiness, graceful shutdown and concurrency.
//!
//! Each test has its own tempdir and ports. Nothing sleeps to assert: changes are polled with a
//! deadline (`support::eventually`, capped at 3 s for what the service promises within 1 s).
//!
//! This file holds what several groups share; the tests are in `tests/webhook_server/`, one file per
//! concept.

#[path = "webhook_server/admission.rs"]
mod admission;
#[path = "webhook_server/bad_inputs.rs"]
mod bad_inputs;
#[path = "webhook_server/readiness_and_shutdown.rs"]
mod readiness_and_shutdown;
#[path = "webhook_server/reload.rs"]
mod reload;
#[allow(dead_code)] // each test binary uses only part of the library
mod support;
#[path = "webhook_server/transport.rs"]
mod transport;

use std::time::Duration;
use support::*;

const REQUESTS: &str = "fargate_webhook_admission_requests_total";
const RELOADS: &str = "fargate_webhook_reloads_total";

// ------------------------------------------------------------------------------------------------
// Helpers shared by several groups of tests

/// A good review on `client` still gets the full answer.
async fn good_request_still_works(client: &mut Client, after: &str) {
    let review = review();
    let reply = within(
        &format!("good request after {after}"),
        Duration::from_secs(3),
        client.post("/mutate", serde_json::to_vec(&review).unwrap()),
    )
    .await;
    check_admission_reply(&reply, &review).assert_fixture_mutated(DEFAULT_PROFILE);
}

/// Whether a pod in `namespace` (fixture labels) is now mutated to `profile`.
async fn mutated_to(server: &TestServer, namespace: &str, profile: &str) -> bool {
    let review = review_with(|r| set_namespace(r, namespace));
    let answer = server.admit(&review).await;
    answer.patch().is_some_and(|ops| {
        ops.iter().any(|op| {
            op["path"] == format!("/metadata/annotations/{PROFILE_LABEL_TOKEN}")
                && op["value"] == profile
        })
    })
}
