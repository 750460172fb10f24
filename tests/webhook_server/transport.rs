//! Transport: concurrent streams on one HTTP/2 connection, the header-read deadline for silent TLS
//! clients, and the API served over TLS with the webhook's certificate.

use hyper::StatusCode;
use serde_json::json;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::REQUESTS;
use super::support::{
    Client, DEFAULT_PROFILE, Layout, ProfileBuilder, Reply, TestServer, check_admission_reply,
    full, metric_value, review, review_with, set, set_namespace, tls_connect, within,
};

// ------------------------------------------------------------------------------------------------
// 10. Concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_streams_on_one_http2_connection() {
    const STREAMS: usize = 16;
    const PER_STREAM: usize = 50;
    let server = TestServer::start().await;
    let client = server.h2().await;
    assert_eq!(client.alpn.as_deref(), Some(&b"h2"[..]));
    let mut tasks = tokio::task::JoinSet::new();
    for stream in 0..STREAMS {
        let mut sender = client.h2_stream_handle();
        let uri = format!("https://{}/mutate", server.webhook_addr);
        tasks.spawn(async move {
            for i in 0..PER_STREAM {
                let review = review_with(|r| {
                    set(r, "/request/uid", json!(format!("stream-{stream}-req-{i}")));
                    if i % 2 == 1 {
                        set_namespace(r, "elsewhere");
                    }
                });
                let req = hyper::Request::post(&uri)
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .body(full(serde_json::to_vec(&review).unwrap()))
                    .unwrap();
                sender.ready().await.expect("connection usable");
                let response = sender.send_request(req).await.expect("a response");
                let reply = Reply::read(response).await.expect("a body");
                let answer = check_admission_reply(&reply, &review);
                if i % 2 == 1 {
                    answer.assert_untouched();
                } else {
                    answer.assert_fixture_mutated(DEFAULT_PROFILE);
                }
            }
        });
    }
    within(
        "800 reviews over one connection",
        Duration::from_secs(20),
        async {
            while let Some(result) = tasks.join_next().await {
                result.expect("a stream task panicked");
            }
        },
    )
    .await;
    assert!(!client.is_closed());
    let text = server.metrics_text().await;
    let total = (STREAMS * PER_STREAM) as f64;
    assert_eq!(
        metric_value(&text, REQUESTS, &[("outcome", "mutated")]),
        total / 2.0
    );
    assert_eq!(
        metric_value(&text, REQUESTS, &[("outcome", "not_matched")]),
        total / 2.0
    );
}

// ------------------------------------------------------------------------------------------------
// Transport defects found by these tests and fixed in src/server/http.rs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_never_sends_a_request_is_closed_by_the_header_deadline() {
    let server =
        TestServer::start_with(Layout::standard(), &["--handshake-timeout", "300ms"]).await;
    let mut silent = server.tls(&[b"h2"]).await.expect("TLS handshake");
    let mut buf = [0u8; 64];
    let read = within(
        "a silent TLS connection closed by the header-read deadline",
        Duration::from_secs(3),
        silent.read(&mut buf),
    )
    .await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected a close, got {read:?}"
    );
}

/// `--api-tls`: the EKS API is served over TLS with the webhook's (hot-reloaded) certificate, and a
/// profile created through it is matched by the webhook of the same process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tls_serves_the_api_with_the_webhook_certificate() {
    let server =
        TestServer::start_with(Layout::standard(), &["--api-tls", "--create-delay", "0s"]).await;
    let api_addr = server.running().api_addr;
    let tls = tls_connect(api_addr, server.roots(), &[b"h2"])
        .await
        .expect("TLS to the API with the webhook's CA");
    let mut api = Client::h2(tls, api_addr).await;
    let body = ProfileBuilder::new("over-tls").namespace("tls-only").json();
    let reply = api
        .post(
            "/clusters/fargate/fargate-profiles",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let mut review = review();
    set_namespace(&mut review, "tls-only");
    let answer = server.admit(&review).await;
    let patch = answer.patch().expect("the new profile matches at once");
    assert!(
        patch.iter().any(|op| op["value"] == "over-tls"),
        "{patch:?}"
    );
    // Plain HTTP is not served there.
    let mut raw = TcpStream::connect(api_addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw.write_all(b"GET /clusters/fargate/fargate-profiles HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = Vec::new();
    let _ = raw.read_to_end(&mut text).await;
    assert!(String::from_utf8_lossy(&text).contains("this port speaks HTTPS"));
}
