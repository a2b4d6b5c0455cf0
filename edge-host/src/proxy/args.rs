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

    /// Upstream cluster for the filter's HTTP calls (the upstream name it dispatches to), as
    /// `NAME=URL[,URL...]` (repeatable; in EDGE_PROXY_CLUSTERS, clusters are separated by
    /// commas too: `cp=http://a:1,http://b:2,x=http://c:3`). URLs are `http://host:port`.
    /// Calls to a cluster of several endpoints go round-robin to the healthy ones; an
    /// endpoint whose connection fails or times out (or that answers 5xx five times in a
    /// row) is ejected for 30 s, growing with each ejection in a row, up to 300 s; a call
    /// whose connection failed is retried once on another endpoint; with every endpoint
    /// ejected, calls go to all of them anyway. Not with `--profile kong` (no clusters).
    #[arg(
        long = "cluster",
        env = "EDGE_PROXY_CLUSTERS",
        value_delimiter = ',',
        value_name = "NAME=URL[,URL...]"
    )]
    pub clusters: Vec<String>,

    /// Active health check of a cluster's endpoints, as `NAME=PATH` (repeatable), e.g.
    /// `cp=/healthz` for the control plane (which answers 503 there when its database is
    /// unreachable): each endpoint is sent `GET PATH` every `--cluster-health-interval-ms`
    /// and takes calls only while it answers 200. Off for clusters not named here.
    #[arg(
        long = "cluster-health-path",
        env = "EDGE_PROXY_CLUSTER_HEALTH_PATHS",
        value_delimiter = ',',
        value_name = "NAME=PATH"
    )]
    pub cluster_health_paths: Vec<String>,

    /// Interval of the active health checks in milliseconds.
    #[arg(long, env = "EDGE_PROXY_CLUSTER_HEALTH_INTERVAL_MS", default_value_t = crate::options::DEFAULT_HEALTH_CHECK_INTERVAL.as_millis() as u64)]
    pub cluster_health_interval_ms: u64,

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

/// The `--cluster` items (already split at commas) as clusters: `NAME=URL` starts a cluster,
/// a bare `URL` adds an endpoint to the cluster before it. Refuses an endpoint before any
/// cluster, a URL that is not `http://host:port`, an endpoint or a cluster given twice, and
/// (under Kong, which has no clusters and dials `host:port` itself) a cluster of several
/// endpoints, whose balancing and failover would silently not happen.
fn parse_clusters(
    raw: &[String],
    profile: HostProfile,
) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let mut order: Vec<(String, Vec<String>)> = Vec::new();
    for item in raw {
        let item = item.trim();
        let (name, url) = match item.split_once('=') {
            // A URL has `://` before any `=` (of its query); a name has no `/`.
            Some((name, url)) if !name.contains('/') => (Some(name), url),
            _ => (None, item),
        };
        let url = endpoint_url(url).map_err(|why| anyhow::anyhow!("--cluster `{item}`: {why}"))?;
        match name {
            Some(name) => {
                anyhow::ensure!(
                    !name.is_empty() && !name.contains(char::is_whitespace),
                    "--cluster `{item}`: the cluster name before `=` must be non-empty, without spaces"
                );
                anyhow::ensure!(
                    !order.iter().any(|(n, _)| n == name),
                    "--cluster `{item}`: cluster `{name}` is given twice (list all its endpoints \
                     after one `{name}=`, separated by commas)"
                );
                order.push((name.to_string(), vec![url]));
            }
            None => {
                let Some((name, endpoints)) = order.last_mut() else {
                    anyhow::bail!(
                        "--cluster `{item}`: an endpoint before any NAME=; expected \
                         NAME=URL[,URL...]"
                    );
                };
                anyhow::ensure!(
                    !endpoints.contains(&url),
                    "--cluster `{item}`: endpoint {url} is listed twice in cluster `{name}`"
                );
                endpoints.push(url);
            }
        }
    }
    if profile == HostProfile::Kong {
        if let Some((name, endpoints)) = order.iter().find(|(_, e)| e.len() > 1) {
            anyhow::bail!(
                "--cluster {name}={}: the kong profile has no clusters (its HTTP calls name \
                 host:port and go to that one address), so several endpoints cannot be \
                 balanced; give one, or use --profile envoy",
                endpoints.join(",")
            );
        }
    }
    Ok(order.into_iter().collect())
}

