//! The matchConditions writer (src/match_conditions) over a Kubernetes store and the fake API
//! server: what it does when the API server does not answer.

use fargate_webhook::claim::Claim;
use fargate_webhook::match_conditions::Writer;
use fargate_webhook::metrics::Metrics;
use fargate_webhook::profile::ProfileStatus;
use fargate_webhook::store::ProfileStore;
use http::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::support::fake_kube::{Fake, NAMESPACE, kubectl_object};
use super::support::fake_tls::CONFIGS;
use super::support::{until, within};
use super::{CAP, replica};

const CONFIG: &str = "0500-fargate-webhook";

fn chart_config() -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIG},
        "webhooks": [{
            "name": "pods.fargate-webhook.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "clientConfig": {"service": {"name": "fargate-webhook", "namespace": NAMESPACE, "path": "/mutate", "port": 443}},
        }],
    })
}

/// The read of the configuration hangs (a dead connection): the pass is cut off at its deadline
/// and tried again, and the condition is written. Regression: without the bound the term's one
/// loop waited for good, and no profile change after it reached the configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_whose_read_never_answers_is_given_up_and_tried_again() {
    let fake = Fake::new();
    fake.with(|s| s.tls.put_config(chart_config(), &mut s.version));
    fake.apply(kubectl_object("alpha", Some(ProfileStatus::Active)));
    let r = replica(fake.client());
    let watch = r.store.start();
    within("loaded", CAP, r.store.wait_loaded()).await;
    fake.with(|s| {
        s.hang_next_if = Some(Box::new(|_, method, path, _| {
            *method == Method::GET && path.starts_with(CONFIGS)
        }))
    });

    let store: Arc<dyn ProfileStore> = r.store.clone();
    let writer = Writer::new(
        fake.client(),
        CONFIG.into(),
        Vec::new(),
        store,
        Arc::new(Metrics::new()),
    )
    .with_deadline(Duration::from_millis(300));
    let covered = writer.covered();
    let shutdown = CancellationToken::new();
    let task = writer.run(Claim::local(&shutdown), shutdown.clone());

    let conditions =
        || fake.with(|s| s.tls.configs[CONFIG]["webhooks"][0]["matchConditions"].clone());
    until("the condition written", CAP, || conditions().is_array()).await;
    assert!(
        fake.with(|s| s.hang_next_if.is_none()),
        "the first read was left unanswered"
    );
    let expression = conditions()[0]["expression"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        expression.contains("ns-alpha"),
        "the condition names the profile's namespace: {expression}"
    );
    until("alpha reported covered", CAP, || {
        covered.borrow().contains("alpha")
    })
    .await;
    shutdown.cancel();
    within("the writer stopped", CAP, task).await.unwrap();
    watch.abort();
}
