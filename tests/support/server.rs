//! The real server (`app::start`) on ephemeral ports over a tempdir [`Layout`], and what its
//! clients need (trusted roots, TLS and HTTP connections, the ops port).

use super::certs::{first_cert_der, generate_certs};
use super::client::{Body, Client, Reply, empty, tls_connect};
use super::files::write_json;
use super::fixtures::default_profiles;
use super::metrics::metric_value;
use super::review::Answer;
use clap::{CommandFactory, Parser};
use fargate_webhook::app::{self, Running};
use fargate_webhook::certs::{self, Generated};
use fargate_webhook::cli::{Cli, Command, ServeArgs};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::CertificateDer;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

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
