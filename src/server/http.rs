//! Connection serving shared by the webhook, ops and API ports: accept, TCP_NODELAY, optional TLS
//! with a handshake timeout, HTTP/1.1 and HTTP/2 (by ALPN, or by preface on plain ports), a
//! header-read timeout, and graceful draining.

use crate::metrics::Metrics;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub type ResponseFuture = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;
/// A request handler: it always answers (errors are responses too).
pub type Handler = Arc<dyn Fn(Request<RequestBody>) -> ResponseFuture + Send + Sync>;

/// What one port allows its clients. The README's "Reliability" section lists the flags.
#[derive(Clone, Copy, Debug)]
pub struct PortLimits {
    pub handshake: Duration,
    /// For the request headers; an idle HTTP/1.1 connection is closed after it too.
    pub header_read: Duration,
    /// For a request body, counted from the end of its headers.
    pub body_read: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2: GOAWAY).
    pub idle: Duration,
    /// How long in-flight requests may take to finish after shutdown starts.
    pub drain: Duration,
    pub max_connections: usize,
    pub max_streams: u32,
    /// Bytes of request bodies the port buffers at once, over all connections.
    pub body_buffer: usize,
}

impl Default for PortLimits {
    fn default() -> Self {
        PortLimits {
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            drain: Duration::from_secs(25),
            max_connections: 1024,
            max_streams: 32,
            body_buffer: 64 * 1024 * 1024,
        }
    }
}

