//! The accept loop of both listeners (the API and `--metrics-listen`), on
//! hyper directly rather than `axum::serve`, which sets no timer and no cap:
//! a client must send its request headers within `--header-read-timeout`
//! and its whole body within `--body-read-timeout`, and at most
//! `--max-connections` connections are open at once, so slow clients cannot
//! hold the server's connections and file descriptors.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::graphql_over_http::MediaType;
use super::{REQUEST_ID, error_response};
use crate::error::AppError;

/// What one listener's connections may take.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From the moment a connection can take a request (just opened, or done
    /// with the previous one) until its headers are complete; on HTTP/2, from
    /// its opening until its preface is complete.
    pub header_read_timeout: Duration,
    /// From the end of a request's headers until the end of its body.
    pub body_read_timeout: Duration,
    /// Open at once, upgraded connections (WebSockets) included.
    pub max_connections: usize,
}

/// The open-connections gauge of one listener. Made before any listener
/// serves, so a scrape of `/metrics` lists every listener from the start,
/// not only those that have begun accepting.
pub struct OpenConnections(metrics::Gauge);

impl OpenConnections {
    /// `listener` labels the gauge.
    pub fn register(listener: &'static str) -> Self {
        let open = metrics::gauge!("plangraph_http_connections_open", "listener" => listener);
        open.set(0.0);
        Self(open)
    }
}

