//! Clients: one TLS connection to the webhook speaking HTTP/2 or HTTP/1.1 ([`Client`], hyper over
//! tokio-rustls), a pooled plain-HTTP client for the EKS API ([`PlainClient`]), request bodies,
//! and [`Reply`], a complete response.

use super::review::{Answer, check_admission_reply};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::client::conn::{http1, http2};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

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
// TLS connections to the webhook (or to the API with --api-tls)

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

// ------------------------------------------------------------------------------------------------
// Plain HTTP (the EKS API without --api-tls)

/// A pooled HTTP/1.1 client (hyper-util's legacy client) for plain-HTTP servers.
pub type PlainClient = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

pub fn plain_client() -> PlainClient {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// A plain-HTTP client speaking HTTP/2 with prior knowledge.
pub fn plain_h2_client() -> PlainClient {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A request to `uri` with `body` as JSON (`application/x-amz-json-1.1`, as the AWS SDKs send it)
/// or an empty body without a content type.
pub fn json_request(method: Method, uri: &str, body: Option<&Value>) -> Request<Full<Bytes>> {
    let body = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let mut builder = Request::builder().method(method).uri(uri);
    if !body.is_empty() {
        builder = builder.header("content-type", "application/x-amz-json-1.1");
    }
    builder.body(Full::new(Bytes::from(body))).unwrap()
}
