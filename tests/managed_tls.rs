//! The managed TLS mode (`serve --tls-secret`) against the fake API server: the holder creates the
//! Secret and sets the caBundle, a standby only reads, a rotation goes through the CA without a
//! moment where the certificate served is not trusted by the caBundle, stale writes lose and the next
//! sync recovers, and a Secret that is not ours is left alone.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use base64::Engine as _;
use fargate_webhook::managed_tls::plan::{LeafReason, Plan, Policy};
use fargate_webhook::managed_tls::{ANNOTATION, Manager, Options, Synced};
use fargate_webhook::metrics::Metrics;
use fargate_webhook::server::tls::{self, CertReloader};
use http::Method;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::fake_kube::{Fake, NAMESPACE};
use support::fake_tls::CONFIGS;
use tokio_rustls::rustls;

const SECRET: &str = "fargate-webhook-tls";
const CONFIG: &str = "0500-fargate-webhook";

fn policy() -> Policy {
    Policy {
        ca_validity: 3000,
        cert_validity: 1000,
        names: ["127.0.0.1", "fargate-webhook.fargate-system.svc"]
            .into_iter()
            .map(String::from)
            .collect(),
    }
}

/// The configuration as the chart renders it in the managed mode: no caBundle. Two webhooks, so
/// that every one is seen to be patched, and a field this program does not know, which a patch must
/// keep.
fn chart_config() -> Value {
    let hook = |name: &str| {
        json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "clientConfig": {"service": {"name": "fargate-webhook", "namespace": NAMESPACE, "path": "/mutate", "port": 443}},
            "aFieldOfANewerKubernetes": {"kept": true},
        })
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIG},
        "webhooks": [hook("a.fargate-webhook.io"), hook("b.fargate-webhook.io")],
    })
}

fn fake_with_config() -> Arc<Fake> {
    let fake = Fake::new();
    fake.with(|s| s.tls.put_config(chart_config(), &mut s.version));
    fake
}

struct Replica {
    manager: Manager,
    certs: Arc<CertReloader>,
}

fn replica(fake: &Arc<Fake>, name: &str) -> Replica {
    let certs = CertReloader::empty("test", Duration::from_secs(60), Arc::new(Metrics::new()));
    let options = Options {
        namespace: NAMESPACE.into(),
        secret: SECRET.into(),
        webhook_configuration: CONFIG.into(),
        policy: policy(),
        sync_interval: Duration::from_secs(1),
    };
    Replica {
        manager: Manager::new(fake.client_named(name), options, Arc::clone(&certs)),
        certs,
    }
}

fn secret_data(fake: &Fake, key: &str) -> String {
    fake.with(|s| {
        let b64 = s.tls.secrets[SECRET]["data"][key]
            .as_str()
            .unwrap()
            .to_owned();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    })
}

/// The caBundle of each webhook of the configuration, decoded ("" when absent).
fn bundles(fake: &Fake) -> Vec<String> {
    fake.with(|s| {
        s.tls.configs[CONFIG]["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hook| {
                hook["clientConfig"]["caBundle"]
                    .as_str()
                    .map_or_else(String::new, |b| {
                        String::from_utf8(
                            base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
                        )
                        .unwrap()
                    })
            })
            .collect()
    })
}

fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(Result::unwrap)
        .collect()
}

/// The requests of `client` that write.
fn writes(fake: &Fake, client: &str) -> Vec<(Method, String)> {
    fake.log()
        .into_iter()
        .filter(|l| l.client == client && l.method != Method::GET)
        .map(|l| (l.method, l.path))
        .collect()
}

/// Serve `certs` on loopback; each connection completes its handshake and is dropped.
async fn serve_tls(certs: &Arc<CertReloader>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(Arc::clone(certs)));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    addr
}

/// A handshake trusting `bundle` (PEM) only; the certificate served.
async fn handshake(addr: std::net::SocketAddr, bundle: &str) -> std::io::Result<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for der in ders(bundle) {
        roots.add(der).unwrap();
    }
    let stream = support::tls_connect(addr, roots, &[b"http/1.1"]).await?;
    Ok(stream.get_ref().1.peer_certificates().unwrap()[0].to_vec())
}

