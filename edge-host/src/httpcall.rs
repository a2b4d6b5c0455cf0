//! Performs a guest's `proxy_http_call` for real with a hyper client, on an endpoint of
//! the named cluster (chosen and health-tracked by [`crate::cluster::Balancer`]; this module
//! only moves the facts: which endpoint, how the attempt ended), and runs the clusters'
//! active health checks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::cluster::{Attempt, Balancer, Params};
use crate::options::{HostOptions, HostProfile};
use crate::runtime::PluginInner;
use crate::types::{HttpCallResponse, PendingHttpCall};

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// How long a connection to an endpoint may take to open (Envoy's default cluster
/// `connect_timeout`); past it the attempt is a connect failure and may be retried elsewhere.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an active health check may take.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// One configured cluster: its endpoints and their health.
pub(crate) struct Cluster {
    name: String,
    endpoints: Vec<String>,
    health_path: Option<String>,
    balancer: Mutex<Balancer>,
}

impl Cluster {
    fn balancer(&self) -> std::sync::MutexGuard<'_, Balancer> {
        self.balancer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The endpoint for a call; another than `avoid` (the one a retry comes from), or
    /// `None` when there is no other.
    fn pick(&self, avoid: Option<&str>) -> Option<&str> {
        let avoid = avoid.and_then(|u| self.endpoints.iter().position(|e| e == u));
        let i = self.balancer().pick(Instant::now(), avoid)?;
        Some(&self.endpoints[i])
    }

    fn record(&self, endpoint: &str, attempt: Attempt) {
        let Some(i) = self.endpoints.iter().position(|e| e == endpoint) else {
            return;
        };
        if let Some(e) = self.balancer().record(i, attempt, Instant::now()) {
            tracing::warn!(
                cluster = %self.name,
                endpoint,
                "endpoint ejected for {:?} ({attempt:?})",
                e.for_
            );
        }
    }
}

/// The clusters of one plugin, with the health of their endpoints, shared by all its VMs
/// and workers (as Envoy's outlier detection is shared by its worker threads).
pub(crate) struct Clusters {
    by_name: HashMap<String, Arc<Cluster>>,
    checks_started: AtomicBool,
    check_interval: Duration,
}

impl Clusters {
    /// The clusters of `opts`; none under Kong (ngx_wasm_module has no clusters).
    pub fn new(opts: &HostOptions) -> Clusters {
        let by_name = if opts.profile == HostProfile::Kong {
            HashMap::new()
        } else {
            opts.clusters
                .iter()
                .filter(|(_, endpoints)| !endpoints.is_empty())
                .map(|(name, endpoints)| {
                    let endpoints: Vec<String> = endpoints
                        .iter()
                        .map(|u| u.trim_end_matches('/').to_string())
                        .collect();
                    let cluster = Cluster {
                        name: name.clone(),
                        balancer: Mutex::new(Balancer::new(endpoints.len(), Params::default())),
                        endpoints,
                        health_path: opts.cluster_health_checks.get(name).cloned(),
                    };
                    (name.clone(), Arc::new(cluster))
                })
                .collect()
        };
        Clusters {
            by_name,
            checks_started: AtomicBool::new(false),
            check_interval: opts.health_check_interval,
        }
    }

    /// The cluster a call names, if it names one.
    pub fn get(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.by_name.get(name)
    }

    /// Starts the active health checks on `runtime` (once per plugin; later calls do
    /// nothing). Each check runs until the plugin is dropped.
    pub fn start_health_checks(&self, runtime: &tokio::runtime::Handle) {
        if self.checks_started.swap(true, Ordering::Relaxed) {
            return;
        }
        for cluster in self.by_name.values() {
            let Some(path) = cluster.health_path.clone() else {
                continue;
            };
            for i in 0..cluster.endpoints.len() {
                let weak = Arc::downgrade(cluster);
                let interval = self.check_interval;
                runtime.spawn(health_check(weak, i, path.clone(), interval));
            }
        }
    }
}

/// Checks endpoint `i` of a cluster every `interval` until the cluster is dropped.
async fn health_check(cluster: Weak<Cluster>, i: usize, path: String, interval: Duration) {
    let client = client();
    loop {
        let Some(url) = cluster
            .upgrade()
            .map(|c| format!("{}{path}", c.endpoints[i]))
        else {
            return;
        };
        let healthy =
            match tokio::time::timeout(HEALTH_CHECK_TIMEOUT, get_status(&client, &url)).await {
                Ok(Some(status)) => status == 200,
                _ => false,
            };
        let Some(c) = cluster.upgrade() else { return };
        if c.balancer().record_check(i, healthy) {
            let verdict = if healthy { "passes" } else { "fails" };
            tracing::warn!(cluster = %c.name, endpoint = %c.endpoints[i], "endpoint {verdict} its health check {path}");
        }
        drop(c);
        tokio::time::sleep(interval).await;
    }
}