/// A listening port: its name (the `port` label of the metrics) and the metrics it reports to.
#[derive(Clone)]
pub struct Port {
    pub name: &'static str,
    pub metrics: Arc<Metrics>,
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

/// Serve `listener` until `shutdown` is cancelled, then drain connections for up to `limits.drain`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
    shutdown: CancellationToken,
    limits: PortLimits,
    port: Port,
) {
    let tasks = TaskTracker::new();
    // Cancelled when the drain deadline passes: every connection task drops its connection.
    let force_close = CancellationToken::new();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        // With the body buffer shared by the port, streams bound concurrency, not memory.
        .max_concurrent_streams(limits.max_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let body_buffer = Arc::new(Semaphore::new(limits.body_buffer));
    let mut refused_since_warning = 0u64;
    let mut last_warning: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(%error, port = port.name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            // Full: close at once. A readable refusal would need the TLS handshake, which is the
            // very work being shed; the client sees a closed connection (the apiserver then
            // applies the webhook's failurePolicy). One warning per 10 s says how many.
            port.metrics
                .connections_refused
                .with_label_values(&[port.name])
                .inc();
            refused_since_warning += 1;
            if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                tracing::warn!(
                    port = port.name,
                    refused = refused_since_warning,
                    max_connections = limits.max_connections,
                    "connection limit reached; closing new connections"
                );
                refused_since_warning = 0;
                last_warning = Some(Instant::now());
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let open = OpenConnection::new(&port, permit);
        let connection = Connection {
            handler: Arc::clone(&handler),
            builder: Arc::clone(&builder),
            limits,
            body_buffer: Arc::clone(&body_buffer),
            shutdown: shutdown.clone(),
            force_close: force_close.clone(),
            port: port.clone(),
            peer,
        };
        let acceptor = acceptor.clone();
        tasks.spawn(async move {
            let _open = open;
            match acceptor {
                None => {
                    // hyper-util's auto builder waits for the first bytes (to tell h1 from h2)
                    // without a deadline, so connections that send nothing are closed here.
                    let ready =
                        tokio::time::timeout(limits.header_read, stream.peek(&mut [0u8; 1])).await;
                    if matches!(ready, Ok(Ok(n)) if n > 0) {
                        connection.serve(stream).await;
                    }
                }
                Some(acceptor) => {
                    let Some(tls) =
                        handshake(stream, peer, &acceptor, limits.handshake, &connection.port)
                            .await
                    else {
                        return;
                    };
                    let mut reader = tokio::io::BufReader::new(tls);
                    let ready = tokio::time::timeout(limits.header_read, async {
                        reader.fill_buf().await.map(|buf| !buf.is_empty())
                    })
                    .await;
                    if matches!(ready, Ok(Ok(true))) {
                        connection.serve(reader).await;
                    } else {
                        tracing::debug!(%peer, "no request before the header deadline");
                    }
                }
            }
        });
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(limits.drain, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            port = port.name,
            "drain deadline passed; closing the remaining connections"
        );
        force_close.cancel();
        tasks.wait().await;
    }
}

/// Counts a connection in the `open_connections` gauge and holds its place under the cap.
struct OpenConnection {
    port: Port,
    _permit: OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(port: &Port, permit: OwnedSemaphorePermit) -> Self {
        port.metrics
            .connections
            .with_label_values(&[port.name])
            .inc();
        OpenConnection {
            port: port.clone(),
            _permit: permit,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.port
            .metrics
            .connections
            .with_label_values(&[self.port.name])
            .dec();
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    handler: Handler,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: PortLimits,
    body_buffer: Arc<Semaphore>,
    shutdown: CancellationToken,
    force_close: CancellationToken,
    port: Port,
    peer: SocketAddr,
}

impl Connection {
    /// Serve HTTP/1.1 or HTTP/2 on `io` until the client leaves, the connection has been idle for
    /// `limits.idle`, or shutdown (graceful: in-flight requests finish first).
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let service = {
            let activity = Arc::clone(&activity);
            let (handler, buffer, port) = (
                Arc::clone(&self.handler),
                Arc::clone(&self.body_buffer),
                self.port.clone(),
            );
            let body_read = self.limits.body_read;
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let busy = activity.begin();
                let req = req.map(|body| {
                    RequestBody::new(body, body_read, Arc::clone(&buffer), port.clone())
                });
                let answer = handler(req);
                async move {
                    let response = answer.await;
                    drop(busy);
                    Ok::<_, std::convert::Infallible>(response)
                }
            })
        };
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        // Shutdown, idleness and the drain deadline are watched by a task of their own: polled
        // beside the connection, their futures (a timer, two cancellation waiters behind a mutex)
        // were polled again on every wake-up of a busy HTTP/2 connection, a few per request.
        let signal = Arc::new(CloseSignal::default());
        let watcher = tokio::spawn({
            let (signal, activity) = (Arc::clone(&signal), Arc::clone(&activity));
            let (shutdown, force_close, idle) = (
                self.shutdown.clone(),
                self.force_close.clone(),
                self.limits.idle,
            );
            let peer = self.peer;
            async move {
                tokio::select! {
                    _ = shutdown.cancelled() => signal.raise(CloseSignal::GRACEFUL),
                    _ = activity.idle_for(idle) => {
                        tracing::debug!(%peer, "idle connection closed");
                        signal.raise(CloseSignal::GRACEFUL);
                    }
                    _ = force_close.cancelled() => {}
                }
                force_close.cancelled().await;
                signal.raise(CloseSignal::FORCE);
            }
        });
        let mut seen = CloseSignal::NONE;
        let result = loop {
            tokio::select! {
                result = conn.as_mut() => break result,
                level = signal.above(seen) => {
                    seen = level;
                    if level == CloseSignal::FORCE {
                        break Ok(());
                    }
                    conn.as_mut().graceful_shutdown();
                }
            }
        };
        watcher.abort();
        if let Err(error) = result {
            tracing::debug!(peer = %self.peer, %error, "connection ended with an error");
        }
    }
}

/// How far a connection has been asked to close: raised by its watcher task, read by the
/// connection with one atomic load per wake-up.
#[derive(Default)]
struct CloseSignal {
    level: std::sync::atomic::AtomicU8,
    waker: futures::task::AtomicWaker,
}

impl CloseSignal {
    const NONE: u8 = 0;
    /// Finish the requests in flight, take no new ones (HTTP/2: GOAWAY).
    const GRACEFUL: u8 = 1;
    /// The drain deadline passed: drop the connection.
    const FORCE: u8 = 2;

    fn raise(&self, level: u8) {
        self.level.fetch_max(level, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Resolves to the level once it is above `seen`.
    fn above(&self, seen: u8) -> impl Future<Output = u8> + '_ {
        std::future::poll_fn(move |cx| {
            self.waker.register(cx.waker());
            match self.level.load(Ordering::Acquire) {
                level if level > seen => Poll::Ready(level),
                _ => Poll::Pending,
            }
        })
    }
}

/// Requests in flight on one connection and when the last one ended.
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `started` to the end of the last request (or to the start).
    last_end_ms: AtomicU64,
}

