//! Hot reload: certificate rotation (including a Secret volume's `..data` symlink swap) and profile
//! reload (a ConfigMap's symlink swap, a file replaced in place, bad files ignored).

use hyper::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

use super::support::{
    DEFAULT_PROFILE, Layout, POLL_CAP, ProfileBuilder, TestServer, default_profile,
    default_profiles, eventually, first_cert_der, generate_certs, kube_volume_publish, not_after,
    profiles_file, serial, write_atomic,
};
use super::{RELOADS, good_request_still_works, mutated_to};

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
