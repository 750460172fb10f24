//! Shared helpers for the integration tests: a launcher for the real server (`app::start`) on
//! ephemeral ports with a generated CA, TLS clients speaking HTTP/2 or HTTP/1.1 (hyper, over
//! tokio-rustls), AdmissionReview builders based on the fixture, a Prometheus text reader, a small
//! JSON Patch applier and a polling helper.
//!
//! Every test file that uses this module includes it with `mod common;`; not every file uses every
//! helper, hence the `dead_code` allowance.
#![allow(dead_code)]

use bytes::Bytes;
use clap::{CommandFactory, Parser};
use fargate_webhook::app::{self, Running};
use fargate_webhook::certs::{self, Generated};
use fargate_webhook::cli::{Cli, Command, ServeArgs};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::client::conn::{http1, http2};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

/// Label and annotation EKS writes on a Fargate pod.
pub const PROFILE_LABEL: &str = "eks.amazonaws.com/fargate-profile";
/// The same key as a JSON-pointer token.
pub const PROFILE_LABEL_TOKEN: &str = "eks.amazonaws.com~1fargate-profile";
pub const FARGATE_SCHEDULER: &str = "fargate-scheduler";
pub const FARGATE_PRIORITY_CLASS: &str = "system-node-critical";
pub const FARGATE_PRIORITY: i64 = 2_000_001_000;

/// The realistic ReplicaSet pod review (namespace `default`, label `infrastructure=fargate`).
pub const FIXTURE: &str = include_str!("../fixtures/replicaset-pod.review.json");

/// The profile [`default_profiles`] holds: namespace `default`, label `infrastructure=fargate`.
pub const DEFAULT_PROFILE: &str = "fp-default";

/// How long polls wait for something the service promises "within 1 s".
pub const POLL_CAP: Duration = Duration::from_secs(3);

// ------------------------------------------------------------------------------------------------
// Profiles

/// A valid hand-written FargateProfile (no `status`: ACTIVE) with one selector.
pub fn profile(name: &str, namespace: &str, labels: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    json!({
        "fargateProfileName": name,
        "podExecutionRoleArn": "arn:aws:iam::123456789012:role/AmazonEKSFargatePodExecutionRole",
        "subnets": ["subnet-0420a37ee456daf3f", "subnet-09a8afb8db4f02d21"],
        "selectors": [{"namespace": namespace, "labels": labels}],
    })
}

/// `{"fargateProfiles": [...]}`.
pub fn profiles_file(profiles: Vec<Value>) -> Value {
    json!({ "fargateProfiles": profiles })
}

/// One profile matching the fixture pod.
pub fn default_profiles() -> Value {
    profiles_file(vec![profile(
        DEFAULT_PROFILE,
        "default",
        &[("infrastructure", "fargate")],
    )])
}

// ------------------------------------------------------------------------------------------------
// Reviews

static UID_SEQ: AtomicU64 = AtomicU64::new(1);

/// A uid unique within the test process.
pub fn fresh_uid(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        UID_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The fixture review with a fresh `request.uid`.
pub fn review() -> Value {
    let mut review: Value = serde_json::from_str(FIXTURE).expect("the fixture is JSON");
    set(&mut review, "/request/uid", json!(fresh_uid("uid")));
    review
}

/// The fixture review with its edits applied by `edit`.
pub fn review_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut review = review();
    edit(&mut review);
    review
}

pub fn uid_of(review: &Value) -> String {
    review["request"]["uid"]
        .as_str()
        .expect("review has a uid")
        .to_string()
}

/// Put the review (request and object) in another namespace.
pub fn set_namespace(review: &mut Value, namespace: &str) {
    set(review, "/request/namespace", json!(namespace));
    set(
        review,
        "/request/object/metadata/namespace",
        json!(namespace),
    );
}