#[tokio::test]
async fn the_holder_creates_the_secret_and_sets_every_ca_bundle() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = fake_with_config();
    let holder = replica(&fake, "holder");
    assert!(
        !holder.certs.is_loaded(),
        "nothing to serve before the Secret"
    );
    let now = tls::unix_now();

    let synced = holder.manager.sync(true, now).await.unwrap();
    assert_eq!(
        synced,
        Synced {
            plan: Some(Plan::Create),
            wrote: true,
            patched: true
        }
    );
    let secret = fake.with(|s| s.tls.secrets[SECRET].clone());
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["metadata"]["annotations"][ANNOTATION], "true");
    for key in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
        assert!(!secret_data(&fake, key).is_empty(), "{key}");
    }
    let bundle = secret_data(&fake, "ca.crt");
    assert_eq!(bundles(&fake), vec![bundle.clone(), bundle.clone()]);
    let config = fake.with(|s| s.tls.configs[CONFIG].clone());
    assert_eq!(
        config["webhooks"][1]["aFieldOfANewerKubernetes"]["kept"], true,
        "the patch keeps what it does not know"
    );
    // The patch was conditional on the configuration read.
    let patch = fake
        .log()
        .into_iter()
        .find(|l| l.method == Method::PATCH)
        .unwrap();
    assert_eq!(patch.path, format!("{CONFIGS}/{CONFIG}"));
    assert!(patch.body["metadata"]["resourceVersion"].is_string());

    // It serves the Secret's certificate, which the caBundle trusts.
    assert!(holder.certs.is_loaded());
    let addr = serve_tls(&holder.certs).await;
    let served = handshake(addr, &bundle)
        .await
        .expect("trusted by the caBundle");
    assert_eq!(served, ders(&secret_data(&fake, "tls.crt"))[0].to_vec());

    // Nothing to do the second time: no write.
    fake.clear_log();
    let synced = holder.manager.sync(true, now + 10).await.unwrap();
    assert_eq!(synced.plan, Some(Plan::Keep));
    assert!(!synced.wrote && !synced.patched);
    assert!(writes(&fake, "holder").is_empty(), "{:?}", fake.log());
}

#[tokio::test]
async fn a_standby_reads_and_serves_but_never_writes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = fake_with_config();
    let standby = replica(&fake, "standby");
    let now = tls::unix_now();
    assert_eq!(
        standby.manager.sync(false, now).await.unwrap(),
        Synced::default()
    );
    assert!(!standby.certs.is_loaded(), "no Secret yet: nothing served");

    let holder = replica(&fake, "holder");
    holder.manager.sync(true, now).await.unwrap();
    standby.manager.sync(false, now).await.unwrap();
    assert!(standby.certs.is_loaded());
    assert_eq!(
        standby.certs.current().unwrap().cert,
        holder.certs.current().unwrap().cert,
        "both serve the Secret's certificate"
    );
    // Even with the caBundle gone (an upgrade that rewrote the configuration), a standby leaves it.
    fake.with(|s| s.tls.put_config(chart_config(), &mut s.version));
    standby.manager.sync(false, now).await.unwrap();
    assert!(writes(&fake, "standby").is_empty(), "{:?}", fake.log());
    assert_eq!(bundles(&fake), vec![String::new(), String::new()]);
    // The holder puts it back.
    let synced = holder.manager.sync(true, now).await.unwrap();
    assert_eq!(
        (synced.plan, synced.wrote, synced.patched),
        (Some(Plan::Keep), false, true)
    );
    assert_eq!(bundles(&fake)[0], secret_data(&fake, "ca.crt"));
}

/// Through a CA rotation at the times the plan chooses: after every sync the certificate each
/// replica serves is trusted by the caBundle the configuration held *before* the sync (the apiserver
/// may not have seen the new one yet), and a replica that starts in the middle (after the new CA,
/// before the certificate from it) serves a trusted certificate too.
#[tokio::test]
async fn a_rotation_goes_through_the_ca_without_an_untrusted_moment() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = fake_with_config();
    let holder = replica(&fake, "holder");
    let standby = replica(&fake, "standby");
    let (holder_addr, standby_addr) = (
        serve_tls(&holder.certs).await,
        serve_tls(&standby.certs).await,
    );
    let start = tls::unix_now();

    let step = |at: i64| {
        let (fake, holder, standby) = (&fake, &holder, &standby);
        async move {
            // What the apiserver trusts until it sees this sync's patch (at the first sync, nothing).
            let before = bundles(fake)[0].clone();
            let synced = holder.manager.sync(true, start + at).await.unwrap();
            standby.manager.sync(false, start + at).await.unwrap();
            let trusted = if before.is_empty() {
                bundles(fake)[0].clone()
            } else {
                before
            };
            for addr in [holder_addr, standby_addr] {
                handshake(addr, &trusted)
                    .await
                    .unwrap_or_else(|e| panic!("at +{at}s {synced:?}: not trusted: {e}"));
            }
            synced.plan.unwrap()
        }
    };
    assert_eq!(step(0).await, Plan::Create);
    let first_ca = secret_data(&fake, "ca.crt");
    let first_cert = secret_data(&fake, "tls.crt");
    assert_eq!(step(600).await, Plan::Keep);
    // The serving certificate's last third (1000 s, renewed 333 s before its end).
    assert_eq!(step(700).await, Plan::IssueLeaf(LeafReason::Renewal));
    assert_ne!(secret_data(&fake, "tls.crt"), first_cert);
    assert_eq!(secret_data(&fake, "ca.crt"), first_ca, "same CA");
    assert_eq!(step(1400).await, Plan::IssueLeaf(LeafReason::Renewal));
    // The CA's last third (3000 s, renewed 1000 s before its end): a new CA first, the old one
    // kept, the certificate in service untouched until the caBundle has the new CA.
    let before = secret_data(&fake, "tls.crt");
    assert_eq!(step(2050).await, Plan::RotateCa { leaf: false });
    let bundle = secret_data(&fake, "ca.crt");
    assert_eq!(ders(&bundle).len(), 2);
    assert_eq!(ders(&bundle)[1], ders(&first_ca)[0], "old CA second");
    assert_eq!(secret_data(&fake, "tls.crt"), before);
    assert_eq!(bundles(&fake), vec![bundle.clone(), bundle.clone()]);

    // A replica that starts now serves the certificate of the old CA, which the caBundle still has.
    let late = replica(&fake, "late");
    late.manager.sync(false, start + 2050).await.unwrap();
    let late_addr = serve_tls(&late.certs).await;
    handshake(late_addr, &bundles(&fake)[0])
        .await
        .expect("a late replica is trusted");

    // The configuration is put back as it was before the rotation (a restore, an upgrade racing the
    // patch): the next sync sets the caBundle again but issues nothing from the new CA yet.
    fake.with(|s| {
        let mut config = chart_config();
        let old = base64::engine::general_purpose::STANDARD.encode(&first_ca);
        for hook in config["webhooks"].as_array_mut().unwrap() {
            hook["clientConfig"]["caBundle"] = json!(old);
        }
        s.tls.put_config(config, &mut s.version)
    });
    assert_eq!(step(2051).await, Plan::AwaitTrust(LeafReason::NewCa));
    assert_eq!(secret_data(&fake, "tls.crt"), before);
    // Next sync: a certificate from the new CA.
    assert_eq!(step(2052).await, Plan::IssueLeaf(LeafReason::NewCa));
    let new_ca_only = tls_pem(&ders(&bundle)[0]);
    handshake(holder_addr, &new_ca_only)
        .await
        .expect("signed by the new CA");
    // The old CA expires at +3000: dropped then (after the certificate's own renewal).
    assert_eq!(step(2700).await, Plan::Keep);
    assert_eq!(step(3001).await, Plan::IssueLeaf(LeafReason::Renewal));
    assert_eq!(step(3001).await, Plan::Prune);
    assert_eq!(
        ders(&secret_data(&fake, "ca.crt")),
        vec![ders(&bundle)[0].clone()]
    );
    assert_eq!(step(3002).await, Plan::Keep);
    assert!(writes(&fake, "standby").is_empty() && writes(&fake, "late").is_empty());
}

