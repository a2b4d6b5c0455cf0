//! One client connection: HTTP/1.1 through hyper, watched for the header-read and idle
//! timeouts, ended at once when one passes (in-flight requests have their own limits:
//! the body-read timeout, the long-poll `wait`).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::http::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tower::ServiceExt;

use super::body::DeadlineBody;
use super::ConnLimits;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Where a connection is between requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading a request head (from the connection's start, or from the first byte after
    /// an idle wait): the header-read timeout runs.
    Head,
    /// Kept alive between requests, nothing received: the idle timeout runs (refreshed by
    /// writes, so a slow reader of a large answer is not cut off while it reads).
    Idle,
    /// A request is being served: no connection deadline.
    Busy,
}

struct Activity {
    phase: Phase,
    since: Instant,
    in_flight: usize,
}

/// Shared by the socket wrapper, the service and the watchdog.
struct ConnState {
    activity: Mutex<Activity>,
    changed: Notify,
}

impl ConnState {
    fn new() -> Self {
        ConnState {
            activity: Mutex::new(Activity {
                phase: Phase::Head,
                since: Instant::now(),
                in_flight: 0,
            }),
            changed: Notify::new(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Activity) -> R) -> R {
        let mut a = self
            .activity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut a)
    }

    fn on_read(&self) {
        let started = self.with(|a| {
            let idle = a.phase == Phase::Idle;
            if idle {
                a.phase = Phase::Head;
                a.since = Instant::now();
            }
            idle
        });
        if started {
            self.changed.notify_one();
        }
    }

    fn on_write(&self) {
        self.with(|a| {
            if a.phase == Phase::Idle {
                a.since = Instant::now();
            }
        });
    }

    fn begin(&self) {
        self.with(|a| {
            a.in_flight += 1;
            a.phase = Phase::Busy;
        });
        self.changed.notify_one();
    }

    fn end(&self) {
        self.with(|a| {
            a.in_flight = a.in_flight.saturating_sub(1);
            if a.in_flight == 0 {
                a.phase = Phase::Idle;
                a.since = Instant::now();
            }
        });
        self.changed.notify_one();
    }

    /// The current deadline and what it is for.
    fn deadline(&self, limits: &ConnLimits) -> Option<(Instant, &'static str)> {
        self.with(|a| match a.phase {
            Phase::Head => Some((a.since + limits.header_read_timeout, "header_timeout")),
            Phase::Idle => Some((a.since + limits.idle_timeout, "idle_timeout")),
            Phase::Busy => None,
        })
    }
}

/// Marks a request in flight until dropped (also when the client hangs up mid-request).
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn new(state: Arc<ConnState>) -> Self {
        state.begin();
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Resolves with the reason once a connection deadline passes.
async fn watchdog(state: Arc<ConnState>, limits: ConnLimits) -> &'static str {
    loop {
        match state.deadline(&limits) {
            Some((at, reason)) if Instant::now() >= at => return reason,
            Some((at, _)) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = state.changed.notified() => {}
                }
            }
            None => state.changed.notified().await,
        }
    }
}

/// The socket, telling [`ConnState`] when bytes move.
struct Tracked {
    io: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_read();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.on_write();
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.on_write();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Refuse a request before routing when its headers or announced body exceed the limits.
fn precheck<B>(req: &Request<B>, limits: &ConnLimits) -> Option<Response> {
    let headers = req.headers();
    if headers.len() > limits.max_headers {
        return Some(too_large_headers(format!(
            "at most {} request headers",
            limits.max_headers
        )));
    }
    let size = req.uri().to_string().len()
        + headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if size > limits.max_header_bytes {
        return Some(too_large_headers(format!(
            "request line and headers may be at most {} bytes",
            limits.max_header_bytes
        )));
    }
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_request_bytes as u64) {
        return Some(
            ApiError::input(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "body",
                format!(
                    "Content-Length exceeds the largest accepted body ({} bytes)",
                    limits.max_request_bytes
                ),
            )
            .into_response(),
        );
    }
    None
}

fn too_large_headers(message: String) -> Response {
    ApiError::input(
        axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
        "headers",
        message,
    )
    .into_response()
}

/// Serve one accepted connection until it ends, a deadline passes, or shutdown.
pub(super) async fn serve(
    stream: TcpStream,
    router: Router,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    let _permit = permit;
    metrics.connections_open.inc();
    let state = Arc::new(ConnState::new());
    let io = TokioIo::new(Tracked {
        io: stream,
        state: state.clone(),
    });
    let svc_state = state.clone();
    let svc_limits = limits.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let guard = InFlight::new(svc_state.clone());
        let router = router.clone();
        let limits = svc_limits.clone();
        async move {
            let _guard = guard;
            if let Some(refused) = precheck(&req, &limits) {
                return Ok::<_, std::convert::Infallible>(refused);
            }
            let req =
                req.map(|b| axum::body::Body::new(DeadlineBody::new(b, limits.body_read_timeout)));
            router.oneshot(req).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The watchdog times head reads (hyper's timer would also end idle keep-alives).
        .header_read_timeout(None)
        // Backstops: within them, `precheck` answers with the API's error body.
        .max_headers(limits.max_headers.saturating_mul(2).max(100))
        .max_header_size(limits.max_header_bytes.saturating_mul(2).max(8192));
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let dog = watchdog(state, limits);
    tokio::pin!(dog);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            reason = &mut dog => {
                tracing::debug!(reason, "closing a connection");
                metrics.connections_closed.with_label_values(&[reason]).inc();
                break;
            }
            _ = shutdown.wait_for(|s| *s), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    metrics.connections_open.dec();
}

/// Answer a connection over the limit with 503 and close it, without reading a request.
pub(super) async fn refuse(mut stream: TcpStream, limit: usize) {
    let body = serde_json::json!({"error": {
        "code": "overloaded",
        "message": format!("the server has {limit} connections open, its limit; retry shortly"),
    }})
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent so closing does not reset the answer away.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}