/// Set a label on the reviewed object.
pub fn set_label(review: &mut Value, key: &str, value: &str) {
    set(
        review,
        &format!("/request/object/metadata/labels/{}", escape(key)),
        json!(value),
    );
}

/// Set an annotation on the reviewed object.
pub fn set_annotation(review: &mut Value, key: &str, value: &str) {
    set(
        review,
        &format!("/request/object/metadata/annotations/{}", escape(key)),
        json!(value),
    );
}

/// The patch the fixture pod gets from profile `name`: schedulerName and priority exist (replace),
/// labels and annotations exist without the profile key (add member), no priorityClassName (add),
/// preemptionPolicy already `PreemptLowerPriority` (untouched).
pub fn expected_fixture_patch(name: &str) -> Vec<Value> {
    vec![
        json!({"op": "replace", "path": "/spec/schedulerName", "value": FARGATE_SCHEDULER}),
        json!({"op": "add", "path": format!("/metadata/labels/{PROFILE_LABEL_TOKEN}"), "value": name}),
        json!({"op": "add", "path": format!("/metadata/annotations/{PROFILE_LABEL_TOKEN}"), "value": name}),
        json!({"op": "add", "path": "/spec/priorityClassName", "value": FARGATE_PRIORITY_CLASS}),
        json!({"op": "replace", "path": "/spec/priority", "value": FARGATE_PRIORITY}),
    ]
}

/// Ops sorted by path, for comparisons that do not depend on the order the server chose.
pub fn sorted_ops(mut ops: Vec<Value>) -> Vec<Value> {
    ops.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    ops
}

/// A decoded AdmissionReview answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub review: Value,
}