/// How long accepting pauses after an error that is not the client's (no
/// file descriptors left, no memory): long enough not to spin on an error
/// that only a closing connection cures, short enough to notice it soon.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `stop` completes, then takes no more
/// connections and waits for the open requests to be answered. Upgraded
/// connections (WebSockets) are not waited for: they watch the server's
/// `Shutdown` themselves. `open` counts the open connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    open: OpenConnections,
    stop: impl Future<Output = ()>,
) {
    let open = open.0;
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    // WebSockets over HTTP/2 are opened with the CONNECT protocol.
    builder.http2().enable_connect_protocol();
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        // At the cap the next connection waits in the kernel's backlog, not
        // in this process.
        let permit = tokio::select! {
            biased;
            () = &mut stop => break,
            permit = Arc::clone(&slots).acquire_owned() => permit,
        };
        let Ok(permit) = permit else {
            break;
        };
        let (stream, remote) = tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = accept(&listener) => accepted,
        };
        let slot = Slot::new(permit, open.clone());
        let headers_by = Instant::now() + limits.header_read_timeout;
        let watcher = graceful.watcher();
        let mut builder = builder.clone();
        let router = router.clone();
        let body_read_timeout = limits.body_read_timeout;
        tokio::spawn(async move {
            let Some(first) = first_bytes(&stream, headers_by).await else {
                return;
            };
            // hyper's header timer starts when it reads the first request: it
            // gets what the first bytes left of the time.
            builder
                .http1()
                .header_read_timeout(headers_by.saturating_duration_since(Instant::now()));
            let io = TokioIo::new(Counted {
                stream,
                first,
                _slot: slot,
            });
            let service = hyper::service::service_fn(move |request| {
                answer(router.clone(), request, remote, body_read_timeout)
            });
            let connection = watcher.watch(builder.serve_connection_with_upgrades(io, service));
            if let Err(error) = connection.await {
                // Timeouts, resets, malformed requests: the client's doing.
                tracing::debug!(%remote, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The first bytes of a connection without TLS under HTTP/2 "prior knowledge".
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection's first bytes, read until they tell HTTP/2's preface from
/// anything else, by `deadline`; `None` if the connection closed or had not
/// said that much in time. hyper reads these bytes to pick the protocol with
/// no timer of its own, so a connection that sent nothing, or part of the
/// preface, would otherwise be held for good.
async fn first_bytes(stream: &TcpStream, deadline: Instant) -> Option<Bytes> {
    let mut first = Vec::with_capacity(H2_PREFACE.len());
    let mut chunk = [0_u8; H2_PREFACE.len()];
    loop {
        tokio::time::timeout_at(deadline, stream.readable())
            .await
            .ok()?
            .ok()?;
        let wanted = H2_PREFACE.len() - first.len();
        match stream.try_read(&mut chunk[..wanted]) {
            Ok(0) => return None,
            Ok(read) => first.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
        if first.len() == H2_PREFACE.len() || !H2_PREFACE.starts_with(&first) {
            return Some(Bytes::from(first));
        }
    }
}

/// The next connection. Errors of one connection (reset before it was
/// accepted) are skipped; any other (`EMFILE`, `ENOMEM`) is logged once per
/// run of failures and retried after a pause, so it neither spins nor stops
/// the server.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut failing = false;
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                if failing {
                    tracing::info!("accepting connections again");
                }
                return accepted;
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                ) => {}
            Err(error) => {
                if !failing {
                    tracing::error!(%error, "cannot accept connections; retrying");
                    failing = true;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// One request through the router, with the peer's address for the
/// extractors that read it (the anonymous-request bound) and its body under
/// the deadline. A body that missed its deadline gets 408 whatever the route
/// made of the failed read.
async fn answer(
    router: Router,
    request: Request<hyper::body::Incoming>,
    remote: SocketAddr,
    body_read_timeout: Duration,
) -> Result<Response, Infallible> {
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(ConnectInfo(remote));
    if http_body::Body::is_end_stream(&body) {
        return router
            .oneshot(Request::from_parts(parts, Body::new(body)))
            .await;
    }
    let accept = parts.headers.get(header::ACCEPT).cloned();
    let timed_out = Arc::new(AtomicBool::new(false));
    let body = Deadline {
        body,
        deadline: Instant::now() + body_read_timeout,
        timer: None,
        timed_out: Arc::clone(&timed_out),
    };
    let response = router
        .oneshot(Request::from_parts(parts, Body::new(body)))
        .await?;
    if !timed_out.load(Ordering::Relaxed) {
        return Ok(response);
    }
    Ok(body_too_slow(accept, &response, body_read_timeout))
}

/// HTTP 408, GraphQL-shaped like every other refusal, keeping the request
/// id of the response it replaces. The connection closes after it: the rest
/// of the body may still be on its way, and nothing after it can be read.
fn body_too_slow(accept: Option<HeaderValue>, replaced: &Response, limit: Duration) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(accept) = accept {
        headers.insert(header::ACCEPT, accept);
    }
    let error = AppError::BadUserInput(format!(
        "The request body did not arrive within {}, the server's limit (--body-read-timeout); send the whole body at once",
        humantime::format_duration(limit)
    ));
    let mut response = error_response(
        MediaType::negotiate(&headers),
        StatusCode::REQUEST_TIMEOUT,
        &error,
    );
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Some(id) = replaced.headers().get(REQUEST_ID) {
        response_headers.insert(REQUEST_ID, id.clone());
    }
    response
}

/// A request body that must end by `deadline`. Per-frame timeouts do not
/// bound a client that sends a byte just before each one runs out; this
/// bounds the whole body. The clock only matters while the body waits for
/// the client: a body whose bytes are there when read never arms a timer.
struct Deadline<B> {
    body: B,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    /// Tells [`answer`] that the route's failure was the client's slowness.
    timed_out: Arc<AtomicBool>,
}

/// The error a late body ends with.
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("the request body did not arrive within --body-read-timeout")
    }
}

impl std::error::Error for BodyTimedOut {}

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        this.timed_out.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's place under `--max-connections`, counted in the
/// open-connections gauge, from its accept until its socket closes.
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: metrics::Gauge,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, open: metrics::Gauge) -> Slot {
        open.increment(1.0);
        Slot {
            _permit: permit,
            open,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.decrement(1.0);
    }
}

/// A connection's socket with its slot, and the bytes [`first_bytes`] took
/// from it, which hyper reads first. An upgraded connection (a WebSocket)
/// keeps the socket, so it keeps the slot.
struct Counted {
    stream: TcpStream,
    first: Bytes,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.first.is_empty() {
            let replayed = this.first.split_to(this.first.len().min(buf.remaining()));
            buf.put_slice(&replayed);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