async fn get_status(client: &HttpClient, url: &str) -> Option<u16> {
    let req = http::Request::get(url).body(Full::new(Bytes::new())).ok()?;
    let resp = client.request(req).await.ok()?;
    let status = resp.status().as_u16();
    // Read the (small) body so the connection can be reused.
    resp.into_body().collect().await.ok()?;
    Some(status)
}

/// Resolves an upstream name to the base URL of the call's first attempt: an endpoint of a
/// configured cluster (round-robin over the healthy ones), else (when allowed) a literal
/// `host:port`.
pub(crate) fn resolve_upstream(plugin: &PluginInner, upstream: &str) -> Option<String> {
    // Kong (ngx_wasm_module) has no clusters: only `host:port` ([`Clusters::new`]).
    if let Some(cluster) = plugin.clusters.get(upstream) {
        return cluster.pick(None).map(str::to_string);
    }
    let opts = &plugin.opts;
    if !opts.allow_host_port_upstreams {
        return None;
    }
    let (host, port) = upstream.rsplit_once(':')?;
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    (valid_host && port.parse::<u16>().is_ok()).then(|| format!("http://{upstream}"))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Sends the call and collects the response; `None` on any failure or on timeout (the
/// guest then sees a callout with no headers, as in Envoy). `cluster` is the cluster the call
/// names (`None` for a `host:port` upstream): each attempt's outcome goes to its health
/// bookkeeping, and a first attempt that failed to connect is repeated once on another
/// endpoint. The call's timeout covers both attempts, as Envoy's covers a request's retries.
pub(crate) async fn perform(
    client: &HttpClient,
    call: &PendingHttpCall,
    cluster: Option<&Cluster>,
) -> Option<HttpCallResponse> {
    let deadline = tokio::time::Instant::now() + call.timeout;
    let (attempt, resp) = try_once(client, call, &call.base_url, deadline).await?;
    let Some(cluster) = cluster else { return resp };
    cluster.record(&call.base_url, attempt);
    if attempt != Attempt::ConnectFailed {
        return resp;
    }
    // Safe to repeat whatever the method: the connection was never made, so the endpoint
    // saw nothing of the request (Envoy's `connect-failure` retry, on another host).
    let other = cluster.pick(Some(&call.base_url))?.to_string();
    tracing::debug!(cluster = %cluster.name, from = %call.base_url, to = %other, "retrying the call");
    let (attempt, resp) = try_once(client, call, &other, deadline).await?;
    cluster.record(&other, attempt);
    resp
}

/// One attempt of `call` on the endpoint at `base_url`, ending by `deadline`: how it ended,
/// and the response if there is one. `None` when the request cannot be built (no endpoint's
/// fault).
async fn try_once(
    client: &HttpClient,
    call: &PendingHttpCall,
    base_url: &str,
    deadline: tokio::time::Instant,
) -> Option<(Attempt, Option<HttpCallResponse>)> {
    let method = header(&call.headers, ":method")?;
    let path = header(&call.headers, ":path")?;
    let authority = header(&call.headers, ":authority")?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("{base_url}{path}"));
    for (k, v) in call.headers.iter().filter(|(k, _)| !k.starts_with(':')) {
        req = req.header(k.as_str(), v.as_str());
    }
    req = req.header(http::header::HOST, authority);
    let req = req.body(Full::new(Bytes::from(call.body.clone()))).ok()?;
    let fut = async {
        let resp = match client.request(req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(upstream = %call.upstream, endpoint = base_url, "http call failed: {e}");
                let how = if e.is_connect() {
                    Attempt::ConnectFailed
                } else {
                    Attempt::Failed
                };
                return (how, None);
            }
        };
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let Ok(collected) = resp.into_body().collect().await else {
            return (Attempt::Failed, None);
        };
        let trailers = collected
            .trailers()
            .map(|t| {
                t.iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut out = HttpCallResponse::new(status, headers, collected.to_bytes().to_vec());
        out.trailers = trailers;
        (Attempt::Answered(status), Some(out))
    };
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(r) => Some(r),
        Err(_) => {
            tracing::debug!(upstream = %call.upstream, endpoint = base_url, "http call timed out");
            Some((Attempt::Failed, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    use super::*;

    /// An HTTP server on 127.0.0.1 answering `GET /status/N` with status N, `/healthz` with
    /// `healthz`, anything else 200, each with `x-endpoint: <tag>`.
    async fn server(tag: &'static str) -> SocketAddr {
        server_with_healthz(tag, 200).await
    }

    async fn server_with_healthz(tag: &'static str, healthz: u16) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let path = req.uri().path();
                    let status = match path.strip_prefix("/status/") {
                        _ if path == "/healthz" => healthz,
                        Some(s) => s.parse().unwrap_or(400),
                        None => 200u16,
                    };
                    let resp = hyper::Response::builder()
                        .status(status)
                        .header("x-endpoint", tag)
                        .body(Full::new(Bytes::from_static(b"ok")))
                        .unwrap();
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        addr
    }

    fn closed() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }

    fn cluster(endpoints: Vec<String>) -> Cluster {
        Cluster {
            name: "cp".into(),
            balancer: Mutex::new(Balancer::new(endpoints.len(), Params::default())),
            endpoints,
            health_path: None,
        }
    }

    fn call(base_url: &str, path: &str) -> PendingHttpCall {
        PendingHttpCall {
            token: 1,
            upstream: "cp".into(),
            base_url: base_url.into(),
            headers: vec![
                (":method".into(), "POST".into()),
                (":path".into(), path.into()),
                (":authority".into(), "cp".into()),
            ],
            body: b"b".to_vec(),
            trailers: vec![],
            timeout: Duration::from_secs(5),
        }
    }

    fn from(resp: &Option<HttpCallResponse>) -> Option<(&str, &str)> {
        let r = resp.as_ref()?;
        let get = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        Some((get(":status")?, get("x-endpoint")?))
    }

    #[tokio::test]
    async fn a_call_refused_at_connect_is_retried_on_another_endpoint_which_takes_the_next_calls() {
        let (dead, live) = (closed(), format!("http://{}", server("b").await));
        let c = cluster(vec![dead.clone(), live.clone()]);
        let client = client();
        assert_eq!(c.pick(None), Some(dead.as_str()));
        let resp = perform(&client, &call(&dead, "/x"), Some(&c)).await;
        assert_eq!(from(&resp), Some(("200", "b")));
        // The dead endpoint is out; every call goes to the live one.
        for _ in 0..3 {
            assert_eq!(c.pick(None), Some(live.as_str()));
        }
        // Without a cluster (a `host:port` upstream) nothing is retried.
        assert_eq!(perform(&client, &call(&dead, "/x"), None).await, None);
    }

    #[tokio::test]
    async fn a_5xx_answer_goes_back_to_the_filter_and_is_not_retried() {
        let (a, b) = (server("a").await, server("b").await);
        let (a, b) = (format!("http://{a}"), format!("http://{b}"));
        let c = cluster(vec![a.clone(), b.clone()]);
        let client = client();
        let resp = perform(&client, &call(&a, "/status/503"), Some(&c)).await;
        assert_eq!(from(&resp), Some(("503", "a")));
        // One 503 does not eject: calls still alternate.
        assert_eq!(c.pick(None), Some(a.as_str()));
        assert_eq!(c.pick(None), Some(b.as_str()));
    }

    #[tokio::test]
    async fn with_every_endpoint_refusing_the_call_fails_after_one_retry() {
        let (d1, d2) = (closed(), closed());
        let c = cluster(vec![d1.clone(), d2.clone()]);
        assert_eq!(perform(&client(), &call(&d1, "/"), Some(&c)).await, None);
        // Both are ejected, and calls still go out to them (panic mode).
        assert_eq!(c.pick(None), Some(d1.as_str()));
        assert_eq!(c.pick(None), Some(d2.as_str()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endpoint_failing_its_health_check_takes_no_calls() {
        let sick = format!("http://{}", server_with_healthz("a", 503).await);
        let well = format!("http://{}", server_with_healthz("b", 200).await);
        let opts = HostOptions {
            clusters: [("cp".to_string(), vec![sick.clone(), well.clone()])].into(),
            cluster_health_checks: [("cp".to_string(), "/healthz".to_string())].into(),
            health_check_interval: Duration::from_millis(20),
            ..HostOptions::default()
        };
        let clusters = Clusters::new(&opts);
        let cp = clusters.get("cp").expect("cluster").clone();
        assert_eq!(cp.pick(None), Some(sick.as_str()), "all available at first");
        clusters.start_health_checks(&tokio::runtime::Handle::current());
        clusters.start_health_checks(&tokio::runtime::Handle::current()); // no second set
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(0..4).all(|_| cp.pick(None) == Some(well.as_str())) {
            assert!(
                Instant::now() < deadline,
                "the sick endpoint still takes calls"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Kong has no clusters at all.
        let kong = HostOptions {
            profile: HostProfile::Kong,
            ..opts
        };
        assert!(Clusters::new(&kong).get("cp").is_none());
    }
}
