//! Readiness (ready once loaded, not ready on corrupt profiles) and graceful shutdown (the in-flight
//! request drained, then connections refused; the drain deadline closes what remains).

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpStream;

use super::support::{
    Client, DEFAULT_PROFILE, Layout, POLL_CAP, Reply, TestServer, channel_body,
    check_admission_reply, default_profiles, eventually, generate_certs, metric_value, review,
    within, write_atomic,
};
use super::{RELOADS, REQUESTS, good_request_still_works, mutated_to};

// ------------------------------------------------------------------------------------------------
// 8. Readiness

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_healthy_once_loaded() {
    let server = TestServer::start().await;
    let ready = server.ops_get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    let health = server.ops_get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text());
    assert_eq!(server.ops_get("/nope").await.status, StatusCode::NOT_FOUND);
    let text = server.metrics_text().await;
    assert_eq!(metric_value(&text, "fargate_webhook_build_info", &[]), 1.0);
    assert_eq!(
        metric_value(&text, "fargate_webhook_profiles", &[("status", "ACTIVE")]),
        1.0
    );
    assert_eq!(
        metric_value(&text, RELOADS, &[("source", "profiles"), ("result", "ok")]),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            RELOADS,
            &[("source", "certificate"), ("result", "ok")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_profiles_at_start_mean_not_ready_until_a_valid_file_arrives() {
    let mut layout = Layout::empty();
    layout.install_certs(&generate_certs(30));
    write_atomic(&layout.profiles_path(), b"{ this is not json");
    let server = TestServer::start_with(layout, &[]).await;

    let ready = server.ops_get("/readyz").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text()
    );
    assert_eq!(
        server.ops_get("/healthz").await.status,
        StatusCode::OK,
        "liveness does not depend on profiles"
    );
    assert_eq!(
        server
            .running()
            .snapshot
            .load()
            .get(DEFAULT_PROFILE)
            .map(|_| ()),
        None
    );
    // The webhook answers a readable 503 instead of an answer from the empty store: the apiserver
    // counts a failed call (and applies failurePolicy), where "nothing matches" would pass unseen.
    let refused = server
        .h2()
        .await
        .post("/mutate", serde_json::to_vec(&review()).unwrap())
        .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused.json()["reason"],
        "ServiceUnavailable",
        "{}",
        refused.text()
    );
    assert!(
        refused.text().contains("not loaded yet"),
        "{}",
        refused.text()
    );
    assert_eq!(
        server
            .metric(REQUESTS, &[("outcome", "error"), ("reason", "not_loaded")])
            .await,
        1.0
    );
    assert!(
        server
            .metric(RELOADS, &[("source", "profiles"), ("result", "failed")])
            .await
            >= 1.0
    );

    server.layout.write_profiles(&default_profiles());
    eventually("ready after a valid profiles file", POLL_CAP, || async {
        (server.ops_get("/readyz").await.status == StatusCode::OK).then_some(())
    })
    .await;
    server
        .admit(&review())
        .await
        .assert_fixture_mutated(DEFAULT_PROFILE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_state_dir_starts_with_the_example_profile() {
    let mut layout = Layout::empty();
    layout.install_certs(&generate_certs(30));
    let server = TestServer::start_with(layout, &[]).await;
    assert!(
        server.layout.profiles_path().exists(),
        "profiles.json created"
    );
    assert_eq!(server.ops_get("/readyz").await.status, StatusCode::OK);
    assert!(mutated_to(&server, "fargate-example", "example").await);
}

// ------------------------------------------------------------------------------------------------
// 9. Graceful shutdown

type InFlight = tokio::task::JoinHandle<hyper::Result<hyper::Response<hyper::body::Incoming>>>;

/// Start a review on `client` whose body is not finished: send the returned review's JSON on the
/// sender, then drop it, to complete it. Returns once the request is provably in the server's
/// handler: JSON may start with any amount of whitespace, and 3 MiB of it cannot all be sent
/// before the handler reads (HTTP/2 flow control: a 1 MiB stream window plus the client's send
/// buffer).
async fn start_stalled_request(
    client: &Client,
) -> (Value, tokio::sync::mpsc::Sender<Bytes>, InFlight) {
    let review = review();
    let (tx, body) = channel_body();
    let req = client
        .builder(Method::POST, "/mutate")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap();
    let mut sender = client.h2_stream_handle();
    sender.ready().await.unwrap();
    let in_flight = tokio::spawn(sender.send_request(req));
    let padding = Bytes::from(vec![b' '; 64 * 1024]);
    within(
        "3 MiB of the body reach the handler",
        Duration::from_secs(3),
        async {
            for _ in 0..48 {
                tx.send(padding.clone()).await.unwrap();
            }
        },
    )
    .await;
    (review, tx, in_flight)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_the_in_flight_request_then_refuses_connections() {
    let mut server = TestServer::start().await;
    let webhook_addr = server.webhook_addr;
    let metrics_addr = server.metrics_addr;
    let mut client = server.h2().await;
    good_request_still_works(&mut client, "start-up").await;

    // A request whose body is still coming when the shutdown starts.
    let (review, tx, in_flight) = start_stalled_request(&client).await;

    server.shutdown();
    let running = server.take_running();
    let drained = tokio::spawn(running.wait());

    // New connections are refused once the listener is gone (before the drain ends).
    eventually("new connections refused", POLL_CAP, || async {
        TcpStream::connect(webhook_addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(
        !drained.is_finished(),
        "drained while a request was in flight"
    );

    tx.send(Bytes::from(serde_json::to_vec(&review).unwrap()))
        .await
        .unwrap();
    drop(tx);
    let response = within(
        "the in-flight request completes",
        Duration::from_secs(3),
        in_flight,
    )
    .await
    .unwrap()
    .expect("the in-flight request is answered");
    let reply = Reply::read(response).await.expect("the body arrives");
    check_admission_reply(&reply, &review).assert_fixture_mutated(DEFAULT_PROFILE);

    within(
        "wait() returns after draining",
        Duration::from_secs(3),
        drained,
    )
    .await
    .unwrap();
    assert!(
        TcpStream::connect(webhook_addr).await.is_err(),
        "webhook port still accepts"
    );
    assert!(
        TcpStream::connect(metrics_addr).await.is_err(),
        "ops port still accepts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_deadline_closes_the_remaining_connections() {
    let mut server =
        TestServer::start_with(Layout::standard(), &["--shutdown-timeout", "300ms"]).await;
    let client = server.h2().await;
    let (_review, tx, in_flight) = start_stalled_request(&client).await;
    server.shutdown();
    within(
        "wait() returns at the drain deadline",
        Duration::from_secs(3),
        server.take_running().wait(),
    )
    .await;
    eventually("the stalled connection is closed", POLL_CAP, || async {
        client.is_closed().then_some(())
    })
    .await;
    drop(tx);
    let outcome = within(
        "the stalled request ends",
        Duration::from_secs(3),
        in_flight,
    )
    .await
    .unwrap();
    assert!(
        outcome.is_err(),
        "the stalled request was still answered after the deadline"
    );
}
