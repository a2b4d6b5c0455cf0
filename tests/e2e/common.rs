//! Helpers shared by the end-to-end tests.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge_host::HostProfile;
use edge_policy::config::{ControlPlane, FilterConfig};
use edge_policy::{IpNet, Mode, Rule, RuleKind, Target};
use edge_testkit::{Proc, TempDir};
use serde_json::{json, Value};

/// A temporary directory `edge-e2e-<tag>-…`, removed on drop.
pub fn temp_dir(tag: &str) -> TempDir {
    edge_testkit::temp_dir(&format!("e2e-{tag}")).unwrap()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A plugin configuration for tests: fast sync, 1 s reports, one trusted hop, accounts from
/// `x-account-id`, trusting the stand-in policy server's key (tests against the real control
/// plane trust its keys instead). Tests change the fields they are about.
pub fn plugin_config(cluster: &str, token: &str) -> FilterConfig {
    let mut cfg = FilterConfig::new(
        ControlPlane::new(
            cluster,
            "control-plane",
            vec![edge_testkit::test_trusted_key()],
        ),
        token,
        "edge-test-1",
    );
    cfg.sync.long_poll_wait_s = 5;
    cfg.sync.retry_initial_ms = 100;
    cfg.sync.retry_max_ms = 500;
    cfg.sync.report_interval_s = 1;
    cfg.sync.shared_check_ms = 50;
    cfg.trusted_hops = 1;
    cfg.account_header = Some("x-account-id".into());
    cfg
}

/// An `edge-proxy` process running the real filter.
pub struct Edge {
    pub proc: Proc,
    pub url: String,
    pub admin: String,
    _dir: TempDir,
}

/// The host profile the edges of this run behave like: `EDGE_HOST_PROFILE` (`envoy` when
/// unset). The test command runs the suite once per profile.
pub fn profile() -> HostProfile {
    match std::env::var("EDGE_HOST_PROFILE") {
        Ok(p) => p
            .parse()
            .unwrap_or_else(|e| panic!("EDGE_HOST_PROFILE: {e}")),
        Err(_) => HostProfile::Envoy,
    }
}

/// `cfg` as an operator would write it for `profile`: the control plane's upstream is the
/// cluster's name for Envoy, its `host:port` for Kong (the first endpoint's, when the
/// cluster lists several: `http://a:1,http://b:2`).
pub fn config_for(
    profile: HostProfile,
    cfg: &FilterConfig,
    clusters: &[(&str, String)],
) -> FilterConfig {
    let mut cfg = cfg.clone();
    let name = cfg.control_plane.cluster.clone();
    if let Some((_, url)) = clusters.iter().find(|(n, _)| *n == name) {
        let first = url.split(',').next().unwrap_or(url);
        let addr = first
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("cluster {name} = {url}: not http://ip:port ({e})"));
        cfg.control_plane.cluster = profile.upstream_name(&name, addr);
    }
    cfg
}

impl Edge {
    /// An edge under this run's [`profile`].
    pub fn start(
        cfg: &FilterConfig,
        clusters: &[(&str, String)],
        upstream: &str,
        workers: u32,
    ) -> Edge {
        Edge::start_as(profile(), cfg, clusters, upstream, workers)
    }

    pub fn start_as(
        profile: HostProfile,
        cfg: &FilterConfig,
        clusters: &[(&str, String)],
        upstream: &str,
        workers: u32,
    ) -> Edge {
        let cfg = &config_for(profile, cfg, clusters);
        let dir = temp_dir("edge");
        let cfg_path = edge_testkit::write_plugin_config(dir.path(), "plugin.json", cfg).unwrap();
        let mut cmd = Command::new(edge_testkit::bin("edge-proxy").unwrap());
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--admin-listen")
            .arg("127.0.0.1:0")
            .arg("--upstream")
            .arg(upstream)
            .arg("--wasm")
            .arg(edge_testkit::filter_wasm().unwrap())
            .arg("--plugin-config")
            .arg(&cfg_path)
            .arg("--workers")
            .arg(workers.to_string())
            .arg("--profile")
            .arg(profile.as_str());
        for (name, url) in clusters {
            cmd.arg("--cluster").arg(format!("{name}={url}"));
        }
        cmd.env("RUST_LOG", "info");
        let (mut proc, url) = tokio::task::block_in_place(|| {
            Proc::start("edge-proxy", cmd, "edge-proxy listening on ")
        });
        let admin = tokio::task::block_in_place(|| {
            proc.wait_for_line("edge-proxy admin on ", Duration::from_secs(10))
        })
        .unwrap_or_else(|| panic!("no admin address; output:\n{}", proc.output_text()));
        Edge {
            proc,
            url,
            admin,
            _dir: dir,
        }
    }

    /// A counter or gauge from the admin `/stats` (Prometheus text); 0 when absent.
    pub async fn stat(&self, name_part: &str) -> u64 {
        prometheus_sum(&format!("{}/stats", self.admin), |l| l.contains(name_part)).await
    }
}

/// The sum of the samples at `url` (Prometheus text) whose line `keep` accepts.
pub async fn prometheus_sum(url: &str, keep: impl Fn(&str) -> bool) -> u64 {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && keep(l))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// A client that opens a new connection per request, so requests spread over workers.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

pub async fn send(req: reqwest::RequestBuilder) -> Resp {
    let r = req.send().await.expect("request to edge");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

/// GET `path` as client `ip` (through a trusted X-Forwarded-For hop).
pub async fn get_as(edge: &Edge, ip: &str, path: &str) -> Resp {
    send(
        client()
            .get(format!("{}{path}", edge.url))
            .header("x-forwarded-for", ip),
    )
    .await
}

/// Poll until `f` returns true, or panic after `timeout` with `what`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[track_caller]
pub fn expect_blocked(r: &Resp, rule: u64) {
    assert_eq!(
        r.status, 403,
        "expected 403 from rule {rule}, got {} {}",
        r.status, r.body
    );
    let v: Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|_| panic!("403 body is not JSON: {}", r.body));
    assert_eq!(v["rule"], json!(rule), "{}", r.body);
    assert_eq!(v["error"], json!("blocked"), "{}", r.body);
}

#[track_caller]
pub fn expect_upstream(r: &Resp) {
    assert_eq!(
        r.status, 200,
        "expected the upstream's 200, got {} {}",
        r.status, r.body
    );
    assert!(
        r.body.starts_with("upstream saw "),
        "not from upstream: {}",
        r.body
    );
}

pub fn rule(id: u64, kind: RuleKind) -> Rule {
    Rule {
        id,
        incident: Some(1),
        mode: Mode::Enforce,
        expires_at_ms: None,
        kind,
    }
}

pub fn block_ip(id: u64, net: &str) -> Rule {
    let net: IpNet = net
        .parse()
        .or_else(|_| net.parse::<IpAddr>().map(IpNet::from))
        .unwrap();
    rule(id, RuleKind::Block(Target::Ip(net)))
}
