//! Command-line configuration of `edge-proxy`.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

use super::{bind, serve_admin, serve_with_shutdown, shutdown_signal, AdminLimits, ProxyConfig};
use crate::options::{FailMode, HostOptions, HostProfile};
use crate::plugin::Plugin;

/// edge-proxy: a reverse proxy running a proxy-wasm filter on wasmtime.
#[derive(Debug, Clone, Parser)]
#[command(name = "edge-proxy", version, about)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port. The bound address is printed on
    /// stdout as `edge-proxy listening on http://ADDR`.
    #[arg(long, env = "EDGE_PROXY_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: String,

    /// Base URL passing requests are forwarded to, e.g. `http://127.0.0.1:8080`.
    #[arg(long, env = "EDGE_PROXY_UPSTREAM")]
    pub upstream: String,

    /// Path of the filter module (`.wasm`).
    #[arg(long, env = "EDGE_PROXY_WASM")]
    pub wasm: PathBuf,

    /// File whose bytes are the plugin configuration (handed to `proxy_on_configure`).
    #[arg(long, env = "EDGE_PROXY_PLUGIN_CONFIG")]
    pub plugin_config: Option<PathBuf>,

    /// Upstream cluster for the filter's HTTP calls, as `NAME=URL` (repeatable).
    #[arg(long = "cluster", env = "EDGE_PROXY_CLUSTERS", value_delimiter = ',')]
    pub clusters: Vec<String>,

    /// Number of workers (one VM each); connections are assigned round-robin.
    #[arg(long, env = "EDGE_PROXY_WORKERS", default_value_t = 2)]
    pub workers: usize,

    /// What to do with a request whose filter callback trapped: `open` forwards it,
    /// `closed` answers 503.
    #[arg(long, env = "EDGE_PROXY_FAIL_MODE", default_value = "closed")]
    pub fail_mode: FailMode,

    /// Optional admin address serving `GET /stats` (Prometheus) and `GET /ready`.
    #[arg(long, env = "EDGE_PROXY_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,

    /// Admin port: a request head must arrive within this many milliseconds, counted from
    /// the connection's start or the end of the previous answer (so it also closes idle
    /// kept-alive connections).
    #[arg(long, env = "EDGE_PROXY_ADMIN_HEADER_READ_TIMEOUT_MS", default_value_t = super::admin::DEFAULT_ADMIN_HEADER_READ_TIMEOUT_MS)]
    pub admin_header_read_timeout_ms: u64,

    /// Admin port: connections open at once; further ones are answered 503 and closed.
    #[arg(long, env = "EDGE_PROXY_ADMIN_MAX_CONNECTIONS", default_value_t = super::admin::DEFAULT_ADMIN_MAX_CONNECTIONS)]
    pub admin_max_connections: usize,

    /// Wall-clock budget of one filter callback in milliseconds; a callback running longer
    /// traps (and the VM is re-created). Only a guard against runaway loops: it must stay
    /// above the longest legitimate callback (adopting a large policy, up to a second).
    #[arg(long, env = "EDGE_PROXY_CALLBACK_DEADLINE_MS", default_value_t = crate::options::DEFAULT_CALLBACK_DEADLINE.as_millis() as u64)]
    pub callback_deadline_ms: u64,

    /// The production host to behave like: `envoy` (HTTP calls name a `--cluster`) or `kong`
    /// (ngx_wasm_module: HTTP calls name `host:port` and are allowed only from request
    /// callbacks, ticks and callout responses; strict shared-data CAS; `source.address`
    /// without port). A filter doing what the host refuses traps as it would there.
    #[arg(long, env = "EDGE_PROXY_PROFILE", default_value = "envoy")]
    pub profile: HostProfile,

    /// Plugin name (property `plugin_name`).
    #[arg(long, env = "EDGE_PROXY_PLUGIN_NAME", default_value = "edge")]
    pub plugin_name: String,
}

fn parse_clusters(raw: &[String]) -> anyhow::Result<HashMap<String, String>> {
    raw.iter()
        .map(|c| {
            let (name, url) = c
                .split_once('=')
                .with_context(|| format!("--cluster `{c}`: expected NAME=URL"))?;
            anyhow::ensure!(
                !name.is_empty() && url.starts_with("http://"),
                "--cluster `{c}`: expected NAME=http://host:port"
            );
            Ok((name.to_string(), url.to_string()))
        })
        .collect()
}

/// Runs `edge-proxy` until SIGINT / SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.upstream.starts_with("http://"),
        "--upstream must be an http:// URL, got `{}`",
        args.upstream
    );
    let plugin_config = match &args.plugin_config {
        Some(p) => {
            std::fs::read(p).with_context(|| format!("reading --plugin-config {}", p.display()))?
        }
        None => Vec::new(),
    };
    let listener = bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    let opts = HostOptions {
        plugin_name: args.plugin_name.clone(),
        plugin_config,
        clusters: parse_clusters(&args.clusters)?,
        fail_mode: args.fail_mode,
        destination_address: Some(addr),
        callback_deadline: std::time::Duration::from_millis(args.callback_deadline_ms),
        ..args.profile.options()
    };
    let plugin = Plugin::load_file(&args.wasm, opts)?;
    let signal = shutdown_signal();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin = match &args.admin_listen {
        Some(a) => {
            let l = bind(a).await?;
            let mut rx = stop_rx.clone();
            let admin_addr = l.local_addr()?;
            println!("edge-proxy admin on http://{admin_addr}");
            let limits = AdminLimits {
                header_read_timeout: std::time::Duration::from_millis(
                    args.admin_header_read_timeout_ms,
                ),
                max_connections: args.admin_max_connections,
            };
            Some(tokio::spawn(serve_admin(
                plugin.clone(),
                l,
                limits,
                async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                },
            )))
        }
        None => None,
    };
    println!("edge-proxy listening on http://{addr}");
    std::io::stdout().flush()?;
    let cfg = ProxyConfig {
        upstream: args.upstream.clone(),
        plugin,
        workers: args.workers,
    };
    let result = serve_with_shutdown(cfg, listener, signal).await;
    let _ = stop_tx.send(true);
    if let Some(a) = admin {
        let _ = a.await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_parse_and_reject_garbage() {
        let c = parse_clusters(&["cp=http://127.0.0.1:1".into()]).expect("valid");
        assert_eq!(c.get("cp").map(String::as_str), Some("http://127.0.0.1:1"));
        assert!(parse_clusters(&["nope".into()]).is_err());
        assert!(parse_clusters(&["x=ftp://a".into()]).is_err());
    }

    #[test]
    fn args_parse() {
        let a = Args::try_parse_from([
            "edge-proxy",
            "--upstream",
            "http://127.0.0.1:1",
            "--wasm",
            "f.wasm",
            "--cluster",
            "a=http://127.0.0.1:2",
            "--cluster",
            "b=http://127.0.0.1:3",
            "--fail-mode",
            "open",
        ])
        .expect("parses");
        assert_eq!(a.clusters.len(), 2);
        assert_eq!(a.fail_mode, FailMode::Open);
        assert_eq!(a.workers, 2);
        assert_eq!(a.profile, HostProfile::Envoy);
        let k = Args::try_parse_from([
            "edge-proxy",
            "--upstream",
            "http://127.0.0.1:1",
            "--wasm",
            "f.wasm",
            "--profile",
            "kong",
        ])
        .expect("parses");
        assert_eq!(k.profile, HostProfile::Kong);
    }
}