fn tls_pem(der: &CertificateDer<'_>) -> String {
    fargate_webhook::managed_tls::pki::pem_of(der)
}

#[tokio::test]
async fn a_stale_write_loses_and_the_next_sync_recovers() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = fake_with_config();
    let holder = replica(&fake, "holder");
    let now = tls::unix_now();
    holder.manager.sync(true, now).await.unwrap();
    let first = secret_data(&fake, "tls.crt");
    // Another writer changes the Secret between this holder's read and its write (a Lease in
    // handover, or replicas of a file store): the write carries a resourceVersion that is no more.
    fake.with(|s| s.tls.touch_secret_before_next_put = true);
    let due = now + 700;
    let synced = holder.manager.sync(true, due).await.unwrap();
    assert_eq!(synced.plan, Some(Plan::IssueLeaf(LeafReason::Renewal)));
    assert!(!synced.wrote && !synced.patched, "{synced:?}");
    assert_eq!(secret_data(&fake, "tls.crt"), first, "the stale write lost");
    let refused = fake
        .log()
        .into_iter()
        .filter(|l| l.method == Method::PUT && l.status == 409)
        .count();
    assert_eq!(refused, 1);
    // The next sync reads again and writes.
    let synced = holder.manager.sync(true, due).await.unwrap();
    assert!(synced.wrote);
    assert_ne!(secret_data(&fake, "tls.crt"), first);
}

#[tokio::test]
async fn a_secret_that_is_not_ours_is_left_alone() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = fake_with_config();
    fake.with(|s| {
        s.tls.secrets.insert(
            SECRET.into(),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": SECRET, "namespace": NAMESPACE, "resourceVersion": "1"},
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": "", "tls.key": ""},
            }),
        )
    });
    let holder = replica(&fake, "holder");
    let synced = holder.manager.sync(true, tls::unix_now()).await.unwrap();
    assert_eq!(synced.plan, Some(Plan::Refuse));
    assert!(writes(&fake, "holder").is_empty(), "{:?}", fake.log());
    assert!(!holder.certs.is_loaded());
}

#[tokio::test]
async fn without_the_configuration_the_secret_is_still_made() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = Fake::new();
    let holder = replica(&fake, "holder");
    let now = tls::unix_now();
    let synced = holder.manager.sync(true, now).await.unwrap();
    assert_eq!(
        (synced.plan, synced.wrote, synced.patched),
        (Some(Plan::Create), true, false)
    );
    assert!(holder.certs.is_loaded());
    // The configuration appears (the chart applies it after the Deployment): the next sync sets it.
    fake.with(|s| s.tls.put_config(chart_config(), &mut s.version));
    let synced = holder.manager.sync(true, now).await.unwrap();
    assert!(synced.patched);
    assert_eq!(bundles(&fake)[1], secret_data(&fake, "ca.crt"));
}