impl Answer {
    pub fn parse(body: &[u8]) -> Self {
        let review: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "answer is not JSON ({e}): {}",
                String::from_utf8_lossy(body)
            )
        });
        Answer { review }
    }

    pub fn response(&self) -> &Value {
        &self.review["response"]
    }

    pub fn uid(&self) -> &str {
        self.response()["uid"].as_str().unwrap_or("")
    }

    pub fn allowed(&self) -> bool {
        self.response()["allowed"] == json!(true)
    }

    pub fn patch_type(&self) -> Option<&str> {
        self.response().get("patchType").and_then(Value::as_str)
    }

    /// The base64 JSON Patch, decoded. `None` when the answer has no `patch` member.
    pub fn patch(&self) -> Option<Vec<Value>> {
        use base64::Engine;
        let encoded = self.response().get("patch")?;
        let text = encoded
            .as_str()
            .unwrap_or_else(|| panic!("patch must be a base64 string, got {encoded}"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("patch is standard base64");
        let ops: Value = serde_json::from_slice(&bytes).expect("decoded patch is JSON");
        Some(ops.as_array().expect("patch is an RFC 6902 array").to_vec())
    }

    pub fn warnings(&self) -> Vec<String> {
        self.response()
            .get("warnings")
            .and_then(Value::as_array)
            .map(|w| {
                w.iter()
                    .map(|s| s.as_str().expect("warnings are strings").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Allowed, no patch, no patchType: the pod is left alone.
    #[track_caller]
    pub fn assert_untouched(&self) {
        assert!(self.allowed(), "not allowed: {}", self.review);
        assert!(
            self.response().get("patch").is_none(),
            "unexpected patch: {}",
            self.review
        );
        assert!(
            self.response().get("patchType").is_none(),
            "patchType without a patch: {}",
            self.review
        );
    }

    /// Allowed with exactly the fixture patch for `profile`.
    #[track_caller]
    pub fn assert_fixture_mutated(&self, profile: &str) {
        assert!(self.allowed(), "not allowed: {}", self.review);
        assert_eq!(self.patch_type(), Some("JSONPatch"), "{}", self.review);
        let patch = self
            .patch()
            .unwrap_or_else(|| panic!("no patch: {}", self.review));
        assert_eq!(
            sorted_ops(patch),
            sorted_ops(expected_fixture_patch(profile)),
            "patch for profile {profile}"
        );
    }
}

// ------------------------------------------------------------------------------------------------
// JSON pointer and JSON Patch (just enough for the tests)

pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn tokens(pointer: &str) -> Vec<String> {
    assert!(
        pointer.starts_with('/'),
        "'{pointer}' is not a JSON pointer"
    );
    pointer.split('/').skip(1).map(unescape).collect()
}

fn child<'a>(node: &'a mut Value, token: &str, create: bool) -> &'a mut Value {
    match node {
        Value::Object(map) => {
            if create {
                map.entry(token.to_string()).or_insert_with(|| json!({}))
            } else {
                map.get_mut(token)
                    .unwrap_or_else(|| panic!("no member '{token}'"))
            }
        }
        Value::Array(items) => {
            let index: usize = token
                .parse()
                .unwrap_or_else(|_| panic!("'{token}' is not an index"));
            &mut items[index]
        }
        other => panic!("cannot descend into {other} with '{token}'"),
    }
}

/// Set the member at `pointer`, creating missing intermediate objects (`-` appends to an array).
pub fn set(doc: &mut Value, pointer: &str, value: Value) {
    let tokens = tokens(pointer);
    let (last, parents) = tokens.split_last().expect("not the root");
    let mut node = doc;
    for token in parents {
        node = child(node, token, true);
    }
    match node {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) if last == "-" => items.push(value),
        Value::Array(items) => items[last.parse::<usize>().expect("index")] = value,
        other => panic!("cannot set '{last}' in {other}"),
    }
}

/// Remove the member at `pointer` if present.
pub fn remove(doc: &mut Value, pointer: &str) {
    let tokens = tokens(pointer);
    let (last, parents) = tokens.split_last().expect("not the root");
    let mut node = doc;
    for token in parents {
        node = child(node, token, false);
    }
    if let Value::Object(map) = node {
        map.remove(last);
    }
}

/// Apply `add`/`replace` ops (RFC 6902) to `doc`: `add` needs the parent to exist, `replace` the
/// member. Panics on anything else, so a patch that kube-apiserver would refuse fails the test.
pub fn apply_patch(doc: &mut Value, ops: &[Value]) {
    for op in ops {
        let path = op["path"].as_str().expect("op has a path");
        let tokens = tokens(path);
        let (last, parents) = tokens.split_last().expect("not the root");
        let mut node = &mut *doc;
        for token in parents {
            node = child(node, token, false);
        }
        let value = op["value"].clone();
        match (op["op"].as_str(), node) {
            (Some("add"), Value::Object(map)) => {
                map.insert(last.clone(), value);
            }
            (Some("replace"), Value::Object(map)) => {
                let slot = map
                    .get_mut(last)
                    .unwrap_or_else(|| panic!("replace of missing member {path}"));
                *slot = value;
            }
            (Some("add"), Value::Array(items)) if last == "-" => items.push(value),
            (kind, node) => panic!("unsupported op {kind:?} at {path} on {node}"),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Files

/// Replace `path` by rename from a temporary file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let dir = path.parent().expect("path has a parent");
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap().to_string_lossy(),
        fresh_uid("w")
    ));
    std::fs::write(&tmp, bytes).expect("write the temporary file");
    std::fs::rename(&tmp, path).expect("rename over the target");
}

pub fn write_json(path: &Path, value: &Value) {
    write_atomic(
        path,
        &serde_json::to_vec_pretty(value).expect("JSON serializes"),
    );
}

static VOLUME_SEQ: AtomicU64 = AtomicU64::new(1);

/// Publish `files` in `dir` the way the kubelet updates a Secret or ConfigMap volume: write them
/// into a new timestamped directory `..2026_…`, point a fresh symlink at it and rename that over
/// `..data` (one atomic step), and make sure each `dir/<name>` is a symlink to `..data/<name>`.
pub fn kube_volume_publish(dir: &Path, files: &[(&str, &[u8])]) {
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(dir).expect("create the volume directory");
    let version = format!(
        "..2026_01_01_00_00_{:02}.{}",
        VOLUME_SEQ.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    );
    let version_dir = dir.join(&version);
    std::fs::create_dir(&version_dir).expect("create the version directory");
    for (name, bytes) in files {
        std::fs::write(version_dir.join(name), bytes).expect("write a volume file");
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    symlink(&version, &tmp_link).expect("create ..data_tmp");
    std::fs::rename(&tmp_link, dir.join("..data")).expect("swap ..data");
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link).expect("create the file symlink");
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Certificates

/// A CA and a server certificate for `localhost` and 127.0.0.1, valid `days` days.
pub fn generate_certs(days: i64) -> Generated {
    certs::generate(
        &["localhost".to_string()],
        &["127.0.0.1".parse().unwrap()],
        days,
    )
    .expect("rcgen generates certificates")
}

/// The first certificate of a PEM text, DER-encoded.
pub fn first_cert_der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM holds a certificate")
}

/// notAfter of a DER certificate, Unix seconds.
pub fn not_after(der: &CertificateDer<'_>) -> i64 {
    x509_parser::parse_x509_certificate(der)
        .expect("certificate parses")
        .1
        .validity()
        .not_after
        .timestamp()
}

/// Serial number of a DER certificate.
pub fn serial(der: &CertificateDer<'_>) -> Vec<u8> {
    x509_parser::parse_x509_certificate(der)
        .expect("certificate parses")
        .1
        .raw_serial()
        .to_vec()
}

// ------------------------------------------------------------------------------------------------
// Server

/// The on-disk layout a server starts from: a tempdir with `state/` and `certs/`.
pub struct Layout {
    pub root: tempfile::TempDir,
    pub state_dir: PathBuf,
    pub cert_dir: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// CAs the clients trust.
    pub trusted_cas: Vec<String>,
    /// The leaf certificate last installed (PEM).
    pub cert_pem: String,
}

impl Layout {
    /// Empty directories, no files.
    pub fn empty() -> Self {
        let root = tempfile::tempdir().expect("create a tempdir");
        let state_dir = root.path().join("state");
        let cert_dir = root.path().join("certs");
        std::fs::create_dir_all(&state_dir).unwrap();
        std::fs::create_dir_all(&cert_dir).unwrap();
        Layout {
            tls_cert: cert_dir.join(certs::CERT_FILE),
            tls_key: cert_dir.join(certs::KEY_FILE),
            root,
            state_dir,
            cert_dir,
            trusted_cas: Vec::new(),
            cert_pem: String::new(),
        }
    }

    /// [`default_profiles`] and a fresh certificate, as plain files.
    pub fn standard() -> Self {
        let mut layout = Layout::empty();
        layout.write_profiles(&default_profiles());
        layout.install_certs(&generate_certs(30));
        layout
    }

    pub fn profiles_path(&self) -> PathBuf {
        self.state_dir.join("profiles.json")
    }

    /// Replace `profiles.json` atomically.
    pub fn write_profiles(&self, profiles: &Value) {
        write_json(&self.profiles_path(), profiles);
    }

    /// Write `ca.crt`, `tls.crt`, `tls.key` with the crate's own writer and trust the CA.
    pub fn install_certs(&mut self, generated: &Generated) {
        certs::write_dir(&self.cert_dir, generated).expect("write the certificates");
        self.trust(generated);
    }

    pub fn trust(&mut self, generated: &Generated) {
        self.trusted_cas.push(generated.ca_pem.clone());
        self.cert_pem = generated.cert_pem.clone();
    }

    /// `serve` arguments for this layout, parsed by the real CLI so new flags keep their defaults.
    /// Every `--*-addr` flag gets `127.0.0.1:0` (ephemeral ports, no clashes between tests);
    /// `extra` (e.g. `["--handshake-timeout", "500ms"]`) overrides the test defaults.
    pub fn args(&self, extra: &[&str]) -> ServeArgs {
        let mut argv: Vec<String> = vec!["fargate-webhook".into(), "serve".into()];
        let cli = Cli::command();
        let serve = cli
            .find_subcommand("serve")
            .expect("the CLI has a serve subcommand");
        for arg in serve.get_arguments() {
            if let Some(long) = arg.get_long()
                && long.ends_with("-addr")
                && !extra.contains(&format!("--{long}").as_str())
            {
                argv.push(format!("--{long}"));
                argv.push("127.0.0.1:0".into());
            }
        }
        let paths = [
            ("--store", "file".to_string()),
            ("--state-dir", self.state_dir.display().to_string()),
            ("--tls-cert", self.tls_cert.display().to_string()),
            ("--tls-key", self.tls_key.display().to_string()),
            ("--shutdown-timeout", "5s".to_string()),
            ("--handshake-timeout", "2s".to_string()),
        ];
        // Flags in `extra` win over these defaults.
        for (flag, value) in paths {
            if extra.contains(&flag) {
                continue;
            }
            argv.push(flag.into());
            argv.push(value);
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        match Cli::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("serve arguments {argv:?} do not parse: {e}"))
            .command
        {
            Command::Serve(args) => *args,
            other => panic!("parsed {other:?} instead of serve"),
        }
    }
}

/// A running server on ephemeral ports plus what its clients need.
pub struct TestServer {
    running: Option<Running>,
    pub webhook_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub layout: Layout,
}

impl TestServer {
    /// A server with [`Layout::standard`].
    pub async fn start() -> Self {
        Self::start_with(Layout::standard(), &[]).await
    }

    /// A server over `layout`, with extra `serve` flags.
    pub async fn start_with(layout: Layout, extra: &[&str]) -> Self {
        let args = layout.args(extra);
        let running = app::start(&args).await.expect("the server starts");
        TestServer {
            webhook_addr: running.webhook_addr,
            metrics_addr: running.metrics_addr,
            running: Some(running),
            layout,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("the server is running")
    }

    /// Stop accepting (what SIGTERM does).
    pub fn shutdown(&self) {
        self.running().shutdown();
    }

    /// Take the handle, for `wait()`.
    pub fn take_running(&mut self) -> Running {
        self.running.take().expect("the server is running")
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for pem in &self.layout.trusted_cas {
            roots.add(first_cert_der(pem)).expect("CA is acceptable");
        }
        roots
    }

    /// A new TLS connection to the webhook offering `alpn`.
    pub async fn tls(&self, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
        tls_connect(self.webhook_addr, self.roots(), alpn).await
    }

    /// A new HTTP/2 connection (ALPN `h2`).
    pub async fn h2(&self) -> Client {
        Client::h2(
            self.tls(&[b"h2"]).await.expect("TLS to the webhook"),
            self.webhook_addr,
        )
        .await
    }

    /// A new HTTP/1.1 connection (ALPN `http/1.1`).
    pub async fn h1(&self) -> Client {
        Client::h1(
            self.tls(&[b"http/1.1"]).await.expect("TLS to the webhook"),
            self.webhook_addr,
        )
        .await
    }

    /// The leaf certificate a brand-new TLS connection is served.
    pub async fn served_leaf(&self) -> CertificateDer<'static> {
        let tls = self.tls(&[b"h2"]).await.expect("TLS to the webhook");
        tls.get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("the server presents a certificate")
            .clone()
            .into_owned()
    }

    /// GET on the plain-HTTP ops port.
    pub async fn ops_get(&self, path: &str) -> Reply {
        let tcp = TcpStream::connect(self.metrics_addr)
            .await
            .expect("connect to the ops port");
        let (mut sender, conn) = http1::handshake::<_, Body>(TokioIo::new(tcp))
            .await
            .expect("HTTP/1.1 handshake on the ops port");
        let conn = tokio::spawn(conn);
        let req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(hyper::header::HOST, self.metrics_addr.to_string())
            .body(empty())
            .unwrap();
        let reply = Reply::read(sender.send_request(req).await.expect("ops request"))
            .await
            .expect("ops body");
        drop(sender);
        let _ = conn.await;
        reply
    }

    pub async fn metrics_text(&self) -> String {
        let reply = self.ops_get("/metrics").await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.text()
    }

    /// Sum of the samples of `name` whose labels include `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics_text().await, name, labels)
    }

    /// POST one review on a new HTTP/2 connection and decode the 200 answer.
    pub async fn admit(&self, review: &Value) -> Answer {
        self.h2().await.admit(review).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.shutdown();
        }
    }
}

