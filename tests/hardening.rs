//! Abuse and faults on real sockets with real TLS: stalled and endless bodies, connection floods,
//! idle HTTP/2 connections, bad certificates, broken profile writes, replaced directories and
//! SIGTERM under load. Every loop here is bounded and stops by itself; everything is on loopback.
#![cfg(unix)]

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::process::ServerProcess;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

const RELOADS: &str = "fargate_webhook_reloads_total";
const BODIES_REFUSED: &str = "fargate_webhook_request_bodies_refused_total";
const MIB: usize = 1024 * 1024;

fn roots(layout: &Layout) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for pem in &layout.trusted_cas {
        roots.add(first_cert_der(pem)).unwrap();
    }
    roots
}

/// GET on a plain-HTTP port with a fresh connection: the status line and the body.
async fn plain_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).await?;
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

async fn scrape(ops: SocketAddr) -> String {
    plain_get(ops, "/metrics").await.expect("scrape").1
}

/// One good review over a fresh HTTP/2 connection, answered 200 and mutated.
async fn admitted(addr: SocketAddr, layout: &Layout) {
    let tls = tls_connect(addr, roots(layout), &[b"h2"]).await.unwrap();
    let mut client = Client::h2(tls, addr).await;
    let answer = client.admit(&review()).await;
    assert!(answer.patch().is_some(), "the fixture pod is mutated");
}

/// How a stalled client's connection ended: how long after its headers, and the status the
/// server answered (0 when the connection closed before an answer could be read).
struct Ending {
    after_head: Duration,
    status: u16,
}

/// Read until the server closes (EOF or reset), at most `cap`; the answer's status if one came.
async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    head_sent: Instant,
    cap: Duration,
) -> Ending {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(cap, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server left a stalled connection open for {cap:?}"
    );
    let status = std::str::from_utf8(&got)
        .ok()
        .and_then(|t| t.get(9..12))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ending {
        after_head: head_sent.elapsed(),
        status,
    }
}

/// Send the headers of an 8 MiB review and all but its last byte, then stall.
async fn stall_webhook_body(addr: SocketAddr, roots: rustls::RootCertStore) -> Ending {
    let mut tls = tls_connect(addr, roots, &[b"http/1.1"]).await.unwrap();
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        8 * MIB
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let head_sent = Instant::now();
    let chunk = vec![b' '; 64 * 1024];
    let mut left = 8 * MIB - 1;
    while left > 0 {
        let n = left.min(chunk.len());
        // A server that refused the body closes the connection: stop writing.
        if tls.write_all(&chunk[..n]).await.is_err() {
            break;
        }
        left -= n;
    }
    let _ = tls.flush().await;
    read_until_closed(&mut tls, head_sent, Duration::from_secs(15)).await
}

