//! Bad inputs, each followed by a good request: undecodable and oversized bodies, objects that are not
//! pods, plain HTTP on the TLS port and silent clients.

use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::{
    Layout, TestServer, channel_body, empty, full, metric_value, remove, review, review_with, set,
    within,
};
use super::{REQUESTS, good_request_still_works};

// ------------------------------------------------------------------------------------------------
// 5. Bad inputs, each followed by a good request

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_bodies_get_json_4xx_and_the_connection_carries_on() {
    let server = TestServer::start().await;
    for mut client in [server.h2().await, server.h1().await] {
        let proto = if client.is_h2() { "h2" } else { "http/1.1" };

        let message = client
            .post("/mutate", "{\"kind\": \"AdmissionRev")
            .await
            .assert_json_error(400);
        assert!(message.contains("JSON"), "{proto}: {message}");
        good_request_still_works(&mut client, "invalid JSON").await;

        let message = client
            .post("/mutate", Bytes::new())
            .await
            .assert_json_error(400);
        assert!(message.contains("empty"), "{proto}: {message}");
        good_request_still_works(&mut client, "an empty body").await;

        let pod_not_review = serde_json::to_vec(&review()["request"]["object"]).unwrap();
        let message = client
            .post("/mutate", pod_not_review)
            .await
            .assert_json_error(400);
        assert!(message.contains("AdmissionReview"), "{proto}: {message}");
        good_request_still_works(&mut client, "a wrong kind").await;

        let v2 = review_with(|r| set(r, "/apiVersion", json!("admission.k8s.io/v2")));
        client
            .post("/mutate", serde_json::to_vec(&v2).unwrap())
            .await
            .assert_json_error(400);
        let no_uid = review_with(|r| remove(r, "/request/uid"));
        client
            .post("/mutate", serde_json::to_vec(&no_uid).unwrap())
            .await
            .assert_json_error(400);
        good_request_still_works(&mut client, "a v2 review and a review without uid").await;

        let reply = client.request(Method::GET, "/mutate", empty()).await;
        reply.assert_json_error(405);
        good_request_still_works(&mut client, "a GET").await;

        let reply = client
            .post("/validate", serde_json::to_vec(&review()).unwrap())
            .await;
        reply.assert_json_error(404);
        good_request_still_works(&mut client, "an unknown path").await;
        assert!(
            !client.is_closed(),
            "{proto}: the server closed the connection"
        );
    }
    let text = server.metrics_text().await;
    for reason in ["invalid_json", "empty_body", "wrong_kind", "no_uid"] {
        assert!(
            metric_value(&text, REQUESTS, &[("outcome", "error"), ("reason", reason)]) >= 2.0,
            "error counter for {reason}"
        );
    }
    // Wrong paths and methods are HTTP noise, counted apart from reviews.
    for reason in ["method", "not_found"] {
        assert_eq!(
            metric_value(&text, REQUESTS, &[("outcome", "error"), ("reason", reason)]),
            0.0,
            "{reason} is not a review"
        );
        assert!(
            metric_value(
                &text,
                "fargate_webhook_http_rejected_total",
                &[("port", "webhook"), ("reason", reason)]
            ) >= 2.0,
            "rejected counter for {reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_object_that_is_not_a_pod_shape_is_allowed_unpatched() {
    let server = TestServer::start().await;
    let review = review_with(|r| set(r, "/request/object/spec/containers", json!("not a list")));
    let answer = server.admit(&review).await;
    answer.assert_untouched();
    assert_eq!(
        server
            .metric(
                REQUESTS,
                &[("outcome", "error"), ("reason", "unreadable_pod")]
            )
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_8_mib_get_413_and_the_connection_carries_on() {
    let server = TestServer::start().await;
    let mut client = server.h2().await;
    let nine_mib = Bytes::from(vec![b' '; 9 * 1024 * 1024]);

    // Declared length over the limit: refused before reading.
    let req = client
        .builder(Method::POST, "/mutate")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::CONTENT_LENGTH, nine_mib.len())
        .body(full(nine_mib.clone()))
        .unwrap();
    let reply = within(
        "413 for a declared 9 MiB",
        Duration::from_secs(3),
        client.send(req),
    )
    .await
    .expect("a response");
    let message = reply.assert_json_error(413);
    assert!(message.contains("larger"), "{message}");
    good_request_still_works(&mut client, "a declared 9 MiB body").await;

    // No declared length (streamed): refused once 8 MiB have been read.
    let (tx, body) = channel_body();
    let feeder = tokio::spawn(async move {
        let chunk = Bytes::from(vec![b' '; 64 * 1024]);
        for _ in 0..(9 * 16) {
            if tx.send(chunk.clone()).await.is_err() {
                break; // the server refused the stream
            }
        }
    });
    let req = client
        .builder(Method::POST, "/mutate")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap();
    let reply = within(
        "413 for a streamed 9 MiB",
        Duration::from_secs(3),
        client.send(req),
    )
    .await
    .expect("a response");
    reply.assert_json_error(413);
    feeder.abort();
    good_request_still_works(&mut client, "a streamed 9 MiB body").await;

    // Exactly at the limit is not refused for its size (it is not JSON, so 400).
    let at_limit = Bytes::from(vec![b' '; 8 * 1024 * 1024]);
    let mut padded = at_limit.to_vec();
    padded[0] = b'x';
    client.post("/mutate", padded).await.assert_json_error(400);
    good_request_still_works(&mut client, "a body of exactly 8 MiB").await;

    assert_eq!(
        server
            .metric(REQUESTS, &[("outcome", "error"), ("reason", "too_large")])
            .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_gets_a_readable_400_and_is_closed() {
    let server = TestServer::start().await;
    let body = serde_json::to_vec(&review()).unwrap();
    let mut tcp = TcpStream::connect(server.webhook_addr).await.unwrap();
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        server.webhook_addr,
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // The server answers on the first byte and closes without reading the request, so the body
    // write may race with its close and fail (EPIPE/ECONNRESET); the answer must still be readable.
    if let Err(error) = tcp.write_all(&body).await {
        assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "writing the body: {error}"
        );
    }
    let mut received = Vec::new();
    // The server closes after its answer: read to EOF (a reset after the answer is a close too).
    let result = within(
        "the server closes a plain-HTTP connection",
        Duration::from_secs(3),
        tcp.read_to_end(&mut received),
    )
    .await;
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.starts_with("HTTP/1.1 400"),
        "plain HTTP got {text:?} (read result {result:?})"
    );
    assert!(text.contains("HTTPS"), "{text}");
    let (_, json_body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status: Value = serde_json::from_str(json_body).expect("a JSON body");
    assert_eq!(status["code"], 400);

    let mut client = server.h2().await;
    good_request_still_works(&mut client, "plain HTTP on the TLS port").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_do_not_hold_up_others_and_are_timed_out() {
    let server =
        TestServer::start_with(Layout::standard(), &["--handshake-timeout", "500ms"]).await;
    // Connected, not a byte sent.
    let mut silent_tcp = TcpStream::connect(server.webhook_addr).await.unwrap();
    // TLS done, no HTTP request.
    let silent_tls = server.tls(&[b"h2"]).await.expect("TLS handshake");
    // TLS record header sent, then nothing (a stalled handshake).
    let mut stalled = TcpStream::connect(server.webhook_addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();

    let mut client = server.h2().await;
    good_request_still_works(&mut client, "three silent clients").await;
    let mut h1 = server.h1().await;
    good_request_still_works(&mut h1, "three silent clients").await;

    // The handshake deadline closes the ones that never finished TLS.
    for (name, stream) in [
        ("silent TCP", &mut silent_tcp),
        ("stalled TLS", &mut stalled),
    ] {
        let mut buf = [0u8; 64];
        let read = within(
            &format!("{name} connection closed by the handshake timeout"),
            Duration::from_secs(3),
            stream.read(&mut buf),
        )
        .await;
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "{name}: expected a close, got {read:?}"
        );
    }
    drop(silent_tls);
    good_request_still_works(&mut client, "timed-out clients").await;
}