/// TLS to `addr` trusting `roots`, offering `alpn`, with session resumption off so every
/// connection sees the certificate the server serves now.
pub async fn tls_connect(
    addr: SocketAddr,
    roots: rustls::RootCertStore,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::from(addr.ip()), tcp)
        .await
}

// ------------------------------------------------------------------------------------------------
// Clients

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// A request body fed through a channel: no size hint, so no `content-length`, and the test decides
/// when each chunk goes out and when the body ends (drop the sender).
pub fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    (tx, ChannelBody(rx).boxed())
}

struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub async fn read(response: hyper::Response<hyper::body::Incoming>) -> hyper::Result<Self> {
        let (parts, body) = response.into_parts();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await?.to_bytes(),
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// A refusal: the given status and a JSON `Status` body with a message.
    #[track_caller]
    pub fn assert_json_error(&self, code: u16) -> String {
        assert_eq!(self.status.as_u16(), code, "status; body: {}", self.text());
        assert!(
            self.content_type().starts_with("application/json"),
            "content-type {:?} for a {code}",
            self.content_type()
        );
        let body = self.json();
        assert_eq!(body["kind"], "Status", "{body}");
        assert_eq!(body["code"], code, "{body}");
        let message = body["message"].as_str().unwrap_or("").to_string();
        assert!(!message.is_empty(), "a {code} without a message: {body}");
        message
    }
}

enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// One client connection to the webhook (HTTP/2 or HTTP/1.1 over TLS).
pub struct Client {
    sender: Sender,
    authority: SocketAddr,
    /// The ALPN protocol the server chose.
    pub alpn: Option<Vec<u8>>,
    /// The chain the server presented.
    pub peer_certs: Vec<CertificateDer<'static>>,
    conn: JoinHandle<()>,
}

impl Client {
    fn tls_facts(tls: &TlsStream<TcpStream>) -> (Option<Vec<u8>>, Vec<CertificateDer<'static>>) {
        let session = tls.get_ref().1;
        (
            session.alpn_protocol().map(<[u8]>::to_vec),
            session
                .peer_certificates()
                .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
                .unwrap_or_default(),
        )
    }

    pub async fn h2(tls: TlsStream<TcpStream>, authority: SocketAddr) -> Self {
        let (alpn, peer_certs) = Self::tls_facts(&tls);
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("HTTP/2 handshake");
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Client {
            sender: Sender::H2(sender),
            authority,
            alpn,
            peer_certs,
            conn,
        }
    }

    pub async fn h1(tls: TlsStream<TcpStream>, authority: SocketAddr) -> Self {
        let (alpn, peer_certs) = Self::tls_facts(&tls);
        let (sender, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/1.1 handshake");
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Client {
            sender: Sender::H1(sender),
            authority,
            alpn,
            peer_certs,
            conn,
        }
    }

    /// Another handle on the same HTTP/2 connection (a new stream per request).
    pub fn h2_stream_handle(&self) -> http2::SendRequest<Body> {
        match &self.sender {
            Sender::H2(sender) => sender.clone(),
            Sender::H1(_) => panic!("HTTP/1.1 connections cannot be shared"),
        }
    }

    pub fn is_h2(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }

    /// The connection task has ended (the server closed the connection).
    pub fn is_closed(&self) -> bool {
        self.conn.is_finished()
    }

    /// A request builder with a URI suited to the protocol (absolute for h2, origin-form for h1).
    pub fn builder(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        let builder = Request::builder().method(method);
        if self.is_h2() {
            builder.uri(format!("https://{}{path}", self.authority))
        } else {
            builder
                .uri(path)
                .header(hyper::header::HOST, self.authority.to_string())
        }
    }

    pub async fn send(&mut self, req: Request<Body>) -> hyper::Result<Reply> {
        let response = match &mut self.sender {
            Sender::H1(sender) => {
                sender.ready().await?;
                sender.send_request(req).await?
            }
            Sender::H2(sender) => {
                sender.ready().await?;
                sender.send_request(req).await?
            }
        };
        Reply::read(response).await
    }

    pub async fn request(&mut self, method: Method, path: &str, body: Body) -> Reply {
        let req = self
            .builder(method, path)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap();
        self.send(req).await.expect("request on the connection")
    }

    pub async fn post(&mut self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.request(Method::POST, path, full(body)).await
    }

    /// POST `review` to /mutate; asserts a 200 JSON AdmissionReview echoing the uid.
    pub async fn admit(&mut self, review: &Value) -> Answer {
        let reply = self
            .post("/mutate", serde_json::to_vec(review).unwrap())
            .await;
        check_admission_reply(&reply, review)
    }
}

/// A 200 JSON AdmissionReview that echoes `apiVersion`, `kind` and the uid of `review`.
#[track_caller]
pub fn check_admission_reply(reply: &Reply, review: &Value) -> Answer {
    assert_eq!(reply.status, StatusCode::OK, "body: {}", reply.text());
    assert!(
        reply.content_type().starts_with("application/json"),
        "content-type {:?}",
        reply.content_type()
    );
    let answer = Answer::parse(&reply.body);
    assert_eq!(
        answer.review["kind"], "AdmissionReview",
        "{}",
        answer.review
    );
    assert_eq!(
        answer.review["apiVersion"], review["apiVersion"],
        "apiVersion echoed"
    );
    assert_eq!(answer.uid(), uid_of(review), "uid echoed");
    answer
}

// ------------------------------------------------------------------------------------------------
// Prometheus text

/// Sum of the samples of metric `name` whose label set includes every pair of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    let mut matched = false;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(pair) => pair,
            None => continue,
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let found = parse_labels(label_text);
        if labels
            .iter()
            .all(|(k, v)| found.iter().any(|(fk, fv)| fk == k && fv == v))
        {
            matched = true;
            sum += value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("sample value of '{line}' is not a number"));
        }
    }
    // A labelled series appears once it is first counted, so an absent series reads as 0; but the
    // metric itself must exist, or a renamed metric would read as 0 everywhere.
    assert!(
        matched
            || text
                .lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} "))),
        "no metric {name} in /metrics"
    );
    sum
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(match escaped {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        out.push((key.trim_start_matches(',').trim().to_string(), value));
        rest = &after[end..];
    }
    out
}

// ------------------------------------------------------------------------------------------------
// Polling

/// Poll `probe` every 20 ms until it yields `Some`, or panic after `cap` naming `what`. Returns the
/// value and how long it took.
pub async fn eventually<T, F, Fut>(what: &str, cap: Duration, mut probe: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return (value, started.elapsed());
        }
        if started.elapsed() > cap {
            panic!("{what}: still not true after {cap:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `fut`, or a panic naming `what` when it takes longer than `cap`.
pub async fn within<T>(what: &str, cap: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(cap, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {cap:?}"))
}
