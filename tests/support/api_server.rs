//! The EKS Fargate-profile API alone, served by `server::http::serve` on an ephemeral port over
//! plain HTTP with a file store in a tempdir: what the `api_*` suites run against.

use super::client::{PlainClient, Reply, json_request, plain_client};
use super::fixtures::ProfileBuilder;
use arc_swap::ArcSwap;
use bytes::Bytes;
use fargate_webhook::api::{Api, ApiConfig};
use fargate_webhook::decision::{SharedSnapshot, Snapshot};
use fargate_webhook::metrics::Metrics;
use fargate_webhook::profile::Limits;
use fargate_webhook::server::http::{self as server_http, Port, PortLimits};
use fargate_webhook::store::ProfileStore;
use fargate_webhook::store::file::FileStore;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A subnet the API is told is public (`public_subnets` of [`api_config`]).
pub const PUBLIC_SUBNET: &str = "subnet-0000000000public";
/// The profiles of the cluster `fargate`.
pub const BASE: &str = "/clusters/fargate/fargate-profiles";

/// The API configuration of the tests: one public subnet, 300 ms create and delete delays.
pub fn api_config() -> ApiConfig {
    ApiConfig {
        public_subnets: vec![PUBLIC_SUBNET.into()],
        create_delay: Duration::from_millis(300),
        delete_delay: Duration::from_millis(300),
        ..ApiConfig::default()
    }
}

/// The smallest valid create request: `name`, the role [`ROLE`](super::fixtures::ROLE) and one
/// selector for the namespace `default`.
pub fn api_profile(name: &str) -> Value {
    ProfileBuilder::new(name).namespace("default").json()
}

/// A state directory that starts without the example profile.
pub fn empty_state() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("profiles.json"),
        r#"{"fargateProfiles": []}"#,
    )
    .unwrap();
    dir
}

/// A file store over `dir` with default limits, a fresh snapshot and fresh metrics.
pub fn open_file_store(dir: &Path) -> (Arc<FileStore>, Arc<Metrics>) {
    let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let metrics = Arc::new(Metrics::new());
    let store = FileStore::open(dir, Limits::default(), snapshot, metrics.clone()).unwrap();
    (store, metrics)
}

/// The API on 127.0.0.1 with its store, snapshot and metrics at hand.
pub struct ApiServer {
    pub addr: SocketAddr,
    pub store: Arc<FileStore>,
    pub snapshot: SharedSnapshot,
    pub metrics: Arc<Metrics>,
    client: PlainClient,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A decoded API answer: status, headers and the JSON body (`Null` when empty).
pub struct ApiAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl ApiAnswer {
    pub fn error_type(&self) -> &str {
        self.headers
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.json["message"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str, message: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.json);
        assert_eq!(self.error_type(), code, "{}", self.json);
        assert_eq!(self.message(), message, "{}", self.json);
        assert_eq!(
            self.headers.get("content-type").unwrap(),
            "application/json"
        );
        assert!(self.headers.contains_key("x-amzn-RequestId"));
    }

    #[track_caller]
    pub fn expect_ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.json);
        assert!(self.headers.get("x-amzn-ErrorType").is_none());
        assert!(self.headers.contains_key("x-amzn-RequestId"));
        assert_eq!(
            self.headers.get("content-type").unwrap(),
            "application/json"
        );
        &self.json
    }
}

impl ApiServer {
    /// The API over a file store in `dir` (its lifecycle resumed, as `serve` does).
    pub async fn start(dir: &Path, args: ApiConfig) -> ApiServer {
        let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
        let metrics = Arc::new(Metrics::new());
        let store = FileStore::open(dir, args.limits(), snapshot.clone(), metrics.clone()).unwrap();
        let api = Api::new(
            &args,
            store.clone() as Arc<dyn ProfileStore>,
            metrics.clone(),
        )
        .unwrap();
        let shutdown = CancellationToken::new();
        api.resume_lifecycle(fargate_webhook::claim::Claim::local(&shutdown));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(server_http::serve(
            listener,
            None,
            api.handler(),
            shutdown.clone(),
            PortLimits::default(),
            Port {
                name: "api",
                metrics: metrics.clone(),
            },
        ));
        ApiServer {
            addr,
            store,
            snapshot,
            metrics,
            client: plain_client(),
            shutdown,
            task: Some(task),
        }
    }

    /// Stop the server and wait until it has drained.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> ApiAnswer {
        let response = self.client.request(req).await.expect("the server answers");
        let reply = Reply::read(response).await.unwrap();
        let json = if reply.body.is_empty() {
            Value::Null
        } else {
            reply.json()
        };
        ApiAnswer {
            status: reply.status,
            headers: reply.headers,
            json,
        }
    }

    /// A request for `path` on this server (see [`json_request`]).
    pub fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Request<Full<Bytes>> {
        json_request(method, &format!("http://{}{path}", self.addr), body)
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> ApiAnswer {
        self.send(self.request(method, path, body)).await
    }

    pub async fn create(&self, body: &Value) -> ApiAnswer {
        self.call(Method::POST, BASE, Some(body)).await
    }

    pub async fn describe(&self, name: &str) -> ApiAnswer {
        self.call(Method::GET, &format!("{BASE}/{name}"), None)
            .await
    }

    pub async fn delete(&self, name: &str) -> ApiAnswer {
        self.call(Method::DELETE, &format!("{BASE}/{name}"), None)
            .await
    }

    pub async fn list(&self, query: &str) -> ApiAnswer {
        self.call(Method::GET, &format!("{BASE}{query}"), None)
            .await
    }

    /// Poll DescribeFargateProfile (every 50 ms, up to 10 s) until `name` has `status`.
    pub async fn wait_status(&self, name: &str, status: &str) {
        super::wait::poll_every(
            &format!("{name} never became {status}"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async {
                let answer = self.describe(name).await;
                if answer.json["fargateProfile"]["status"] == status {
                    Ok(())
                } else {
                    Err(answer.json.to_string())
                }
            },
        )
        .await;
    }

    /// Poll DescribeFargateProfile (every 50 ms, up to 10 s) until `name` is not found.
    pub async fn wait_gone(&self, name: &str) {
        super::wait::poll_every(
            &format!("{name} was never removed"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async {
                match self.describe(name).await.status {
                    StatusCode::NOT_FOUND => Ok(()),
                    _ => Err(String::new()),
                }
            },
        )
        .await;
    }

    /// `fargate_webhook_api_requests_total{operation, code}`.
    pub fn api_count(&self, operation: &str, code: &str) -> u64 {
        self.metrics
            .api_requests
            .with_label_values(&[operation, code])
            .get()
    }
}