/// `url` as an endpoint base URL (`http://host:port`, no trailing `/`), or why not.
fn endpoint_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "`{url}` is not an http:// URL (edge-proxy calls clusters over cleartext \
             HTTP/1.1); expected NAME=URL[,URL...]"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let url = format!("http://{rest}");
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not http://host:port ({e})"))?;
    let authority_only = !rest.is_empty() && !rest.contains(['/', '?', '#']);
    match uri.authority() {
        Some(a) if authority_only && a.port_u16().is_some() && !a.host().is_empty() => Ok(url),
        _ => Err(format!("`{url}` is not http://host:port")),
    }
}

/// The `--cluster-health-path` items as cluster name -> path; each must name a cluster.
fn parse_health_paths(
    raw: &[String],
    clusters: &HashMap<String, Vec<String>>,
) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for item in raw {
        let (name, path) = item
            .trim()
            .split_once('=')
            .with_context(|| format!("--cluster-health-path `{item}`: expected NAME=PATH"))?;
        anyhow::ensure!(
            path.starts_with('/'),
            "--cluster-health-path `{item}`: the path must start with `/`"
        );
        anyhow::ensure!(
            clusters.contains_key(name),
            "--cluster-health-path `{item}`: no --cluster named `{name}`"
        );
        anyhow::ensure!(
            out.insert(name.to_string(), path.to_string()).is_none(),
            "--cluster-health-path `{item}`: cluster `{name}` is given twice"
        );
    }
    Ok(out)
}