/// Marks a request in flight until dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.0.started.elapsed().as_millis() as u64;
        self.0.last_end_ms.store(now, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }

    /// How long nothing has been in flight (zero while something is).
    fn quiet(&self) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
        self.started.elapsed().saturating_sub(last)
    }

    /// Resolves once the connection has had nothing in flight for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let quiet = self.quiet();
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    }
}

/// TLS handshake under a deadline. A client that speaks plain HTTP gets a readable 400 instead of
/// a TLS alert it cannot show.
async fn handshake(
    mut stream: TcpStream,
    peer: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
    deadline: Duration,
    port: &Port,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let rejected = |reason: &str| {
        port.metrics
            .http_rejected
            .with_label_values(&[port.name, reason])
            .inc();
    };
    let outcome = tokio::time::timeout(deadline, async {
        let mut first = [0u8; 1];
        let n = stream.peek(&mut first).await?;
        // 0x16 = TLS handshake record; anything else (an HTTP method's first letter) is not TLS.
        if n == 1 && first[0] != 0x16 {
            rejected("plain_http");
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
            if error.kind() != std::io::ErrorKind::InvalidData
                || !error.to_string().contains("plain HTTP")
            {
                rejected("tls_handshake");
            }
            tracing::debug!(%peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            rejected("tls_handshake");
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// A request body as the handlers see it: hyper's body under the port's deadline and shared
/// buffer budget. Frames count against the budget until the body is dropped.
pub struct RequestBody {
    inner: Incoming,
    /// When the headers were read; the deadline is `started + timeout`.
    started: tokio::time::Instant,
    /// Armed the first time the body is not all there: most reviews arrive with their headers,
    /// and a timer per request (allocate, register, deregister) was a measurable share of a review.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
    buffer: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
    port: Port,
}

/// Why a body frame was refused; [`read_body`] turns it into a [`BodyError`].
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("the request body was not received within {0:?}")]
    TimedOut(Duration),
    #[error("the server is buffering too many request bodies; retry")]
    BufferFull,
}

impl RequestBody {
    fn new(inner: Incoming, timeout: Duration, buffer: Arc<Semaphore>, port: Port) -> Self {
        RequestBody {
            inner,
            started: tokio::time::Instant::now(),
            deadline: None,
            timeout,
            buffer,
            held: None,
            port,
        }
    }

    fn refuse(&self, reason: Refused) -> Box<dyn std::error::Error + Send + Sync> {
        let label = match reason {
            Refused::TimedOut(_) => "timeout",
            Refused::BufferFull => "buffer_full",
        };
        self.port
            .metrics
            .bodies_refused
            .with_label_values(&[self.port.name, label])
            .inc();
        Box::new(reason)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        // The deadline comes first: a client trickling bytes must not keep the body open.
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(this.refuse(Refused::TimedOut(this.timeout)))));
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                if this.deadline.is_none() {
                    let mut deadline =
                        Box::pin(tokio::time::sleep_until(this.started + this.timeout));
                    // Polled once so that it wakes this task when it passes.
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(
                            Err(this.refuse(Refused::TimedOut(this.timeout))),
                        ));
                    }
                    this.deadline = Some(deadline);
                }
                return Poll::Pending;
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(Box::new(error)))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref() {
            let bytes = u32::try_from(data.len()).unwrap_or(u32::MAX);
            match Arc::clone(&this.buffer).try_acquire_many_owned(bytes) {
                Ok(permit) => match this.held.as_mut() {
                    Some(held) => held.merge(permit),
                    None => this.held = Some(permit),
                },
                Err(_) => return Poll::Ready(Some(Err(this.refuse(Refused::BufferFull)))),
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a request body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Declared or actual size over the limit (answer 413).
    TooLarge,
    /// Not received within the port's body deadline (answer 408; the connection closes).
    TimedOut(String),
    /// The port's body buffer is full (answer 503).
    Busy(String),
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
        Err(error) => match error.downcast_ref::<Refused>() {
            Some(Refused::TimedOut(_)) => Err(BodyError::TimedOut(error.to_string())),
            Some(Refused::BufferFull) => Err(BodyError::Busy(error.to_string())),
            None => Err(BodyError::Read(error.to_string())),
        },
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
