//! `edge-proxy`: a small reverse proxy that runs every request through the filter.
//!
//! Requests are assigned to workers round-robin per connection; each worker is one VM.
//! The listener speaks HTTP/1.1 and HTTP/2 (h2c, prior knowledge); upstreams HTTP/1.1.

mod admin;
mod args;
mod body;
mod forward;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::plugin::Plugin;
use crate::worker::{Worker, WorkerHandle};

pub use admin::{serve_admin, serve_admin_with, AdminLimits};
pub use args::{run, Args};

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of [`serve`].
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Base URL passing requests are forwarded to (`http://host:port`).
    pub upstream: String,
    /// The loaded filter.
    pub plugin: Plugin,
    /// Number of workers (VMs); at least 1.
    pub workers: usize,
}

pub(crate) struct Shared {
    pub workers: Vec<WorkerHandle>,
    pub next: AtomicUsize,
    pub client: Client<HttpConnector, body::Frames>,
    pub upstream: String,
}

/// Serves until SIGINT / SIGTERM, then drains in-flight requests.
pub async fn serve(cfg: ProxyConfig, listener: TcpListener) -> anyhow::Result<()> {
    serve_with_shutdown(cfg, listener, shutdown_signal()).await
}

/// Serves until `shutdown` completes, then drains in-flight requests.
pub async fn serve_with_shutdown(
    cfg: ProxyConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Handle::current();
    let mut workers = Vec::new();
    for _ in 0..cfg.workers.max(1) {
        workers.push(Worker::spawn(cfg.plugin.clone(), runtime.clone())?);
    }
    let shared = Arc::new(Shared {
        workers,
        next: AtomicUsize::new(0),
        client: Client::builder(TokioExecutor::new()).build_http(),
        upstream: cfg.upstream.trim_end_matches('/').to_string(),
    });
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                serve_connection(&shared, &graceful, stream, peer);
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining connections");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}");
    }
    Ok(())
}

fn serve_connection(
    shared: &Arc<Shared>,
    graceful: &GracefulShutdown,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let n = shared.next.fetch_add(1, Ordering::Relaxed);
    let worker = shared.workers[n % shared.workers.len()].clone();
    let shared = shared.clone();
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        let worker = worker.clone();
        async move {
            Ok::<_, std::convert::Infallible>(forward::handle(&shared, &worker, peer, req).await)
        }
    });
    // HTTP/1.1, or HTTP/2 over cleartext with prior knowledge (h2c), told apart by the
    // connection preface.
    let conn = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), svc)
        .into_owned();
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%peer, "connection error: {e}");
        }
    });
}

/// A future completing on SIGINT or (on Unix) SIGTERM. The handlers are installed when this
/// function is called, not when the future is first polled, so a signal arriving in between
/// is not lost.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => {
                    tracing::warn!("cannot install signal handlers; waiting for ctrl-c");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub(crate) fn bind_context(addr: &str) -> String {
    format!("binding {addr}")
}

/// Binds a listener, with the address in the error.
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| bind_context(addr))
}