/// A chunked body that trickles forever: 1 KiB every 100 ms.
async fn trickle_api_body(addr: SocketAddr) -> Ending {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "POST /clusters/fargate/fargate-profiles HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    tcp.write_all(head.as_bytes()).await.unwrap();
    let head_sent = Instant::now();
    let (mut reader, mut writer) = tcp.into_split();
    let trickle = tokio::spawn(async move {
        let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
        for _ in 0..150 {
            if writer.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let ending = read_until_closed(&mut reader, head_sent, Duration::from_secs(15)).await;
    trickle.abort();
    ending
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_endless_bodies_are_cut_at_the_deadline_and_memory_comes_back() {
    let layout = Layout::standard();
    let body_timeout = Duration::from_secs(2);
    let server = ServerProcess::spawn(
        &layout.state_dir,
        &layout.tls_cert,
        &layout.tls_key,
        &["--body-timeout", "2s"],
    );
    for _ in 0..20 {
        admitted(server.webhook, &layout).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = server.rss_kib();

    // 40 clients stall 8 MiB reviews on the webhook port, 10 trickle endless chunked bodies to the
    // API port (the same serving code).
    let mut stalled = Vec::new();
    for _ in 0..40 {
        stalled.push(tokio::spawn(stall_webhook_body(
            server.webhook,
            roots(&layout),
        )));
    }
    let mut trickled = Vec::new();
    for _ in 0..10 {
        trickled.push(tokio::spawn(trickle_api_body(server.api)));
    }
    let mut peak = baseline;
    let sampling = Instant::now();
    while sampling.elapsed() < body_timeout {
        peak = peak.max(server.rss_kib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for task in stalled.into_iter().chain(trickled) {
        let ending = task.await.unwrap();
        assert!(
            ending.after_head < body_timeout + Duration::from_secs(5),
            "closed {:?} after the headers",
            ending.after_head
        );
        *statuses.entry(ending.status).or_default() += 1;
    }
    // Every body was refused (the buffer budget or the deadline), each one counted.
    for status in statuses.keys() {
        assert!(
            [0, 408, 503].contains(status),
            "unexpected answers: {statuses:?}"
        );
    }
    let metrics = scrape(server.ops).await;
    let refused = |port: &str, reason: &str| {
        metric_value(
            &metrics,
            BODIES_REFUSED,
            &[("port", port), ("reason", reason)],
        )
    };
    assert_eq!(
        refused("webhook", "timeout") + refused("webhook", "buffer_full"),
        40.0,
        "{statuses:?}"
    );
    assert_eq!(
        refused("api", "timeout"),
        10.0,
        "trickled bodies end at the deadline"
    );

    // Memory: bounded during (the port's 64 MiB body buffer), and it comes back after.
    admitted(server.webhook, &layout).await;
    let mut after = server.rss_kib();
    let settling = Instant::now();
    while after > baseline + 16 * 1024 && settling.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = server.rss_kib();
    }
    eprintln!(
        "RSS: baseline {} MiB, peak {} MiB, after {} MiB ({:?} to settle); answers {statuses:?}",
        baseline / 1024,
        peak / 1024,
        after / 1024,
        settling.elapsed()
    );
    assert!(
        peak < baseline + 200 * 1024,
        "peak {peak} KiB from a baseline of {baseline} KiB"
    );
    assert!(
        after <= baseline + 16 * 1024,
        "RSS {after} KiB after the abuse, baseline {baseline} KiB"
    );
    admitted(server.webhook, &layout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_port_closes_new_connections_and_recovers() {
    let server = TestServer::start_with(Layout::standard(), &["--max-connections", "4"]).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(server.h2().await);
    }
    eventually("4 open connections are counted", POLL_CAP, || async {
        (server
            .metric("fargate_webhook_open_connections", &[("port", "webhook")])
            .await
            == 4.0)
            .then_some(())
    })
    .await;
    // The fifth is closed before the handshake completes.
    let refused = server.tls(&[b"h2"]).await;
    assert!(refused.is_err(), "a connection over the cap is refused");
    assert_eq!(
        server
            .metric(
                "fargate_webhook_connections_refused_total",
                &[("port", "webhook")]
            )
            .await,
        1.0
    );
    // The held ones still work; closing one makes room.
    let mut first = held.remove(0);
    first.admit(&review()).await;
    drop(first);
    let (mut client, _) = poll_every(
        "a connection is accepted once one closed",
        POLL_CAP,
        Duration::from_millis(50),
        || async {
            match server.tls(&[b"h2"]).await {
                Ok(tls) => Ok(Client::h2(tls, server.webhook_addr).await),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    client.admit(&review()).await;
    // The ops port has its own cap: scrapes still work while the webhook port is full.
    assert!(
        server
            .metrics_text()
            .await
            .contains("fargate_webhook_open_connections")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_but_slow_requests_are_not() {
    let server = TestServer::start_with(
        Layout::standard(),
        &["--idle-timeout", "1s", "--body-timeout", "5s"],
    )
    .await;
    let mut idle = server.h2().await;
    idle.admit(&review()).await;
    let started = Instant::now();
    until(
        "the idle HTTP/2 connection is closed",
        Duration::from_secs(5),
        || idle.is_closed(),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed after {took:?}, before the idle timeout"
    );

    // A request in flight longer than the idle timeout keeps its connection.
    let mut busy = server.h2().await;
    let (tx, body) = channel_body();
    let review_bytes = serde_json::to_vec(&review()).unwrap();
    let (first, rest) = review_bytes.split_at(review_bytes.len() / 2);
    let (first, rest) = (
        bytes::Bytes::copy_from_slice(first),
        bytes::Bytes::copy_from_slice(rest),
    );
    let sending = tokio::spawn(async move {
        tx.send(first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        tx.send(rest).await.unwrap();
    });
    let req = busy
        .builder(hyper::Method::POST, "/mutate")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap();
    let reply = busy.send(req).await.expect("the slow request is answered");
    sending.await.unwrap();
    assert_eq!(reply.status, hyper::StatusCode::OK, "{}", reply.text());
    // And the connection then goes idle and is closed too.
    until(
        "the connection closes once idle",
        Duration::from_secs(5),
        || busy.is_closed(),
    )
    .await;
}

/// Serial of the certificate a new connection is served.
async fn served_serial(server: &TestServer) -> Vec<u8> {
    serial(&server.served_leaf().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_not_yet_valid_certificates_are_never_served() {
    let mut server = TestServer::start().await;
    let good = serial(&first_cert_der(&server.layout.cert_pem));
    assert_eq!(served_serial(&server).await, good);
    let failed = [("source", "certificate"), ("result", "failed")];
    let bad_pairs = [
        ("expired", generate_certs_between(-10 * 86_400, -86_400)),
        ("not yet valid", generate_certs_between(86_400, 30 * 86_400)),
    ];
    for (what, pair) in &bad_pairs {
        server.layout.trust(pair);
        let before = server.metric(RELOADS, &failed).await;
        write_atomic(&server.layout.tls_key, pair.key_pem.as_bytes());
        write_atomic(&server.layout.tls_cert, pair.cert_pem.as_bytes());
        eventually(
            &format!("the {what} certificate is refused"),
            POLL_CAP,
            || async { (server.metric(RELOADS, &failed).await > before).then_some(()) },
        )
        .await;
        assert_eq!(
            served_serial(&server).await,
            good,
            "{what}: the old one is served"
        );
        admitted(server.webhook_addr, &server.layout).await;
    }
    // A good pair after them is taken.
    let next = generate_certs(30);
    server.layout.trust(&next);
    write_atomic(&server.layout.tls_key, next.key_pem.as_bytes());
    write_atomic(&server.layout.tls_cert, next.cert_pem.as_bytes());
    let next_serial = serial(&first_cert_der(&next.cert_pem));
    eventually("the valid pair is served", POLL_CAP, || async {
        (served_serial(&server).await == next_serial).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_in_a_secret_volume_swap_is_refused() {
    let mut layout = Layout::empty();
    layout.write_profiles(&default_profiles());
    let first = generate_certs(30);
    let publish = |dir: &std::path::Path, pair: &fargate_webhook::certs::Generated| {
        kube_volume_publish(
            dir,
            &[
                ("ca.crt", pair.ca_pem.as_bytes()),
                ("tls.crt", pair.cert_pem.as_bytes()),
                ("tls.key", pair.key_pem.as_bytes()),
            ],
        )
    };
    publish(&layout.cert_dir, &first);
    layout.trust(&first);
    let mut server = TestServer::start_with(layout, &[]).await;
    let good = serial(&first_cert_der(&first.cert_pem));
    for pair in [
        generate_certs_between(-10 * 86_400, -60),
        generate_certs_between(3600, 86_400),
    ] {
        server.layout.trust(&pair);
        let failed = [("source", "certificate"), ("result", "failed")];
        let before = server.metric(RELOADS, &failed).await;
        publish(&server.layout.cert_dir, &pair);
        eventually("the swapped-in pair is refused", POLL_CAP, || async {
            (server.metric(RELOADS, &failed).await > before).then_some(())
        })
        .await;
        assert_eq!(served_serial(&server).await, good);
    }
}

#[test]
fn an_expired_certificate_at_start_is_a_clear_error() {
    let mut layout = Layout::empty();
    layout.write_profiles(&default_profiles());
    layout.install_certs(&generate_certs_between(-10 * 86_400, -86_400));
    let output = support::process::serve_command(
        &support::process::binary(),
        &layout.state_dir,
        &layout.tls_cert,
        &layout.tls_key,
    )
    .args([
        "--webhook-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
    ])
    .args(["--api-addr", "127.0.0.1:0"])
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("loading the serving certificate") && stderr.contains("expired at"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_close_to_expiry_raises_the_warning_metric() {
    let expiring = "fargate_webhook_certificate_expiring";
    let fresh = TestServer::start().await;
    assert_eq!(
        fresh.metric(expiring, &[]).await,
        0.0,
        "30 days left, 14 d window"
    );
    let mut layout = Layout::empty();
    layout.write_profiles(&default_profiles());
    layout.install_certs(&generate_certs(2));
    let soon = TestServer::start_with(layout, &[]).await;
    assert_eq!(soon.metric(expiring, &[]).await, 1.0, "2 days left");
    let mut layout = Layout::empty();
    layout.write_profiles(&default_profiles());
    layout.install_certs(&generate_certs(2));
    let narrow = TestServer::start_with(layout, &["--cert-expiry-warning", "1d"]).await;
    assert_eq!(
        narrow.metric(expiring, &[]).await,
        0.0,
        "2 days left, 1 d window"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broken_profiles_write_is_one_failed_reload() {
    let server = TestServer::start().await;
    let failed = [("source", "profiles"), ("result", "failed")];
    let ok = [("source", "profiles"), ("result", "ok")];
    let ok_before = server.metric(RELOADS, &ok).await;
    write_atomic(&server.layout.profiles_path(), b"{ this is not JSON");
    eventually("the broken write is refused", POLL_CAP, || async {
        (server.metric(RELOADS, &failed).await >= 1.0).then_some(())
    })
    .await;
    // The server reads the file as it serves; give a loop time to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    admitted(server.webhook_addr, &server.layout).await;
    assert_eq!(
        server.metric(RELOADS, &failed).await,
        1.0,
        "one write, one failure"
    );
    assert_eq!(
        server.metric(RELOADS, &ok).await,
        ok_before,
        "nothing else reloaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_state_directory_is_followed() {
    let server = TestServer::start().await;
    let moved = || review_with(|r| set_namespace(r, "moved"));
    assert!(
        server.admit(&moved()).await.patch().is_none(),
        "no profile selects `moved` yet"
    );
    let state = server.layout.state_dir.clone();
    let old = state.with_extension("old");
    std::fs::rename(&state, &old).unwrap();
    std::fs::create_dir(&state).unwrap();
    // The new directory's profiles send namespace `moved` to a new profile.
    let profiles = profiles_file(vec![
        ProfileBuilder::new("fp-moved").namespace("moved").json(),
    ]);
    server.layout.write_profiles(&profiles);
    let (_, took) = eventually(
        "the edit in the new directory is picked up",
        Duration::from_secs(5),
        || async {
            let answer = server.admit(&moved()).await;
            answer.patch().is_some().then_some(())
        },
    )
    .await;
    eprintln!("replaced directory followed after {took:?}");
}

/// Review load on one connection until `stop`: counts answers and failures.
async fn load(
    mut client: Client,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let body = serde_json::to_vec(&review()).unwrap();
    while !stop.load(Ordering::Acquire) {
        let req = client
            .builder(hyper::Method::POST, "/mutate")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(full(body.clone()))
            .unwrap();
        match client.send(req).await {
            Ok(reply) if reply.status == hyper::StatusCode::OK => {
                answered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(reply) => failures.lock().unwrap().push(format!("{}", reply.status)),
            Err(error) => {
                failures.lock().unwrap().push(error.to_string());
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_http1_and_http2_load_loses_nothing() {
    let layout = Layout::standard();
    let mut server = ServerProcess::spawn(
        &layout.state_dir,
        &layout.tls_cert,
        &layout.tls_key,
        &["--shutdown-delay", "2s", "--shutdown-timeout", "10s"],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for i in 0..8 {
        let alpn: &[u8] = if i % 2 == 0 { b"http/1.1" } else { b"h2" };
        let tls = tls_connect(server.webhook, roots(&layout), &[alpn])
            .await
            .unwrap();
        let client = if i % 2 == 0 {
            Client::h1(tls, server.webhook).await
        } else {
            Client::h2(tls, server.webhook).await
        };
        clients.push(tokio::spawn(load(
            client,
            Arc::clone(&stop),
            Arc::clone(&answered),
            Arc::clone(&failures),
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_term = answered.load(Ordering::Relaxed);
    assert!(before_term > 0, "the load runs");
    server.signal("TERM");
    // The endpoint controller sees /readyz fail; the apiserver stops sending a moment later.
    let (_, took) = poll_every(
        "/readyz answers 503 after SIGTERM",
        Duration::from_secs(2),
        Duration::from_millis(20),
        || async {
            match plain_get(server.ops, "/readyz").await {
                Ok((503, body)) if body.contains("shutting down") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    eprintln!("/readyz failed {took:?} after SIGTERM");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let during_delay = answered.load(Ordering::Relaxed) - before_term;
    stop.store(true, Ordering::Release);
    for client in clients {
        client.await.unwrap();
    }
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(during_delay > 0, "requests were answered after SIGTERM");
    eprintln!(
        "{} reviews answered, {during_delay} of them after SIGTERM, none failed",
        answered.load(Ordering::Relaxed)
    );
}