/// Runs `edge-proxy` until SIGINT / SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.upstream.starts_with("http://"),
        "--upstream must be an http:// URL, got `{}`",
        args.upstream
    );
    let clusters = parse_clusters(&args.clusters, args.profile)?;
    let cluster_health_checks = parse_health_paths(&args.cluster_health_paths, &clusters)?;
    anyhow::ensure!(
        args.cluster_health_interval_ms > 0,
        "--cluster-health-interval-ms must be above 0"
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
        clusters,
        cluster_health_checks,
        health_check_interval: std::time::Duration::from_millis(args.cluster_health_interval_ms),
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

    fn items(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn parse(s: &[&str]) -> anyhow::Result<HashMap<String, Vec<String>>> {
        parse_clusters(&items(s), HostProfile::Envoy)
    }

    #[track_caller]
    fn refused(s: &[&str], profile: HostProfile, needle: &str) {
        let err = parse_clusters(&items(s), profile).expect_err("refused");
        let msg = format!("{err:#}");
        assert!(msg.starts_with("--cluster"), "{msg}");
        assert!(msg.contains(needle), "`{needle}` not in: {msg}");
    }

    #[test]
    fn clusters_parse_one_endpoint_each_as_before() {
        let c = parse(&["cp=http://127.0.0.1:1"]).expect("valid");
        assert_eq!(c["cp"], ["http://127.0.0.1:1"]);
        let c = parse(&["a=http://127.0.0.1:2/", "b=http://localhost:3"]).expect("valid");
        assert_eq!(c["a"], ["http://127.0.0.1:2"], "trailing / dropped");
        assert_eq!(c["b"], ["http://localhost:3"]);
        assert!(parse(&[]).expect("valid").is_empty());
    }

    #[test]
    fn an_item_without_a_name_continues_the_cluster_before_it() {
        let want = |c: &HashMap<String, Vec<String>>| {
            assert_eq!(c.len(), 2);
            assert_eq!(c["cp"], ["http://a:1", "http://b:2"]);
            assert_eq!(c["x"], ["http://c:3"]);
        };
        // `--cluster cp=http://a:1,http://b:2 --cluster x=http://c:3`
        want(&parse(&["cp=http://a:1", "http://b:2", "x=http://c:3"]).expect("valid"));
        let a = Args::try_parse_from([
            "edge-proxy",
            "--upstream",
            "http://127.0.0.1:1",
            "--wasm",
            "f.wasm",
            "--cluster",
            "cp=http://a:1,http://b:2",
            "--cluster",
            "x=http://c:3",
        ])
        .expect("parses");
        want(&parse_clusters(&a.clusters, a.profile).expect("valid"));
        // The same list from EDGE_PROXY_CLUSTERS (clap splits it at the same commas).
        let cmd = <Args as clap::CommandFactory>::command();
        let env_value = "cp=http://a:1,http://b:2,x=http://c:3";
        let split: Vec<String> = env_value.split(',').map(str::to_string).collect();
        want(&parse_clusters(&split, HostProfile::Envoy).expect("valid"));
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == "clusters")
            .expect("the --cluster argument");
        assert_eq!(
            arg.get_env().and_then(|e| e.to_str()),
            Some("EDGE_PROXY_CLUSTERS")
        );
        assert_eq!(arg.get_value_delimiter(), Some(','));
    }

    #[test]
    fn clusters_refuse_garbage_naming_the_flag() {
        let e = HostProfile::Envoy;
        refused(&["nope"], e, "not an http:// URL");
        refused(&["x=ftp://a:1"], e, "not an http:// URL");
        refused(&["x=https://a:1"], e, "not an http:// URL");
        refused(&["http://a:1"], e, "an endpoint before any NAME=");
        refused(
            &["http://a:1", "x=http://b:2"],
            e,
            "an endpoint before any NAME=",
        );
        refused(&["=http://a:1"], e, "name");
        refused(
            &["x=http://a:1", "http://a:1"],
            e,
            "listed twice in cluster `x`",
        );
        refused(&["x=http://a:1/", "http://a:1"], e, "listed twice");
        refused(
            &["x=http://a:1", "x=http://b:2"],
            e,
            "cluster `x` is given twice",
        );
        refused(&["x=http://a:1", ""], e, "not an http:// URL");
        refused(&["x=http://"], e, "not http://host:port");
        refused(&["x=http://a"], e, "not http://host:port");
        refused(&["x=http://a:1/base"], e, "not http://host:port");
        refused(
            &["x=http://a:1", "http://a:1/?q=1"],
            e,
            "not http://host:port",
        );
        // The same endpoint in two clusters is fine (as in Envoy).
        assert!(parse(&["x=http://a:1", "y=http://a:1"]).is_ok());
    }

    #[test]
    fn kong_refuses_a_cluster_of_several_endpoints() {
        let k = HostProfile::Kong;
        refused(
            &["cp=http://a:1", "http://b:2"],
            k,
            "kong profile has no clusters",
        );
        // One endpoint stays accepted (and unused: Kong's calls name host:port).
        let c = parse_clusters(&items(&["cp=http://a:1"]), k).expect("valid");
        assert_eq!(c["cp"], ["http://a:1"]);
    }

    #[test]
    fn health_paths_name_a_cluster() {
        let c = parse(&["cp=http://a:1", "http://b:2"]).expect("valid");
        let h = parse_health_paths(&items(&["cp=/healthz"]), &c).expect("valid");
        assert_eq!(h["cp"], "/healthz");
        for bad in [
            &["cp"][..],
            &["cp=healthz"],
            &["x=/healthz"],
            &["cp=/a", "cp=/b"],
        ] {
            let err = parse_health_paths(&items(bad), &c).expect_err("refused");
            assert!(
                format!("{err:#}").starts_with("--cluster-health-path"),
                "{err:#}"
            );
        }
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
