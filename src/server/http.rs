//! Connection serving shared by the webhook, ops and API ports: accept, TCP_NODELAY, optional TLS
//! with a handshake timeout, HTTP/1.1 and HTTP/2 (by ALPN, or by preface on plain ports), a
//! header-read timeout, and graceful draining.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub type ResponseFuture = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;
/// A request handler: it always answers (errors are responses too).
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> ResponseFuture + Send + Sync>;

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub handshake: Duration,
    pub header_read: Duration,
    /// How long in-flight requests may take to finish after shutdown starts.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            drain: Duration::from_secs(25),
        }
    }
}

/// What plain HTTP on the TLS port gets back before the connection is closed.
fn plain_http_on_tls() -> Vec<u8> {
    let body =
        crate::admission::error_body(400, "BadRequest", "this port speaks HTTPS: use https://");
    let mut out = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Serve `listener` until `shutdown` is cancelled, then drain connections for up to `timeouts.drain`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
    shutdown: CancellationToken,
    timeouts: Timeouts,
) {
    let graceful = GracefulShutdown::new();
    // Cancelled when the drain deadline passes: every connection task drops its connection.
    let force_close = CancellationToken::new();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        // With the 8 MiB body limit, 32 streams bound what one connection can make us buffer
        // (256 MiB); kube-apiserver needs far fewer.
        .max_concurrent_streams(32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let handler = Arc::clone(&handler);
        let builder = Arc::clone(&builder);
        let acceptor = acceptor.clone();
        let force_close = force_close.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let fut = handler(req);
                async move { Ok::<_, std::convert::Infallible>(fut.await) }
            });
            // hyper-util's auto builder waits for the first bytes (to tell h1 from h2) without a
            // deadline, so idle connections are closed here before they reach it.
            let serving = async {
                match acceptor {
                    None => {
                        let ready =
                            tokio::time::timeout(timeouts.header_read, stream.peek(&mut [0u8; 1]))
                                .await;
                        if !matches!(ready, Ok(Ok(n)) if n > 0) {
                            return Ok(());
                        }
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(conn.into_owned()).await
                    }
                    Some(acceptor) => {
                        let Some(tls) =
                            handshake(stream, peer, &acceptor, timeouts.handshake).await
                        else {
                            return Ok(());
                        };
                        let mut reader = tokio::io::BufReader::new(tls);
                        let ready = tokio::time::timeout(timeouts.header_read, async {
                            reader.fill_buf().await.map(|buf| !buf.is_empty())
                        })
                        .await;
                        if !matches!(ready, Ok(Ok(true))) {
                            tracing::debug!(%peer, "no request before the header deadline");
                            return Ok(());
                        }
                        let conn = builder.serve_connection(TokioIo::new(reader), service);
                        watcher.watch(conn.into_owned()).await
                    }
                }
            };
            let result = tokio::select! {
                result = serving => result,
                _ = force_close.cancelled() => Ok(()),
            };
            if let Err(error) = result {
                tracing::debug!(%peer, error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(timeouts.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain deadline passed; closing the remaining connections");
        force_close.cancel();
    }
}

/// TLS handshake under a deadline. A client that speaks plain HTTP gets a readable 400 instead of
/// a TLS alert it cannot show.
async fn handshake(
    mut stream: TcpStream,
    peer: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
    deadline: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let outcome = tokio::time::timeout(deadline, async {
        let mut first = [0u8; 1];
        let n = stream.peek(&mut first).await?;
        // 0x16 = TLS handshake record; anything else (an HTTP method's first letter) is not TLS.
        if n == 1 && first[0] != 0x16 {
            stream.write_all(&plain_http_on_tls()).await?;
            stream.shutdown().await?;
            // Read what the client sent before closing: closing with unread data makes the kernel
            // send a reset, and the client may then lose our answer.
            let mut sink = [0u8; 4096];
            let mut drained = 0usize;
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while drained < 64 * 1024 {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => drained += n,
                    }
                }
            })
            .await;
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "plain HTTP on the TLS port",
            ));
        }
        acceptor.accept(stream).await
    })
    .await;
    match outcome {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Why a request body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Declared or actual size over the limit (answer 413).
    TooLarge,
    /// The client's stream failed.
    Read(String),
}

/// Collect a request body of at most `limit` bytes; a declared `Content-Length` over the limit is
/// refused before anything is read.
pub async fn read_body<B>(
    headers: &http::HeaderMap,
    body: B,
    limit: usize,
) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(error) => Err(BodyError::Read(error.to_string())),
    }
}

/// A JSON response with the given status.
pub fn json(status: u16, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_http_answer_has_the_right_length() {
        let bytes = super::plain_http_on_tls();
        let text = std::str::from_utf8(&bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
