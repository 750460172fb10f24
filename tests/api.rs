//! The EKS Fargate-profile API over real HTTP: every operation, rule and error of
//! `eks-api-contract.md`, against the API served by `server::http::serve` on an ephemeral port with a file store in a tempdir.

use arc_swap::ArcSwap;
use bytes::Bytes;
use fargate_webhook::api::{self, Api, ApiConfig};
use fargate_webhook::decision::{SharedSnapshot, Snapshot};
use fargate_webhook::ops::metrics::Metrics;
use fargate_webhook::profile::{Limits, ProfileStatus};
use fargate_webhook::server::http::{self as server_http, Timeouts};
use fargate_webhook::store::ProfileStore;
use fargate_webhook::store::file::FileStore;
use hmac::{KeyInit, Mac};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sha2::Digest;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const ROLE: &str = "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole";
const SUBNET_A: &str = "subnet-0420a37ee456daf3f";
const SUBNET_B: &str = "subnet-09a8afb8db4f02d21";
const PUBLIC_SUBNET: &str = "subnet-0000000000public";
const BASE: &str = "/clusters/fargate/fargate-profiles";

struct Server {
    addr: SocketAddr,
    store: Arc<FileStore>,
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
    client: Client<HttpConnector, Full<Bytes>>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

impl Answer {
    fn error_type(&self) -> &str {
        self.headers
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn message(&self) -> &str {
        self.json["message"].as_str().unwrap_or("")
    }

    #[track_caller]
    fn expect_error(&self, status: u16, code: &str, message: &str) {
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
    fn expect_ok(&self) -> &Value {
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

fn args() -> ApiConfig {
    ApiConfig {
        public_subnets: vec![PUBLIC_SUBNET.into()],
        create_delay: Duration::from_millis(300),
        delete_delay: Duration::from_millis(300),
        ..ApiConfig::default()
    }
}

/// A state directory that starts without the example profile.
fn empty_state() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("profiles.json"),
        r#"{"fargateProfiles": []}"#,
    )
    .unwrap();
    dir
}

impl Server {
    async fn start(dir: &Path, args: ApiConfig) -> Server {
        let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
        let metrics = Arc::new(Metrics::new());
        let store = FileStore::open(dir, args.limits(), snapshot.clone(), metrics.clone()).unwrap();
        let api = Api::new(
            &args,
            store.clone() as Arc<dyn ProfileStore>,
            metrics.clone(),
        )
        .unwrap();
        api.resume_lifecycle();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server_http::serve(
            listener,
            None,
            api.handler(),
            shutdown.clone(),
            Timeouts::default(),
        ));
        Server {
            addr,
            store,
            snapshot,
            metrics,
            client: Client::builder(TokioExecutor::new()).build_http(),
            shutdown,
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Answer {
        let response = self.client.request(req).await.expect("the server answers");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
        };
        Answer {
            status: parts.status,
            headers: parts.headers,
            json,
        }
    }

    fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Request<Full<Bytes>> {
        let body = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if !body.is_empty() {
            builder = builder.header("content-type", "application/x-amz-json-1.1");
        }
        builder.body(Full::new(Bytes::from(body))).unwrap()
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        self.send(self.request(method, path, body)).await
    }

    async fn create(&self, body: &Value) -> Answer {
        self.call(Method::POST, BASE, Some(body)).await
    }

    async fn describe(&self, name: &str) -> Answer {
        self.call(Method::GET, &format!("{BASE}/{name}"), None)
            .await
    }

    async fn delete(&self, name: &str) -> Answer {
        self.call(Method::DELETE, &format!("{BASE}/{name}"), None)
            .await
    }

    async fn list(&self, query: &str) -> Answer {
        self.call(Method::GET, &format!("{BASE}{query}"), None)
            .await
    }

    async fn wait_status(&self, name: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = self.describe(name).await;
            if answer.json["fargateProfile"]["status"] == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never became {status}: {}",
                answer.json
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_gone(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.describe(name).await.status != StatusCode::NOT_FOUND {
            assert!(Instant::now() < deadline, "{name} was never removed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn api_count(&self, operation: &str, code: &str) -> u64 {
        self.metrics
            .api_requests
            .with_label_values(&[operation, code])
            .get()
    }
}

fn profile(name: &str) -> Value {
    json!({
        "fargateProfileName": name,
        "podExecutionRoleArn": ROLE,
        "selectors": [{"namespace": "default"}],
    })
}

fn reference_example() -> Value {
    json!({
        "fargateProfileName": "default-with-infrastructure-label",
        "podExecutionRoleArn": ROLE,
        "subnets": [SUBNET_A, SUBNET_B],
        "selectors": [{"namespace": "default", "labels": {"infrastructure": "fargate"}}],
        "clientRequestToken": "e188d61d-73b7-493c-9cd8-e39f242957eb"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reference_example_lifecycle_and_webhook_snapshot() {
    let dir = empty_state();
    let server = Server::start(dir.path(), args()).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    let created = server.create(&reference_example()).await;
    let p = created.expect_ok()["fargateProfile"].clone();
    assert_eq!(p["fargateProfileName"], "default-with-infrastructure-label");
    assert_eq!(p["status"], "CREATING");
    assert_eq!(p["clusterName"], "fargate");
    assert_eq!(p["podExecutionRoleArn"], ROLE);
    assert_eq!(p["subnets"], json!([SUBNET_A, SUBNET_B]));
    assert_eq!(
        p["selectors"],
        json!([{"namespace": "default", "labels": {"infrastructure": "fargate"}}])
    );
    assert_eq!(p["tags"], json!({}));
    let arn = p["fargateProfileArn"].as_str().unwrap();
    let prefix = "arn:aws:eks:us-west-2:012345678910:fargateprofile/fargate/default-with-infrastructure-label/";
    assert!(arn.starts_with(prefix), "{arn}");
    assert!(uuid::Uuid::parse_str(&arn[prefix.len()..]).is_ok(), "{arn}");
    // createdAt: a JSON number of epoch seconds (not milliseconds).
    let created_at = p["createdAt"].as_f64().expect("createdAt is a number");
    assert!(p["createdAt"].is_f64());
    assert!(
        (created_at - before).abs() < 60.0,
        "{created_at} vs {before}"
    );

    // Right after the answer: CREATING in the store and in the webhook snapshot (never matched).
    let described = server.describe("default-with-infrastructure-label").await;
    assert!(matches!(
        described.expect_ok()["fargateProfile"]["status"].as_str(),
        Some("CREATING") | Some("ACTIVE")
    ));
    assert_eq!(described.json["fargateProfile"]["fargateProfileArn"], arn);

    // ACTIVE after the delay, and in the webhook's snapshot at the same moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = server.store.current();
        let stored = state
            .fargate_profiles
            .iter()
            .find(|p| p.fargate_profile_name == "default-with-infrastructure-label")
            .unwrap()
            .status;
        let snap = server.snapshot.load();
        let published = snap
            .get("default-with-infrastructure-label")
            .unwrap()
            .status();
        if stored == ProfileStatus::Active {
            assert_eq!(
                published,
                ProfileStatus::Active,
                "the snapshot lags the store"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never ACTIVE");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let described = server.describe("default-with-infrastructure-label").await;
    assert_eq!(described.expect_ok()["fargateProfile"]["status"], "ACTIVE");
    assert_eq!(
        described.json["fargateProfile"]["createdAt"],
        p["createdAt"]
    );

    let listed = server.list("").await;
    assert_eq!(
        listed.expect_ok(),
        &json!({"fargateProfileNames": ["default-with-infrastructure-label"]})
    );

    let deleted = server.delete("default-with-infrastructure-label").await;
    let d = &deleted.expect_ok()["fargateProfile"];
    assert_eq!(d["status"], "DELETING");
    assert_eq!(d["fargateProfileArn"], arn);
    assert_eq!(
        server
            .snapshot
            .load()
            .get("default-with-infrastructure-label")
            .unwrap()
            .status(),
        ProfileStatus::Deleting
    );
    server.wait_gone("default-with-infrastructure-label").await;
    assert!(
        server
            .snapshot
            .load()
            .get("default-with-infrastructure-label")
            .is_none()
    );
    server
        .describe("default-with-infrastructure-label")
        .await
        .expect_error(
            404,
            "ResourceNotFoundException",
            "No Fargate Profile found with name: default-with-infrastructure-label.",
        );
    assert_eq!(
        server.list("").await.json,
        json!({"fargateProfileNames": []})
    );
    assert_eq!(server.api_count("CreateFargateProfile", ""), 1);
    assert_eq!(
        server.api_count("DescribeFargateProfile", "ResourceNotFoundException"),
        2
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_validation_errors_have_the_eks_texts() {
    let dir = empty_state();
    let server = Server::start(dir.path(), args()).await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE}),
            "Fargate Profile requires at least one selector.",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": []}),
            "Fargate Profile requires at least one selector.",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": [{"labels": {"a": "b"}}]}),
            "Fargate Profile must have at least one selector with at least one namespace value.",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": ""}]}),
            "Fargate Profile must have at least one selector with at least one namespace value.",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE,
                   "selectors": (0..6).map(|i| json!({"namespace": format!("ns{i}")})).collect::<Vec<_>>()}),
            "Request contains more than 5 Selectors",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE,
                   "selectors": [{"namespace": "a", "labels": {"1":"a","2":"a","3":"a","4":"a","5":"a","6":"a"}}]}),
            "Request contains Selector with more than 5 Label pairs",
        ),
        (
            profile(&"x".repeat(101)),
            "The Fargate profile name parameter should not be greater than 100 characters.",
        ),
        (
            profile("eks-reserved"),
            "The fargate profile name starts with the reserved prefix: 'eks-'.",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "a"}],
                   "subnets": [SUBNET_A, PUBLIC_SUBNET]}),
            "Subnet subnet-0000000000public provided in Fargate Profile is not a private subnet",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "a"}],
                   "subnets": ["subnet-unknown"]}),
            "Subnet subnet-unknown provided in Fargate Profile is not a subnet of cluster fargate",
        ),
        (
            json!({"podExecutionRoleArn": ROLE, "selectors": [{"namespace": "a"}]}),
            "fargateProfileName is required.",
        ),
        (
            json!({"fargateProfileName": "p", "selectors": [{"namespace": "a"}]}),
            "podExecutionRoleArn is required.",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": "arn:aws:iam::12:role/x", "selectors": [{"namespace": "a"}]}),
            "Invalid podExecutionRoleArn: arn:aws:iam::12:role/x",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "a"}],
                   "tags": {"k".repeat(129): "v"}}),
            &*Box::leak(
                format!("Tag key '{}' must be 1 to 128 characters.", "k".repeat(129))
                    .into_boxed_str(),
            ),
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "a"}],
                   "tags": {"aws:x": "v"}}),
            "Tag key 'aws:x' uses the reserved prefix 'aws:'.",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "a"}],
                   "tags": (0..51).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "Tags may contain at most 50 entries.",
        ),
    ];
    for (body, message) in cases {
        let answer = server.create(&body).await;
        answer.expect_error(400, "InvalidParameterException", message);
        if let Some(name) = body["fargateProfileName"].as_str() {
            assert_eq!(answer.json["fargateProfileName"], name);
            assert_eq!(answer.json["clusterName"], "fargate");
        }
    }
    // Invalid names (character rules).
    for name in ["-lead", "a b", "a.b", "ümlaut"] {
        let answer = server.create(&profile(name)).await;
        assert_eq!(answer.status, 400, "{name}");
        assert_eq!(answer.error_type(), "InvalidParameterException");
    }
    // Bodies that are not JSON, or of the wrong shape.
    for raw in [
        "{",
        "[]",
        r#"{"fargateProfileName": 5}"#,
        r#"{"selectors": "default"}"#,
    ] {
        let req = Request::post(format!("http://{}{BASE}", server.addr))
            .body(Full::new(Bytes::from(raw)))
            .unwrap();
        let answer = server.send(req).await;
        assert_eq!(answer.status, 400, "{raw}");
        assert_eq!(answer.error_type(), "InvalidParameterException", "{raw}");
    }
    // Unknown members are ignored; a 100-character name is fine.
    let mut body = profile(&"n".repeat(100));
    body["unknownMember"] = json!(true);
    server.create(&body).await.expect_ok();
    // Nothing else was created.
    assert_eq!(
        server.list("").await.json["fargateProfileNames"],
        json!(["n".repeat(100)])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_cluster_profile_and_route() {
    let dir = empty_state();
    let server = Server::start(dir.path(), args()).await;
    let answer = server
        .call(
            Method::POST,
            "/clusters/other/fargate-profiles",
            Some(&profile("p")),
        )
        .await;
    answer.expect_error(
        404,
        "ResourceNotFoundException",
        "No cluster found for name: other.",
    );
    assert_eq!(answer.json["clusterName"], "other");
    server
        .call(Method::GET, "/clusters/other/fargate-profiles", None)
        .await
        .expect_error(
            404,
            "ResourceNotFoundException",
            "No cluster found for name: other.",
        );
    server
        .call(
            Method::GET,
            "/clusters/my%20cluster/fargate-profiles/p",
            None,
        )
        .await
        .expect_error(
            404,
            "ResourceNotFoundException",
            "No cluster found for name: my cluster.",
        );
    server
        .call(Method::DELETE, "/clusters/other/fargate-profiles/p", None)
        .await
        .expect_error(
            404,
            "ResourceNotFoundException",
            "No cluster found for name: other.",
        );
    let answer = server.describe("missing").await;
    answer.expect_error(
        404,
        "ResourceNotFoundException",
        "No Fargate Profile found with name: missing.",
    );
    assert_eq!(answer.json["fargateProfileName"], "missing");
    assert_eq!(answer.json["clusterName"], "fargate");
    server.delete("missing").await.expect_error(
        404,
        "ResourceNotFoundException",
        "No Fargate Profile found with name: missing.",
    );

    for (method, path) in [
        (Method::GET, "/"),
        (Method::PUT, BASE),
        (Method::GET, "/clusters/fargate"),
        (Method::POST, "/clusters/fargate/fargate-profiles/p"),
        (Method::GET, "/clusters/fargate/nodegroups"),
    ] {
        let answer = server.call(method.clone(), path, None).await;
        assert_eq!(answer.status, 404, "{method} {path}");
        assert_eq!(answer.error_type(), "UnknownOperationException");
        assert!(answer.message().contains(path), "{}", answer.json);
    }
    // Bad percent-encoding is a 400, not a 500.
    let answer = server.describe("%FF%FE").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_type(), "InvalidParameterException");
    assert_eq!(server.api_count("Unknown", "UnknownOperationException"), 5);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn percent_encoded_names() {
    let dir = empty_state();
    let server = Server::start(dir.path(), args()).await;
    server.create(&profile("my_profile-1")).await.expect_ok();
    let answer = server
        .call(Method::GET, &format!("{BASE}/my%5Fprofile%2D1"), None)
        .await;
    assert_eq!(
        answer.expect_ok()["fargateProfile"]["fargateProfileName"],
        "my_profile-1"
    );
    let answer = server
        .call(
            Method::GET,
            "/clusters/%66argate/fargate-profiles/my_profile-1",
            None,
        )
        .await;
    answer.expect_ok();
    // An encoded slash stays inside the name.
    server
        .call(Method::GET, &format!("{BASE}/a%2Fb"), None)
        .await
        .expect_error(
            404,
            "ResourceNotFoundException",
            "No Fargate Profile found with name: a/b.",
        );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_profile_creating_or_deleting_at_a_time() {
    let dir = empty_state();
    let server = Server::start(
        dir.path(),
        ApiConfig {
            create_delay: Duration::from_millis(700),
            delete_delay: Duration::from_millis(700),
            ..args()
        },
    )
    .await;
    server.create(&profile("first")).await.expect_ok();
    server.create(&profile("first")).await.expect_error(
        409,
        "ResourceInUseException",
        "A Fargate Profile already exists with this name in this cluster.",
    );
    server.create(&profile("second")).await.expect_error(
        409,
        "ResourceInUseException",
        "Cannot create Fargate Profile second because cluster fargate currently has Fargate profile first in status CREATING",
    );
    server.delete("first").await.expect_error(
        409,
        "ResourceInUseException",
        "Cannot Delete Fargate Profile first because cluster fargate currently has Fargate profile first in status CREATING",
    );
    server.wait_status("first", "ACTIVE").await;
    server.create(&profile("second")).await.expect_ok();
    server.wait_status("second", "ACTIVE").await;

    server.delete("first").await.expect_ok();
    server.create(&profile("third")).await.expect_error(
        409,
        "ResourceInUseException",
        "Cannot create Fargate Profile third because cluster fargate currently has Fargate profile first in status DELETING",
    );
    server.delete("second").await.expect_error(
        409,
        "ResourceInUseException",
        "Cannot Delete Fargate Profile second because cluster fargate currently has Fargate profile first in status DELETING",
    );
    server.wait_gone("first").await;
    server.create(&profile("third")).await.expect_ok();
    assert_eq!(
        server.api_count("CreateFargateProfile", "ResourceInUseException"),
        3
    );
    assert_eq!(
        server.api_count("DeleteFargateProfile", "ResourceInUseException"),
        2
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_is_configurable_and_counts_every_profile() {
    // The fresh state directory holds the example profile: it counts.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        ApiConfig {
            create_delay: Duration::ZERO,
            max_profiles: 3,
            ..args()
        },
    )
    .await;
    assert_eq!(
        server.list("").await.json["fargateProfileNames"],
        json!(["example"])
    );
    // A hand-written profile has a stable derived ARN and no createdAt.
    let example = server.describe("example").await.expect_ok()["fargateProfile"].clone();
    assert_eq!(example["status"], "ACTIVE");
    assert!(example.get("createdAt").is_none());
    assert!(
        example["fargateProfileArn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:eks:us-west-2:012345678910:fargateprofile/fargate/example/")
    );
    assert_eq!(
        server.describe("example").await.json["fargateProfile"]["fargateProfileArn"],
        example["fargateProfileArn"]
    );

    // Zero create delay: the answer says CREATING, the store already has it ACTIVE.
    let answer = server.create(&profile("one")).await;
    assert_eq!(answer.expect_ok()["fargateProfile"]["status"], "CREATING");
    assert_eq!(
        server.describe("one").await.json["fargateProfile"]["status"],
        "ACTIVE"
    );
    server.create(&profile("two")).await.expect_ok();
    let answer = server.create(&profile("three")).await;
    answer.expect_error(
        400,
        "ResourceLimitExceededException",
        "Fargate Profile limit exceeded for cluster.",
    );
    assert_eq!(answer.json["clusterName"], "fargate");
    // Selector and label quotas are configurable too.
    server.stop().await;
    let dir = empty_state();
    let server = Server::start(
        dir.path(),
        ApiConfig {
            max_selectors: 2,
            max_labels: 1,
            ..args()
        },
    )
    .await;
    let mut body = profile("p");
    body["selectors"] = json!([{"namespace": "a"}, {"namespace": "b"}, {"namespace": "c"}]);
    server.create(&body).await.expect_error(
        400,
        "InvalidParameterException",
        "Request contains more than 2 Selectors",
    );
    body["selectors"] = json!([{"namespace": "a", "labels": {"x": "1", "y": "2"}}]);
    server.create(&body).await.expect_error(
        400,
        "InvalidParameterException",
        "Request contains Selector with more than 1 Label pairs",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subnets_default_to_the_private_ones() {
    let dir = empty_state();
    let server = Server::start(dir.path(), args()).await;
    let answer = server.create(&profile("defaults")).await;
    assert_eq!(
        answer.expect_ok()["fargateProfile"]["subnets"],
        json!([SUBNET_A, SUBNET_B])
    );
    server.wait_status("defaults", "ACTIVE").await;
    let mut body = profile("one-subnet");
    body["subnets"] = json!([SUBNET_B]);
    body["tags"] = json!({"team": "a", "empty": ""});
    let answer = server.create(&body).await;
    let p = &answer.expect_ok()["fargateProfile"];
    assert_eq!(p["subnets"], json!([SUBNET_B]));
    assert_eq!(p["tags"], json!({"team": "a", "empty": ""}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_tokens() {
    let dir = empty_state();
    let fast = ApiConfig {
        create_delay: Duration::from_millis(200),
        delete_delay: Duration::from_millis(200),
        ..args()
    };
    let server = Server::start(dir.path(), fast.clone()).await;
    let mut body = profile("idem");
    body["clientRequestToken"] = json!("token-1");
    let first = server.create(&body).await;
    let arn = first.expect_ok()["fargateProfile"]["fargateProfileArn"].clone();
    // Same token, same request: the original profile, in its current state.
    let replay = server.create(&body).await;
    assert_eq!(
        replay.expect_ok()["fargateProfile"]["fargateProfileArn"],
        arn
    );
    server.wait_status("idem", "ACTIVE").await;
    let replay = server.create(&body).await;
    assert_eq!(replay.expect_ok()["fargateProfile"]["status"], "ACTIVE");
    assert_eq!(replay.json["fargateProfile"]["fargateProfileArn"], arn);
    // Same token, different request: 400, nothing created.
    let mut other = profile("idem-other");
    other["clientRequestToken"] = json!("token-1");
    let answer = server.create(&other).await;
    answer.expect_error(
        400,
        "InvalidParameterException",
        "The client request token token-1 was already used with a different request.",
    );
    let mut changed = body.clone();
    changed["tags"] = json!({"a": "b"});
    assert_eq!(server.create(&changed).await.status, 400);
    assert_eq!(
        server.list("").await.json["fargateProfileNames"],
        json!(["idem"])
    );
    // A new token with the same name is a duplicate.
    body["clientRequestToken"] = json!("token-2");
    assert_eq!(server.create(&body).await.status, 409);
    body["clientRequestToken"] = json!("token-1");

    // The token survives a restart (a reopened store).
    server.stop().await;
    let server = Server::start(dir.path(), fast.clone()).await;
    let replay = server.create(&body).await;
    assert_eq!(
        replay.expect_ok()["fargateProfile"]["fargateProfileArn"],
        arn
    );
    assert_eq!(server.create(&other).await.status, 400);

    // Once the profile is gone, its token is forgotten: the same request creates a new profile.
    server.delete("idem").await.expect_ok();
    // While DELETING the token still names it: a replay answers the profile as it is now.
    let replay = server.create(&body).await;
    assert_eq!(replay.expect_ok()["fargateProfile"]["status"], "DELETING");
    assert_eq!(replay.json["fargateProfile"]["fargateProfileArn"], arn);
    server.wait_gone("idem").await;
    assert!(server.store.current().client_request_tokens.is_empty());
    let again = server.create(&body).await;
    assert_ne!(
        again.expect_ok()["fargateProfile"]["fargateProfileArn"],
        arn
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_and_bad_tokens() {
    let dir = empty_state();
    let server = Server::start(
        dir.path(),
        ApiConfig {
            create_delay: Duration::ZERO,
            max_profiles: 20,
            ..args()
        },
    )
    .await;
    let names = ["e", "b", "a", "d", "c"];
    for name in names {
        server.create(&profile(name)).await.expect_ok();
    }
    let mut seen = Vec::new();
    let mut query = "?maxResults=2".to_string();
    let mut pages = 0;
    loop {
        let answer = server.list(&query).await;
        let page = answer.expect_ok();
        let chunk = page["fargateProfileNames"].as_array().unwrap();
        assert!(chunk.len() <= 2);
        seen.extend(chunk.iter().map(|v| v.as_str().unwrap().to_owned()));
        pages += 1;
        match page.get("nextToken") {
            Some(token) => {
                let token = token.as_str().unwrap();
                query = format!(
                    "?maxResults=2&nextToken={}",
                    percent_encoding::utf8_percent_encode(
                        token,
                        percent_encoding::NON_ALPHANUMERIC
                    )
                );
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    // Exactly filled last page: no nextToken.
    let answer = server.list("?maxResults=5").await;
    assert_eq!(
        answer.json,
        json!({"fargateProfileNames": ["a", "b", "c", "d", "e"]})
    );
    let answer = server.list("?maxResults=100").await;
    assert_eq!(
        answer.json["fargateProfileNames"].as_array().unwrap().len(),
        5
    );
    let answer = server.list("?maxResults=4").await;
    let token = answer.json["nextToken"].as_str().unwrap().to_owned();
    // A token still works after the name it holds was deleted.
    server.delete("d").await.expect_ok();
    let answer = server.list(&format!("?nextToken={token}")).await;
    assert_eq!(answer.json, json!({"fargateProfileNames": ["e"]}));

    for bad in [
        "?maxResults=0",
        "?maxResults=101",
        "?maxResults=abc",
        "?maxResults=-1",
        "?maxResults=",
    ] {
        let answer = server.list(bad).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert_eq!(answer.error_type(), "InvalidParameterException", "{bad}");
    }
    server.list("?maxResults=101").await.expect_error(
        400,
        "InvalidParameterException",
        "maxResults must be an integer from 1 to 100, got '101'.",
    );
    let forged = format!("v1.{}.AAAAAAAAAAAAAAAA", "Yg");
    for bad in [
        "garbage",
        "v1..",
        "%FF",
        forged.as_str(),
        "v1.YQ.QUJDREVGR0hJSktM",
    ] {
        let answer = server.list(&format!("?nextToken={bad}")).await;
        answer.expect_error(
            400,
            "InvalidParameterException",
            if bad == "%FF" {
                "The query string is not valid percent-encoded UTF-8."
            } else {
                "The nextToken is not valid: use a token returned by a previous ListFargateProfiles call."
            },
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_operations() {
    let dir = empty_state();
    let server = Server::start(
        dir.path(),
        ApiConfig {
            create_delay: Duration::ZERO,
            ..args()
        },
    )
    .await;
    let mut body = profile("tagged");
    body["tags"] = json!({"team": "a"});
    let answer = server.create(&body).await;
    let arn = answer.expect_ok()["fargateProfile"]["fargateProfileArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let encoded: String =
        percent_encoding::utf8_percent_encode(&arn, percent_encoding::NON_ALPHANUMERIC).to_string();
    let path = format!("/tags/{encoded}");

    let answer = server.call(Method::GET, &path, None).await;
    assert_eq!(answer.expect_ok(), &json!({"tags": {"team": "a"}}));
    let answer = server
        .call(
            Method::POST,
            &path,
            Some(&json!({"tags": {"env": "prod", "team": "b"}})),
        )
        .await;
    assert_eq!(answer.expect_ok(), &json!({}));
    let answer = server.call(Method::GET, &path, None).await;
    assert_eq!(answer.json, json!({"tags": {"env": "prod", "team": "b"}}));
    assert_eq!(
        server.describe("tagged").await.json["fargateProfile"]["tags"],
        json!({"env": "prod", "team": "b"})
    );
    let answer = server
        .call(
            Method::DELETE,
            &format!("{path}?tagKeys=team&tagKeys=absent"),
            None,
        )
        .await;
    assert_eq!(answer.expect_ok(), &json!({}));
    assert_eq!(
        server.call(Method::GET, &path, None).await.json,
        json!({"tags": {"env": "prod"}})
    );
    // Removing absent keys is fine.
    server
        .call(Method::DELETE, &format!("{path}?tagKeys=absent"), None)
        .await
        .expect_ok();
    // The unencoded ARN works as well.
    server
        .call(Method::GET, &format!("/tags/{arn}"), None)
        .await
        .expect_ok();

    // Errors: the tag operations' own codes.
    let missing = arn.replace("/tagged/", "/nope/");
    let answer = server
        .call(Method::GET, &format!("/tags/{missing}"), None)
        .await;
    answer.expect_error(
        404,
        "NotFoundException",
        &format!("No Fargate Profile found with ARN: {missing}."),
    );
    let answer = server.call(Method::GET, "/tags/not-an-arn", None).await;
    answer.expect_error(400, "BadRequestException", "Invalid ARN: not-an-arn");
    let answer = server
        .call(Method::POST, &path, Some(&json!({"tags": {"aws:x": "y"}})))
        .await;
    answer.expect_error(
        400,
        "BadRequestException",
        "Tag key 'aws:x' uses the reserved prefix 'aws:'.",
    );
    let answer = server
        .call(Method::POST, &path, Some(&json!({"tags": {}})))
        .await;
    answer.expect_error(
        400,
        "BadRequestException",
        "tags must contain at least one tag.",
    );
    let many: serde_json::Map<String, Value> =
        (0..50).map(|i| (format!("k{i}"), json!("v"))).collect();
    let answer = server
        .call(Method::POST, &path, Some(&json!({"tags": many})))
        .await;
    answer.expect_error(
        400,
        "BadRequestException",
        "Tags may contain at most 50 entries.",
    );
    let answer = server.call(Method::DELETE, &path, None).await;
    answer.expect_error(
        400,
        "BadRequestException",
        "tagKeys must contain at least one key.",
    );
    let answer = server
        .call(Method::DELETE, &format!("/tags/{missing}?tagKeys=a"), None)
        .await;
    assert_eq!(answer.status, 404);
    // A hand-written profile (no stored ARN) can be tagged through its derived ARN.
    server.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), args()).await;
    let arn = server.describe("example").await.json["fargateProfile"]["fargateProfileArn"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .call(
            Method::POST,
            &format!("/tags/{arn}"),
            Some(&json!({"tags": {"a": "b"}})),
        )
        .await
        .expect_ok();
    let stored = server.store.current();
    assert_eq!(
        stored.fargate_profiles[0].fargate_profile_arn.as_deref(),
        Some(arn.as_str())
    );
    assert_eq!(
        server
            .call(Method::GET, &format!("/tags/{arn}"), None)
            .await
            .json,
        json!({"tags": {"a": "b"}})
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_creates_of_one_name_exactly_one_wins() {
    let dir = empty_state();
    let server = Arc::new(Server::start(dir.path(), args()).await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let mut body = profile("contended");
            body["clientRequestToken"] = json!(format!("token-{i}"));
            server.create(&body).await.status
        }));
    }
    let mut ok = 0;
    let mut conflict = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => conflict += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, conflict), (1, 19));
    assert_eq!(server.store.current().fargate_profiles.len(), 1);
    assert_eq!(server.store.current().client_request_tokens.len(), 1);

    // Concurrent creates of different names: one CREATING at a time, so exactly one wins too.
    let mut tasks = Vec::new();
    server.wait_status("contended", "ACTIVE").await;
    for i in 0..10 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            server.create(&profile(&format!("n{i}"))).await.status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    let server = Arc::into_inner(server).unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resume_lifecycle_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("profiles.json"),
        serde_json::to_vec(&json!({"fargateProfiles": [
            // As the API wrote them before a restart (createdAt marks an API-written entry).
            {"fargateProfileName": "was-creating", "podExecutionRoleArn": ROLE,
             "createdAt": 1795612900.437, "selectors": [{"namespace": "a"}], "status": "CREATING"},
            {"fargateProfileName": "was-deleting", "podExecutionRoleArn": ROLE,
             "createdAt": 1795612900.5, "selectors": [{"namespace": "b"}], "status": "DELETING"}
        ]}))
        .unwrap(),
    )
    .unwrap();
    let server = Server::start(dir.path(), args()).await;
    server.wait_status("was-creating", "ACTIVE").await;
    server.wait_gone("was-deleting").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_bodies_are_refused_with_413() {
    let dir = empty_state();
    let server = Server::start(dir.path(), args()).await;
    let big = vec![b' '; api::MAX_BODY + 1];
    let req = Request::post(format!("http://{}{BASE}", server.addr))
        .body(Full::new(Bytes::from(big)))
        .unwrap();
    let answer = server.send(req).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.error_type(), "ClientException");
    assert!(answer.headers.contains_key("x-amzn-RequestId"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handle_in_process_with_a_bytes_body() {
    let dir = empty_state();
    let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let metrics = Arc::new(Metrics::new());
    let store = FileStore::open(dir.path(), Limits::default(), snapshot, metrics.clone()).unwrap();
    let api = Api::new(&args(), store, metrics).unwrap();
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
        let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
        let s: Arc<dyn ProfileStore> = FileStore::open(
            dir.path(),
            Limits::default(),
            snapshot,
            Arc::new(Metrics::new()),
        )
        .unwrap();
        (dir, s)
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

// ---- SigV4: a signer written for the test, independently of the server's verifier ----

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Encode like botocore: RFC 3986 unreserved characters stay, everything else is %XX.
fn aws_quote(s: &str, safe: &[u8]) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || safe.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sign `req` (whose URI is already percent-encoded) as botocore does for EKS.
fn sign(req: &mut Request<Full<Bytes>>, body: &[u8], akid: &str, secret: &str, amz_date: &str) {
    let host = req.uri().authority().unwrap().to_string();
    req.headers_mut().insert("host", host.parse().unwrap());
    req.headers_mut()
        .insert("x-amz-date", amz_date.parse().unwrap());
    let mut names: Vec<String> = req
        .headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .collect();
    names.sort();
    names.dedup();
    let canonical_headers: String = names
        .iter()
        .map(|n| {
            format!(
                "{n}:{}\n",
                req.headers()[n.as_str()].to_str().unwrap().trim()
            )
        })
        .collect();
    let signed = names.join(";");
    let mut query: Vec<&str> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .collect();
    query.sort();
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method(),
        aws_quote(req.uri().path(), b"/"),
        query.join("&"),
        canonical_headers,
        signed,
        hex::encode(sha2::Sha256::digest(body))
    );
    let date = &amz_date[..8];
    let scope = format!("{date}/us-west-2/eks/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
    );
    let k = mac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = mac(&k, b"us-west-2");
    let k = mac(&k, b"eks");
    let k = mac(&k, b"aws4_request");
    let signature = hex::encode(mac(&k, to_sign.as_bytes()));
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders={signed}, Signature={signature}"
    );
    req.headers_mut()
        .insert("authorization", auth.parse().unwrap());
}

fn amz_now(offset_secs: i64) -> String {
    let secs = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset_secs) as u64;
    api::sigv4::format_amz_date(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigv4_verification() {
    let dir = empty_state();
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "# operators\nAKIDFILE filesecret\n\n").unwrap();
    let server = Server::start(
        dir.path(),
        ApiConfig {
            sigv4_keys: vec!["AKIDEXAMPLE:secret".into()],
            sigv4_credentials: Some(creds),
            ..args()
        },
    )
    .await;
    let signed = |method: Method,
                  path: &str,
                  body: Option<&Value>,
                  akid: &str,
                  secret: &str,
                  offset: i64| {
        let mut req = server.request(method, path, body);
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        sign(&mut req, &bytes, akid, secret, &amz_now(offset));
        req
    };

    // Unsigned: refused.
    let answer = server.list("").await;
    answer.expect_error(403, "AccessDeniedException", "Missing Authentication Token");
    // Signed with a configured key: accepted (flag and file keys), with a body and a query.
    server
        .send(signed(Method::GET, BASE, None, "AKIDEXAMPLE", "secret", 0))
        .await
        .expect_ok();
    server
        .send(signed(
            Method::GET,
            &format!("{BASE}?maxResults=5"),
            None,
            "AKIDFILE",
            "filesecret",
            0,
        ))
        .await
        .expect_ok();
    server
        .send(signed(
            Method::POST,
            BASE,
            Some(&profile("signed")),
            "AKIDEXAMPLE",
            "secret",
            0,
        ))
        .await
        .expect_ok();
    // A percent-encoded path (signed double-encoded).
    server
        .send(signed(
            Method::GET,
            &format!("{BASE}/sig%6Eed"),
            None,
            "AKIDEXAMPLE",
            "secret",
            0,
        ))
        .await
        .expect_ok();
    // Wrong secret.
    let answer = server
        .send(signed(Method::GET, BASE, None, "AKIDEXAMPLE", "wrong", 0))
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.error_type(), "InvalidSignatureException");
    assert!(
        answer
            .message()
            .starts_with("The request signature we calculated does not match")
    );
    // Unknown key.
    let answer = server
        .send(signed(Method::GET, BASE, None, "AKIDOTHER", "secret", 0))
        .await;
    answer.expect_error(
        403,
        "AccessDeniedException",
        "The security token included in the request is invalid.",
    );
    // Clock skew: 4 minutes is fine, 6 minutes is not.
    server
        .send(signed(
            Method::GET,
            BASE,
            None,
            "AKIDEXAMPLE",
            "secret",
            -240,
        ))
        .await
        .expect_ok();
    let answer = server
        .send(signed(
            Method::GET,
            BASE,
            None,
            "AKIDEXAMPLE",
            "secret",
            -360,
        ))
        .await;
    assert_eq!(answer.error_type(), "InvalidSignatureException");
    assert!(
        answer.message().starts_with("Signature expired"),
        "{}",
        answer.message()
    );
    let answer = server
        .send(signed(
            Method::GET,
            BASE,
            None,
            "AKIDEXAMPLE",
            "secret",
            360,
        ))
        .await;
    assert!(
        answer.message().starts_with("Signature not yet current"),
        "{}",
        answer.message()
    );
    // A tampered body.
    let mut req = signed(
        Method::POST,
        BASE,
        Some(&profile("x")),
        "AKIDEXAMPLE",
        "secret",
        0,
    );
    *req.body_mut() = Full::new(Bytes::from(serde_json::to_vec(&profile("y")).unwrap()));
    let answer = server.send(req).await;
    assert_eq!(answer.error_type(), "InvalidSignatureException");
    // A garbled header.
    let mut req = server.request(Method::GET, BASE, None);
    req.headers_mut().insert(
        "authorization",
        "AWS4-HMAC-SHA256 nonsense".parse().unwrap(),
    );
    assert_eq!(
        server.send(req).await.error_type(),
        "InvalidSignatureException"
    );
    assert_eq!(
        server.api_count("ListFargateProfiles", "InvalidSignatureException"),
        4
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_drains_and_stops_accepting() {
    let dir = empty_state();
    let server = Server::start(dir.path(), args()).await;
    let addr = server.addr;
    server.list("").await.expect_ok();
    server.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_prior_knowledge_is_served_too() {
    let dir = empty_state();
    let server = Server::start(dir.path(), args()).await;
    let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
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
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = empty_state();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_der = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let server_config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .unwrap();

    let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let metrics = Arc::new(Metrics::new());
    let store = FileStore::open(dir.path(), Limits::default(), snapshot, metrics.clone()).unwrap();
    let api = Api::new(&args(), store, metrics).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server_http::serve(
        listener,
        Some(Arc::new(server_config)),
        api.handler(),
        shutdown.clone(),
        Timeouts::default(),
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let client_config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(BASE)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"fargateProfileNames":[]}"#);
    drop(sender);
    shutdown.cancel();
    task.await.unwrap();
}

/// A corrupt profiles file at start: writes are refused with the EKS "cluster not ACTIVE" client
/// error (never a 5xx that clients retry), the operator's file is left as it is, and once it is
/// fixed the API works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_store_refuses_writes_and_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles.json");
    let corrupt = b"{\"fargateProfiles\": [ {\"fargateProfileName\": ";
    std::fs::write(&path, corrupt).unwrap();
    let server = Server::start(dir.path(), args()).await;
    server.create(&profile("first")).await.expect_error(
        400,
        "InvalidRequestException",
        "Cluster 'fargate' is not in ACTIVE status",
    );
    assert_eq!(std::fs::read(&path).unwrap(), corrupt);
    std::fs::write(&path, br#"{"fargateProfiles": []}"#).unwrap();
    server.store.reload();
    server.create(&profile("first")).await.expect_ok();
    server.stop().await;
}

/// Spec §6: a hand-written entry keeps the status written in it; only profiles the API wrote
/// (they carry `createdAt`) follow its lifecycle, and one whose timer was lost (say, its replica
/// died) is picked up by the lifecycle sweep instead of blocking every later create.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_sweep_drives_api_profiles_and_keeps_hand_written_statuses() {
    let dir = empty_state();
    let server = Server::start(dir.path(), args()).await;
    let role = "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole";
    let arn = "arn:aws:eks:us-west-2:012345678910:fargateprofile/fargate/api-creating/0b7c2f0e-7d0f-4c53-9c43-3f2b9f1d2a11";
    let file = json!({"fargateProfiles": [
        {"fargateProfileName": "api-creating", "podExecutionRoleArn": role, "fargateProfileArn": arn,
         "clusterName": "fargate", "createdAt": 1795612900.437,
         "selectors": [{"namespace": "a"}], "status": "CREATING"},
        {"fargateProfileName": "hand-deleting", "podExecutionRoleArn": role,
         "selectors": [{"namespace": "b"}], "status": "DELETING"},
    ]});
    std::fs::write(
        dir.path().join("profiles.json"),
        serde_json::to_vec(&file).unwrap(),
    )
    .unwrap();
    server.store.reload();
    // Blocked while one is CREATING...
    server
        .create(&profile("later"))
        .await
        .expect_error(409, "ResourceInUseException", "Cannot create Fargate Profile later because cluster fargate currently has Fargate profile api-creating in status CREATING");
    // ...until the sweep (every 5 s) gives the API's profile a timer.
    server.wait_status("api-creating", "ACTIVE").await;
    // The hand-written DELETING entry is left as written (and, per the spec, still blocks creates).
    server.wait_status("hand-deleting", "DELETING").await;
    server
        .create(&profile("later"))
        .await
        .expect_error(409, "ResourceInUseException", "Cannot create Fargate Profile later because cluster fargate currently has Fargate profile hand-deleting in status DELETING");
    server.stop().await;
}

/// The store writes from the file as it is on disk: a hand edit the watcher has not reloaded yet is
/// kept, and a file broken after start is refused rather than overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_start_from_the_file_on_disk() {
    let dir = empty_state();
    let path = dir.path().join("profiles.json");
    let server = Server::start(dir.path(), args()).await;
    let role = "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole";
    let edited = json!({"fargateProfiles": [
        {"fargateProfileName": "hand-edit", "podExecutionRoleArn": role, "selectors": [{"namespace": "x"}]}
    ]});
    std::fs::write(&path, serde_json::to_vec(&edited).unwrap()).unwrap();
    // No wait for the watcher: the create runs at once.
    server.create(&profile("by-api")).await.expect_ok();
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let names: Vec<&str> = on_disk["fargateProfiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["fargateProfileName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hand-edit", "by-api"]);

    let broken = b"{\"fargateProfiles\": [";
    std::fs::write(&path, broken).unwrap();
    server.create(&profile("refused")).await.expect_error(
        400,
        "InvalidRequestException",
        "Cluster 'fargate' is not in ACTIVE status",
    );
    assert_eq!(std::fs::read(&path).unwrap(), broken);
    server.stop().await;
}
