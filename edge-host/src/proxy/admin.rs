//! Admin endpoint: `GET /stats` (Prometheus text of the plugin metrics), `GET /ready`.
//!
//! The port is meant for a scraper on a private network, but it is still a listener one
//! client must not be able to hold: every connection is bounded ([`AdminLimits`]). A request
//! head must arrive within the header-read timeout, which hyper also runs while a kept-alive
//! connection waits for its next request (so it is the idle timeout too); the admin routes
//! take no body, so a request announcing one is answered 413 and the connection closed
//! without reading it (no body-read wait exists); connections beyond the cap are answered
//! 503 and closed; headers are bounded in count and bytes (431).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::forward::{simple, ProxyBody};
use crate::plugin::Plugin;

/// Default of [`AdminLimits::header_read_timeout`] (`--admin-header-read-timeout-ms`).
pub const DEFAULT_ADMIN_HEADER_READ_TIMEOUT_MS: u64 = 5_000;
/// Default of [`AdminLimits::max_connections`] (`--admin-max-connections`).
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;
/// Most request headers on the admin port (431 beyond).
pub const ADMIN_MAX_HEADERS: usize = 32;
/// Largest request head on the admin port; hyper's smallest read buffer (431 beyond).
pub const ADMIN_MAX_HEADER_BYTES: usize = 8 * 1024;

/// Bounds on every admin connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// A request head must be complete within this, counted from the connection's start or
    /// from the end of the previous answer (so an idle kept-alive connection is closed
    /// after it too).
    pub header_read_timeout: Duration,
    /// Connections open at once; further ones get 503 and are closed.
    pub max_connections: usize,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            header_read_timeout: Duration::from_millis(DEFAULT_ADMIN_HEADER_READ_TIMEOUT_MS),
            max_connections: DEFAULT_ADMIN_MAX_CONNECTIONS,
        }
    }
}

fn text(status: u16, body: String) -> Response<ProxyBody> {
    simple(
        status,
        &[("content-type".into(), "text/plain; version=0.0.4".into())],
        body.into_bytes(),
    )
}

/// Whether a request announces a body (the admin routes take none).
fn has_body<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(TRANSFER_ENCODING)
        || req
            .headers()
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

fn route<B>(stats: &dyn Fn() -> String, req: &Request<B>) -> Response<ProxyBody> {
    if has_body(req) {
        let mut r = text(413, "the admin endpoint takes no request body\n".into());
        r.headers_mut()
            .insert(CONNECTION, hyper::header::HeaderValue::from_static("close"));
        return r;
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/stats") => text(200, stats()),
        (&Method::GET, "/ready") => text(200, "ready\n".into()),
        _ => text(404, "not found\n".into()),
    }
}

/// The answer to a connection over the cap, written without reading its request.
const OVER_CAP: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
connection: close\r\ncontent-length: 32\r\nretry-after: 1\r\n\r\ntoo many admin connections open\n";

async fn refuse(mut stream: TcpStream) {
    // Bounded: a client that does not read its 503 does not keep the task.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(OVER_CAP).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Serves `stats` on `/stats` until `shutdown` completes, under `limits`.
pub async fn serve_admin_with(
    stats: Arc<dyn Fn() -> String + Send + Sync>,
    listener: TcpListener,
    limits: AdminLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tokio::spawn(refuse(stream));
                    continue;
                };
                let stats = stats.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let svc = service_fn(move |req| {
                        let r = route(&*stats, &req);
                        async move { Ok::<_, std::convert::Infallible>(r) }
                    });
                    let _ = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(limits.header_read_timeout)
                        .max_headers(ADMIN_MAX_HEADERS)
                        .max_buf_size(ADMIN_MAX_HEADER_BYTES)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            () = &mut shutdown => break,
        }
    }
}

/// Serves the plugin's metrics on `/stats` until `shutdown` completes, under `limits`.
pub async fn serve_admin(
    plugin: Plugin,
    listener: TcpListener,
    limits: AdminLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let stats = Arc::new(move || plugin.prometheus());
    serve_admin_with(stats, listener, limits, shutdown).await;
}

#[cfg(test)]
#[path = "admin_tests.rs"]
mod tests;
