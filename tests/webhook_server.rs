//! The real server (`app::start`) on ephemeral ports, with real TLS (a CA generated per test) and
//! real hyper clients over HTTP/2 and HTTP/1.1: admission answers, skip rules, warnings, bad
//! inputs, certificate rotation, profile hot reload, readiness, graceful shutdown and concurrency.
//!
//! Each test has its own tempdir and ports. Nothing sleeps to assert: changes are polled with a
//! deadline (`support::eventually`, capped at 3 s for what the service promises within 1 s).

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUESTS: &str = "fargate_webhook_admission_requests_total";
const RELOADS: &str = "fargate_webhook_reloads_total";

// ------------------------------------------------------------------------------------------------
// 1. A matching pod

async fn assert_matching_pod_is_mutated(server: &TestServer, mut client: Client, alpn: &[u8]) {
    assert_eq!(
        client.alpn.as_deref(),
        Some(alpn),
        "ALPN negotiated {:?}",
        client.alpn.as_deref().map(String::from_utf8_lossy)
    );
    let review = review();
    let answer = client.admit(&review).await;
    assert_eq!(answer.review["apiVersion"], "admission.k8s.io/v1");
    answer.assert_fixture_mutated(DEFAULT_PROFILE);
    assert!(answer.warnings().is_empty(), "{:?}", answer.warnings());

    // The patch applies to the pod and leaves everything else as it was.
    let mut pod = review["request"]["object"].clone();
    apply_patch(&mut pod, &answer.patch().unwrap());
    assert_eq!(pod["spec"]["schedulerName"], FARGATE_SCHEDULER);
    assert_eq!(pod["metadata"]["labels"][PROFILE_LABEL], DEFAULT_PROFILE);
    assert_eq!(
        pod["metadata"]["annotations"][PROFILE_LABEL],
        DEFAULT_PROFILE
    );
    assert_eq!(pod["spec"]["priorityClassName"], FARGATE_PRIORITY_CLASS);
    assert_eq!(pod["spec"]["priority"], FARGATE_PRIORITY);
    assert_eq!(pod["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    assert_eq!(pod["metadata"]["labels"]["infrastructure"], "fargate");
    assert_eq!(pod["metadata"]["labels"].as_object().unwrap().len(), 6);
    assert_eq!(
        pod["spec"]["tolerations"],
        review["request"]["object"]["spec"]["tolerations"]
    );

    // v1beta1 is answered in kind.
    let review = review_with(|r| set(r, "/apiVersion", json!("admission.k8s.io/v1beta1")));
    let answer = client.admit(&review).await;
    assert_eq!(answer.review["apiVersion"], "admission.k8s.io/v1beta1");
    answer.assert_fixture_mutated(DEFAULT_PROFILE);

    let text = server.metrics_text().await;
    assert_eq!(
        metric_value(
            &text,
            REQUESTS,
            &[("outcome", "mutated"), ("profile", DEFAULT_PROFILE)]
        ),
        2.0
    );
    assert!(
        metric_value(
            &text,
            "fargate_webhook_admission_duration_seconds_count",
            &[("outcome", "mutated")]
        ) >= 2.0
    );
    // Buckets reach the longest webhook timeout the apiserver allows.
    assert!(text.contains(
        r#"fargate_webhook_admission_duration_seconds_bucket{outcome="mutated",le="30"}"#
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_pod_over_http2_gets_the_eks_patch() {
    let server = TestServer::start().await;
    let client = server.h2().await;
    assert_matching_pod_is_mutated(&server, client, b"h2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_pod_over_http1_gets_the_eks_patch() {
    let server = TestServer::start().await;
    let client = server.h1().await;
    assert_matching_pod_is_mutated(&server, client, b"http/1.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_without_label_or_annotation_maps_gets_whole_maps_added() {
    let layout = Layout::standard();
    layout.write_profiles(&profiles_file(vec![
        ProfileBuilder::new("bare").namespace("bare-ns").json(),
    ]));
    let server = TestServer::start_with(layout, &[]).await;
    let review = review_with(|r| {
        set_namespace(r, "bare-ns");
        remove(r, "/request/object/metadata/labels");
        remove(r, "/request/object/metadata/annotations");
        remove(r, "/request/object/spec/priority");
        remove(r, "/request/object/spec/schedulerName");
    });
    let answer = server.admit(&review).await;
    assert_eq!(answer.patch_type(), Some("JSONPatch"));
    let patch = sorted_ops(answer.patch().expect("a patch"));
    assert_eq!(
        patch,
        sorted_ops(vec![
            json!({"op": "add", "path": "/spec/schedulerName", "value": FARGATE_SCHEDULER}),
            json!({"op": "add", "path": "/metadata/labels", "value": {PROFILE_LABEL: "bare"}}),
            json!({"op": "add", "path": "/metadata/annotations", "value": {PROFILE_LABEL: "bare"}}),
            json!({"op": "add", "path": "/spec/priorityClassName", "value": FARGATE_PRIORITY_CLASS}),
            json!({"op": "add", "path": "/spec/priority", "value": FARGATE_PRIORITY}),
        ])
    );
    let mut pod = review["request"]["object"].clone();
    apply_patch(&mut pod, &patch);
    assert_eq!(pod["metadata"]["labels"][PROFILE_LABEL], "bare");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_override_can_be_switched_off() {
    let server =
        TestServer::start_with(Layout::standard(), &["--priority-override", "false"]).await;
    let answer = server.admit(&review()).await;
    let paths: Vec<String> = answer
        .patch()
        .expect("a patch")
        .iter()
        .map(|op| op["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        paths.contains(&"/spec/schedulerName".to_string()),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.starts_with("/spec/priority")),
        "priority touched although switched off: {paths:?}"
    );
}

// ------------------------------------------------------------------------------------------------
// 2. A pod no profile matches

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_matching_pod_is_allowed_without_patch() {
    let server = TestServer::start().await;
    let mut client = server.h2().await;
    // Another namespace, then the right namespace without the selector's label value.
    let elsewhere = review_with(|r| set_namespace(r, "payments"));
    let wrong_label = review_with(|r| set_label(r, "infrastructure", "ec2"));
    for review in [elsewhere, wrong_label] {
        let answer = client.admit(&review).await;
        answer.assert_untouched();
        assert!(answer.warnings().is_empty(), "{:?}", answer.warnings());
    }
    let text = server.metrics_text().await;
    assert_eq!(
        metric_value(
            &text,
            REQUESTS,
            &[("outcome", "not_matched"), ("reason", "no_profile")]
        ),
        2.0
    );
    assert_eq!(
        metric_value(&text, REQUESTS, &[("outcome", "mutated")]),
        0.0
    );
}

// ------------------------------------------------------------------------------------------------
// 3. Every skip rule

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_skip_rule_leaves_the_pod_alone_and_is_counted() {
    let server = TestServer::start().await;
    let mut client = server.h2().await;
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 7] = [
        ("opt_out", |r| {
            set_annotation(r, "eks.amazonaws.com/compute-type", "ec2");
            // A skipped pod runs on nodes: no Fargate warnings for it either.
            set(r, "/request/object/spec/hostNetwork", json!(true));
        }),
        ("daemonset", |r| {
            set(
                r,
                "/request/object/metadata/ownerReferences",
                json!([{
                    "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "node-agent",
                    "uid": "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", "controller": true,
                    "blockOwnerDeletion": true
                }]),
            )
        }),
        ("mirror_pod", |r| {
            set_annotation(
                r,
                "kubernetes.io/config.mirror",
                "3f1c1d1e0b7c4e2e9c9d1f0e2a3b4c5d",
            )
        }),
        ("node_name_set", |r| {
            set(
                r,
                "/request/object/spec/nodeName",
                json!("ip-10-0-1-23.ec2.internal"),
            )
        }),
        ("foreign_scheduler", |r| {
            set(r, "/request/object/spec/schedulerName", json!("volcano"))
        }),
        ("not_create", |r| {
            set(r, "/request/operation", json!("UPDATE"));
            let old = r["request"]["object"].clone();
            set(r, "/request/oldObject", old);
        }),
        ("not_pod", |r| {
            set(
                r,
                "/request/kind",
                json!({"group": "apps", "version": "v1", "kind": "Deployment"}),
            );
            set(
                r,
                "/request/requestKind",
                json!({"group": "apps", "version": "v1", "kind": "Deployment"}),
            );
            set(
                r,
                "/request/resource",
                json!({"group": "apps", "version": "v1", "resource": "deployments"}),
            );
            set(
                r,
                "/request/requestResource",
                json!({"group": "apps", "version": "v1", "resource": "deployments"}),
            );
            set(
                r,
                "/request/object",
                json!({
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "checkout-api", "namespace": "default",
                                 "labels": {"infrastructure": "fargate"}},
                    "spec": {
                        "replicas": 3,
                        "selector": {"matchLabels": {"app": "checkout-api"}},
                        "template": {
                            "metadata": {"labels": {"app": "checkout-api", "infrastructure": "fargate"}},
                            "spec": {"containers": [{"name": "app", "image": "checkout:2"}]}
                        }
                    }
                }),
            );
        }),
    ];
    for (reason, edit) in cases {
        let review = review_with(edit);
        let answer = client.admit(&review).await;
        answer.assert_untouched();
        assert!(
            answer.warnings().is_empty(),
            "{reason}: warnings for a skipped pod: {:?}",
            answer.warnings()
        );
    }
    // compute-type fargate is not an opt-out.
    let fargate = review_with(|r| set_annotation(r, "eks.amazonaws.com/compute-type", "fargate"));
    client
        .admit(&fargate)
        .await
        .assert_fixture_mutated(DEFAULT_PROFILE);

    let text = server.metrics_text().await;
    for (reason, _) in cases {
        assert_eq!(
            metric_value(
                &text,
                REQUESTS,
                &[("outcome", "skipped"), ("reason", reason)]
            ),
            1.0,
            "skipped counter for {reason}"
        );
    }
    assert_eq!(
        metric_value(&text, REQUESTS, &[("outcome", "skipped")]),
        7.0
    );
    assert_eq!(
        metric_value(&text, REQUESTS, &[("outcome", "mutated")]),
        1.0
    );
}

// ------------------------------------------------------------------------------------------------
// 4. Warnings

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_fields_are_named_in_warnings_and_the_pod_is_still_mutated() {
    let server = TestServer::start().await;
    let mut client = server.h2().await;
    let unsupported = review_with(|r| {
        set(r, "/request/object/spec/hostNetwork", json!(true));
        set(r, "/request/object/spec/hostPID", json!(true));
        set(r, "/request/object/spec/hostIPC", json!(true));
        set(
            r,
            "/request/object/spec/containers/0/ports/0/hostPort",
            json!(8080),
        );
        set(
            r,
            "/request/object/spec/containers/0/securityContext/privileged",
            json!(true),
        );
        set(
            r,
            "/request/object/spec/volumes/-",
            json!({"name": "host-logs", "hostPath": {"path": "/var/log", "type": "Directory"}}),
        );
    });
    let answer = client.admit(&unsupported).await;
    answer.assert_fixture_mutated(DEFAULT_PROFILE);
    // The fargate-scheduler's refusal text, verbatim, and the profile that sent the pod there.
    assert_eq!(
        answer.warnings(),
        vec![format!(
            "Pod not supported on Fargate: fields not supported: HostNetwork, HostPID, HostIPC, \
             invalid SecurityContext fields: Privileged, port contains HostIP or HostPort, \
             volumes not supported: host-logs (sent to Fargate profile '{DEFAULT_PROFILE}'; \
             the fargate-scheduler will not place it)"
        )]
    );

    // One field alone is named alone.
    let one_field = review_with(|r| {
        set(
            r,
            "/request/object/spec/volumes/-",
            json!({"name": "docker-sock", "hostPath": {"path": "/var/run/docker.sock"}}),
        )
    });
    let answer = client.admit(&one_field).await;
    answer.assert_fixture_mutated(DEFAULT_PROFILE);
    let warnings = answer.warnings().join("\n");
    assert!(
        warnings.starts_with("Pod not supported on Fargate: volumes not supported: docker-sock ("),
        "{warnings}"
    );

    // A clean matching pod has none.
    assert!(client.admit(&review()).await.warnings().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_that_cannot_be_honoured_warn_and_do_not_fall_back() {
    let long_name = format!("long-{}", "x".repeat(70));
    let layout = Layout::standard();
    layout.write_profiles(&profiles_file(vec![
        default_profile().json(),
        ProfileBuilder::new("fp-batch").namespace("batch").json(),
        ProfileBuilder::new(&long_name)
            .namespace("long-names")
            .json(),
    ]));
    let server = TestServer::start_with(layout, &[]).await;
    let mut client = server.h2().await;

    // A pin to a profile that does not exist: the default profile would match, but no fallback.
    let missing = review_with(|r| set_label(r, PROFILE_LABEL, "no-such-profile"));
    let answer = client.admit(&missing).await;
    answer.assert_untouched();
    let warnings = answer.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("no-such-profile"), "{warnings:?}");

    // A pin to an existing profile whose selectors do not match this pod.
    let not_matching = review_with(|r| set_label(r, PROFILE_LABEL, "fp-batch"));
    let answer = client.admit(&not_matching).await;
    answer.assert_untouched();
    assert!(
        answer.warnings().iter().any(|w| w.contains("fp-batch")),
        "{:?}",
        answer.warnings()
    );

    // A pin to the matching profile is honoured; the label is already there, so it is not re-added.
    let honoured = review_with(|r| set_label(r, PROFILE_LABEL, DEFAULT_PROFILE));
    let answer = client.admit(&honoured).await;
    assert!(answer.warnings().is_empty(), "{:?}", answer.warnings());
    let patch = answer.patch().expect("a patch");
    assert!(
        !patch
            .iter()
            .any(|op| op["path"] == format!("/metadata/labels/{PROFILE_LABEL_TOKEN}")),
        "{patch:?}"
    );
    assert!(
        patch.iter().any(
            |op| op["path"] == format!("/metadata/annotations/{PROFILE_LABEL_TOKEN}")
                && op["value"] == DEFAULT_PROFILE
        ),
        "{patch:?}"
    );

    // A profile name too long for a label value: annotation only, and a warning.
    let long = review_with(|r| set_namespace(r, "long-names"));
    let answer = client.admit(&long).await;
    let patch = answer.patch().expect("a patch");
    assert!(
        !patch
            .iter()
            .any(|op| op["path"].as_str().unwrap().starts_with("/metadata/labels")),
        "{patch:?}"
    );
    assert!(
        patch.iter().any(|op| op["value"] == json!(long_name)),
        "{patch:?}"
    );
    assert!(
        answer.warnings().iter().any(|w| w.contains(&long_name)),
        "{:?}",
        answer.warnings()
    );

    let text = server.metrics_text().await;
    assert_eq!(
        metric_value(
            &text,
            REQUESTS,
            &[("outcome", "not_matched"), ("reason", "pin_missing")]
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            REQUESTS,
            &[("outcome", "not_matched"), ("reason", "pin_not_matching")]
        ),
        1.0
    );
}

// ------------------------------------------------------------------------------------------------
// 5. Bad inputs, each followed by a good request

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

// ------------------------------------------------------------------------------------------------
// 6. Certificate rotation

/// Wait until a new connection is served `expected`.
async fn wait_for_served(server: &TestServer, expected: &rustls_pki_types::CertificateDer<'_>) {
    let (_, took) = eventually("the new certificate is served", POLL_CAP, || async {
        (server.served_leaf().await.as_ref() == expected.as_ref()).then_some(())
    })
    .await;
    eprintln!("new certificate served after {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "requirement: in use within 1 s, took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificate_is_served_and_a_broken_one_is_ignored() {
    let mut server = TestServer::start().await;
    let first = first_cert_der(&server.layout.cert_pem);
    let client = server.h2().await;
    assert_eq!(
        client.peer_certs.first(),
        Some(&first),
        "the installed certificate is served"
    );
    let expiry = "fargate_webhook_certificate_expiry_timestamp_seconds";
    assert_eq!(server.metric(expiry, &[]).await, not_after(&first) as f64);

    // A new CA and key pair, valid for another length of time; clients trust both CAs.
    let next = generate_certs(90);
    server.layout.trust(&next);
    let second = first_cert_der(&next.cert_pem);
    assert_ne!(serial(&first), serial(&second));
    // Key first, then certificate, each atomically (as cert-manager's writers do, one file at a time).
    write_atomic(&server.layout.tls_key, next.key_pem.as_bytes());
    write_atomic(&server.layout.tls_cert, next.cert_pem.as_bytes());
    wait_for_served(&server, &second).await;
    assert_eq!(server.metric(expiry, &[]).await, not_after(&second) as f64);
    // The old connection keeps working with its session.
    let mut client = client;
    good_request_still_works(&mut client, "a rotation").await;
    let mut fresh = server.h2().await;
    assert_eq!(fresh.peer_certs.first(), Some(&second));
    good_request_still_works(&mut fresh, "a rotation").await;

    // A broken certificate file: counted as a failed reload, the last good pair stays in service.
    let failed = [("source", "certificate"), ("result", "failed")];
    let failed_before = server.metric(RELOADS, &failed).await;
    write_atomic(
        &server.layout.tls_cert,
        b"-----BEGIN CERTIFICATE-----\nthis is not base64 !!!\n-----END CERTIFICATE-----\n",
    );
    eventually(
        "a failed certificate reload is counted",
        POLL_CAP,
        || async { (server.metric(RELOADS, &failed).await > failed_before).then_some(()) },
    )
    .await;
    assert_eq!(server.served_leaf().await, second);
    let mut after_broken = server.h2().await;
    good_request_still_works(&mut after_broken, "a broken certificate").await;

    // Half-written (truncated) PEM: also rejected.
    let failed_before = server.metric(RELOADS, &failed).await;
    let third = generate_certs(10);
    let half = &third.cert_pem[..third.cert_pem.len() / 2];
    write_atomic(&server.layout.tls_cert, half.as_bytes());
    eventually(
        "a failed reload of a truncated certificate",
        POLL_CAP,
        || async { (server.metric(RELOADS, &failed).await > failed_before).then_some(()) },
    )
    .await;
    assert_eq!(server.served_leaf().await, second);
    assert_eq!(server.metric(expiry, &[]).await, not_after(&second) as f64);
    assert!(
        server
            .metric(RELOADS, &[("source", "certificate"), ("result", "ok")])
            .await
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotates_through_a_secret_volume_data_symlink_swap() {
    let mut layout = Layout::empty();
    layout.write_profiles(&default_profiles());
    let first = generate_certs(30);
    kube_volume_publish(
        &layout.cert_dir,
        &[
            ("ca.crt", first.ca_pem.as_bytes()),
            ("tls.crt", first.cert_pem.as_bytes()),
            ("tls.key", first.key_pem.as_bytes()),
        ],
    );
    assert!(
        std::fs::symlink_metadata(&layout.tls_cert)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    layout.trust(&first);
    let mut server = TestServer::start_with(layout, &[]).await;
    assert_eq!(server.served_leaf().await, first_cert_der(&first.cert_pem));

    // Same CA is not available (its key is not kept), so the new pair has a new CA; trust both.
    let next = generate_certs(60);
    server.layout.trust(&next);
    kube_volume_publish(
        &server.layout.cert_dir,
        &[
            ("ca.crt", next.ca_pem.as_bytes()),
            ("tls.crt", next.cert_pem.as_bytes()),
            ("tls.key", next.key_pem.as_bytes()),
        ],
    );
    let second = first_cert_der(&next.cert_pem);
    wait_for_served(&server, &second).await;
    let mut client = server.h2().await;
    good_request_still_works(&mut client, "a ..data swap").await;
    assert_eq!(
        server
            .metric(RELOADS, &[("source", "certificate"), ("result", "failed")])
            .await,
        0.0,
        "an atomic ..data swap never shows a half-updated pair"
    );
}

// ------------------------------------------------------------------------------------------------
// 7. Profile hot reload

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

fn profiles_bytes(profiles: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(profiles).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_reload_through_a_configmap_data_symlink_swap_and_bad_files_are_ignored() {
    let mut layout = Layout::empty();
    layout.install_certs(&generate_certs(30));
    kube_volume_publish(
        &layout.state_dir,
        &[("profiles.json", &profiles_bytes(&default_profiles()))],
    );
    let server = TestServer::start_with(layout, &[]).await;
    assert!(mutated_to(&server, "default", DEFAULT_PROFILE).await);
    assert!(!mutated_to(&server, "team-b", "fp-team-b").await);

    let failed = [("source", "profiles"), ("result", "failed")];
    let ok = [("source", "profiles"), ("result", "ok")];
    let ok_before = server.metric(RELOADS, &ok).await;

    // The ConfigMap now holds only a profile for team-b.
    let team_b = profiles_file(vec![
        ProfileBuilder::new("fp-team-b").namespace("team-b").json(),
    ]);
    kube_volume_publish(
        &server.layout.state_dir,
        &[("profiles.json", &profiles_bytes(&team_b))],
    );
    let (_, took) = eventually("the new profile matches", POLL_CAP, || async {
        mutated_to(&server, "team-b", "fp-team-b")
            .await
            .then_some(())
    })
    .await;
    eprintln!("new profiles in use after {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "requirement: in use within 1 s, took {took:?}"
    );
    assert!(
        !mutated_to(&server, "default", DEFAULT_PROFILE).await,
        "the old profile is gone"
    );
    assert!(server.metric(RELOADS, &ok).await > ok_before);
    assert!(server.running().snapshot.load().get("fp-team-b").is_some());

    // Invalid JSON, then a valid JSON profile with 6 selectors: both rejected, the snapshot stays.
    // Deliberately invalid: one selector more than allowed.
    let mut six = ProfileBuilder::new("fp-six").namespace("six").json();
    six["selectors"] = json!(
        (0..6)
            .map(|i| json!({"namespace": format!("ns-{i}")}))
            .collect::<Vec<_>>()
    );
    let bad_files: [(&str, Vec<u8>); 2] = [
        (
            "invalid JSON",
            b"{\"fargateProfiles\": [ {\"fargateProfileName\": ".to_vec(),
        ),
        ("six selectors", profiles_bytes(&profiles_file(vec![six]))),
    ];
    for (what, bytes) in bad_files {
        let failed_before = server.metric(RELOADS, &failed).await;
        kube_volume_publish(&server.layout.state_dir, &[("profiles.json", &bytes)]);
        eventually(
            &format!("the {what} file is rejected"),
            POLL_CAP,
            || async { (server.metric(RELOADS, &failed).await > failed_before).then_some(()) },
        )
        .await;
        assert!(
            mutated_to(&server, "team-b", "fp-team-b").await,
            "after {what}: the last good snapshot"
        );
        assert!(!mutated_to(&server, "six", "fp-six").await, "after {what}");
        let snapshot = server.running().snapshot.load();
        assert!(snapshot.get("fp-team-b").is_some(), "after {what}");
        assert!(snapshot.get("fp-six").is_none(), "after {what}");
    }
    assert_eq!(
        server.ops_get("/readyz").await.status,
        StatusCode::OK,
        "still ready on the last good snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_reload_when_the_file_is_replaced_in_place() {
    let server = TestServer::start().await;
    assert!(!mutated_to(&server, "team-c", "fp-team-c").await);
    server.layout.write_profiles(&profiles_file(vec![
        default_profile().json(),
        ProfileBuilder::new("fp-team-c").namespace("team-*").json(),
    ]));
    eventually("the new wildcard profile matches", POLL_CAP, || async {
        mutated_to(&server, "team-c", "fp-team-c")
            .await
            .then_some(())
    })
    .await;
    assert!(mutated_to(&server, "default", DEFAULT_PROFILE).await);
    assert_eq!(
        server
            .metric("fargate_webhook_profiles", &[("status", "ACTIVE")])
            .await,
        2.0
    );
}

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
    // The webhook still answers: nothing matches an empty store.
    let answer = server.admit(&review()).await;
    answer.assert_untouched();
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
