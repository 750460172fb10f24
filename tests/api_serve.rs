//! How the API is served: graceful shutdown, HTTP/2 with prior knowledge, behind a TLS acceptor,
//! in process without a listener, and the configuration it refuses.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use bytes::Bytes;
use fargate_webhook::api::{Api, ApiConfig};
use fargate_webhook::metrics::Metrics;
use fargate_webhook::server::http::{self as server_http, Port, PortLimits};
use fargate_webhook::store::ProfileStore;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::Duration;
use support::api_server::*;
use support::{
    Client, SUBNET_A, empty, first_cert_der, generate_certs, plain_h2_client, tls_connect,
};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_drains_and_stops_accepting() {
    let dir = empty_state();
    let server = ApiServer::start(dir.path(), api_config()).await;
    let addr = server.addr;
    server.list("").await.expect_ok();
    server.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_prior_knowledge_is_served_too() {
    let dir = empty_state();
    let server = ApiServer::start(dir.path(), api_config()).await;
    let h2 = plain_h2_client();
    let response = h2
        .request(server.request(Method::GET, BASE, None))
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-amzn-RequestId"));
    drop(h2);
    server.stop().await;
}

/// `--api-tls`: the API behind the shared TLS server, spoken to over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_with_a_tls_acceptor() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = empty_state();
    let generated = generate_certs(30);
    let key = PrivateKeyDer::from_pem_slice(generated.key_pem.as_bytes()).unwrap();
    let server_config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![first_cert_der(&generated.cert_pem)], key)
        .unwrap();

    let (store, metrics) = open_file_store(dir.path());
    let api = Api::new(&api_config(), store, metrics).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server_http::serve(
        listener,
        Some(Arc::new(server_config)),
        api.handler(),
        shutdown.clone(),
        PortLimits::default(),
        Port {
            name: "api",
            metrics: Arc::new(fargate_webhook::metrics::Metrics::new()),
        },
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(first_cert_der(&generated.ca_pem)).unwrap();
    let tls = tls_connect(addr, roots, &[]).await.unwrap();
    let mut client = Client::h1(tls, addr).await;
    let reply = client.request(Method::GET, BASE, empty()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], br#"{"fargateProfileNames":[]}"#);
    drop(client);
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handle_in_process_with_a_bytes_body() {
    let dir = empty_state();
    let (store, metrics) = open_file_store(dir.path());
    let api = Api::new(&api_config(), store, metrics).unwrap();
    let req = Request::get(BASE).body(Full::new(Bytes::new())).unwrap();
    let response = api.handle(req).await;
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"fargateProfileNames":[]}"#);
}

#[test]
fn bad_arguments_are_refused() {
    let store = || {
        let dir = empty_state();
        let (s, _metrics) = open_file_store(dir.path());
        (dir, s as Arc<dyn ProfileStore>)
    };
    let m = Arc::new(Metrics::new());
    for bad in [
        ApiConfig {
            account_id: "123".into(),
            ..ApiConfig::default()
        },
        ApiConfig {
            cluster_name: "bad name".into(),
            ..ApiConfig::default()
        },
        ApiConfig {
            region: "".into(),
            ..ApiConfig::default()
        },
        ApiConfig {
            public_subnets: vec![SUBNET_A.into()],
            ..ApiConfig::default()
        },
        ApiConfig {
            max_profiles: 0,
            ..ApiConfig::default()
        },
        ApiConfig {
            sigv4_keys: vec!["no-colon".into()],
            ..ApiConfig::default()
        },
        ApiConfig {
            sigv4_credentials: Some("/nonexistent/creds".into()),
            ..ApiConfig::default()
        },
    ] {
        let (_dir, s) = store();
        assert!(Api::new(&bad, s, m.clone()).is_err(), "{bad:?}");
    }
}

/// A store that never answers a write (an etcd stall, an unreachable apiserver).
struct Stalled;

impl ProfileStore for Stalled {
    fn current(&self) -> Arc<fargate_webhook::profile::ProfileState> {
        Arc::default()
    }
    fn update<'a>(
        &'a self,
        _change: fargate_webhook::store::Change<'a>,
    ) -> fargate_webhook::store::BoxFuture<
        'a,
        Result<fargate_webhook::store::Updated, fargate_webhook::store::UpdateError>,
    > {
        Box::pin(std::future::pending())
    }
    fn is_loaded(&self) -> bool {
        true
    }
    fn wait_loaded(&self) -> fargate_webhook::store::BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        tokio::sync::watch::channel(0).1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_store_answers_a_retryable_error_at_the_deadline() {
    let config = ApiConfig {
        request_deadline: Duration::from_millis(300),
        ..ApiConfig::default()
    };
    let api = Api::new(&config, Arc::new(Stalled), Arc::new(Metrics::new())).unwrap();
    let body = serde_json::json!({
        "fargateProfileName": "stalled",
        "podExecutionRoleArn": support::fake_kube::ROLE,
        "selectors": [{"namespace": "apps"}],
    });
    let req = Request::builder()
        .method(Method::POST)
        .uri(BASE)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let started = std::time::Instant::now();
    let response = api.handle(req).await;
    let waited = started.elapsed();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["x-amzn-ErrorType"],
        "ServiceUnavailableException"
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("did not complete within 0.3 s"),
        "{json}"
    );
}
