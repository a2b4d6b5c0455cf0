//! The HTTP server: accepts connections, serves each with hyper under the connection limits
//! ([`ConnLimits`]), refuses connections over the cap with 503, and shuts down gracefully.
//!
//! Every connection runs in its own task, so a slow client only holds its own connection,
//! and only until a deadline: a request head must arrive within the header-read timeout
//! (from the connection's start, or from its first byte after a keep-alive wait), a request
//! body within the body-read timeout (408), and a kept-alive connection with nothing to do
//! is closed after the idle timeout.

pub mod body;
mod conn;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::AppState;

/// Default of [`ConnLimits::header_read_timeout`] (`--header-read-timeout-ms`).
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Default of [`ConnLimits::body_read_timeout`] (`--body-read-timeout-ms`).
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// Default of [`ConnLimits::idle_timeout`] (`--idle-timeout-ms`).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 75_000;
/// Default of [`ConnLimits::max_headers`] (`--max-headers`).
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default of [`ConnLimits::max_header_bytes`] (`--max-header-bytes`).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Connections used when the open-file limit is unknown.
pub const FALLBACK_MAX_CONNECTIONS: usize = 1024;
/// Descriptors kept for the database, logs and the listener when the connection cap is
/// derived from the open-file limit.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// Limits applied to every connection of a listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// A request head must be complete within this.
    pub header_read_timeout: Duration,
    /// A request body must be complete within this of the request's start (408 otherwise).
    pub body_read_timeout: Duration,
    /// A kept-alive connection with no request is closed after this.
    pub idle_timeout: Duration,
    /// Connections open at once; further ones are answered 503 and closed.
    pub max_connections: usize,
    /// Most request headers (431 beyond).
    pub max_headers: usize,
    /// Largest request line plus headers, in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// A `Content-Length` above this is refused with 413 before anything is read. [`run`]
    /// sets it to the larger of the body limits; each route then applies its own.
    pub max_request_bytes: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_millis(DEFAULT_HEADER_READ_TIMEOUT_MS),
            body_read_timeout: Duration::from_millis(DEFAULT_BODY_READ_TIMEOUT_MS),
            idle_timeout: Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS),
            max_connections: FALLBACK_MAX_CONNECTIONS,
            max_headers: DEFAULT_MAX_HEADERS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_request_bytes: 8 << 20,
        }
    }
}

/// Raise the soft open-file limit to the hard limit; returns the limit now in force
/// (`None` where the platform has none to query).
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            None
        }
    }
}

/// The connection cap the open-file limit allows: the limit less the reserved descriptors.
pub fn connections_for(open_files: Option<u64>) -> usize {
    match open_files {
        Some(n) => {
            usize::try_from(n.saturating_sub(RESERVED_DESCRIPTORS).max(16)).unwrap_or(usize::MAX)
        }
        None => FALLBACK_MAX_CONNECTIONS,
    }
}

/// Accept errors that concern one connection, not the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Serve `router` on `listener` until `state.shutdown` becomes true; then stop accepting,
/// let every connection finish its request, and return.
pub async fn run(listener: TcpListener, router: axum::Router, state: &AppState) {
    let mut limits = state.settings.conn.clone();
    limits.max_request_bytes = state
        .settings
        .max_body_bytes
        .max(state.settings.max_evidence_bytes);
    // Semaphore permits are u32 for acquire_many; more connections than that is moot.
    let cap = limits.max_connections.clamp(1, u32::MAX as usize >> 1);
    let permits = Arc::new(Semaphore::new(cap));
    let mut shutdown = state.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Typically out of descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(conn::serve(
                    stream,
                    router.clone(),
                    limits.clone(),
                    state.metrics.clone(),
                    state.shutdown.clone(),
                    permit,
                ));
            }
            Err(_) => {
                state
                    .metrics
                    .connections_closed
                    .with_label_values(&["over_limit"])
                    .inc();
                tokio::spawn(conn::refuse(stream, cap));
            }
        }
    }
    drop(listener);
    // Every permit back: every connection has ended.
    let _ = permits.acquire_many(cap as u32).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_follows_the_open_file_limit() {
        assert_eq!(connections_for(Some(1024)), 960);
        assert_eq!(connections_for(Some(10)), 16);
        assert_eq!(connections_for(None), FALLBACK_MAX_CONNECTIONS);
    }
}
