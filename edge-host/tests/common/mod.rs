//! Shared helpers of the `host` integration tests.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_host::{FilterOutcome, HostOptions, Plugin, RequestHead, Vm};
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Path of the conformance filter (the error names the command that builds it).
#[track_caller]
pub fn wasm_path() -> PathBuf {
    edge_testkit::wasm("conformance_filter.wasm").unwrap()
}

#[track_caller]
pub fn wasm() -> Vec<u8> {
    let path = wasm_path();
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Options for the conformance mode with expectations the filter checks.
pub fn conformance_opts() -> HostOptions {
    HostOptions {
        plugin_name: "conformance".into(),
        root_id: "conformance_root".into(),
        vm_config: b"vm-config-bytes".to_vec(),
        plugin_config: br#"{"mode":"conformance","expect_plugin_name":"conformance","expect_root_id":"conformance_root","expect_vm_config":"vm-config-bytes"}"#.to_vec(),
        log_level: edge_host::LogLevel::Trace,
        ..HostOptions::default()
    }
}

pub fn with_config(mut opts: HostOptions, config: &str) -> HostOptions {
    opts.plugin_config = config.as_bytes().to_vec();
    opts
}

#[track_caller]
pub fn load(opts: HostOptions) -> Plugin {
    Plugin::load(&wasm(), opts).expect("conformance filter loads")
}

pub fn source() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4242))
}

/// A GET with the headers the HTTP-context checks expect.
pub fn request(path: &str) -> RequestHead {
    RequestHead::get(path, "example.test", source())
        .header("x-test", "1")
        .header("x-remove-me", "bye")
        .header("x-expect-port", "4242")
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Expects a local response and parses its body as JSON.
#[track_caller]
pub fn expect_local_json(outcome: FilterOutcome) -> (u16, Vec<(String, String)>, Value) {
    match outcome {
        FilterOutcome::LocalResponse {
            status,
            headers,
            body,
            ..
        } => {
            let v = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&body))
            });
            (status, headers, v)
        }
        other => panic!("expected a local response, got {other:?}"),
    }
}

/// Fetches the filter's check list (`GET /checks`) from `vm`.
#[track_caller]
pub fn checks(vm: &mut Vm) -> Vec<(String, bool, String)> {
    let out = vm.on_request(&request("/checks")).expect("no trap");
    let ctx = match &out {
        FilterOutcome::LocalResponse { context, .. } => *context,
        other => panic!("expected local response, got {other:?}"),
    };
    let (status, _, v) = expect_local_json(out);
    vm.finish(ctx);
    assert_eq!(status, 200);
    v.as_array()
        .expect("array")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["ok"].as_bool().unwrap_or(false),
                c["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[track_caller]
pub fn find_check<'a>(
    checks: &'a [(String, bool, String)],
    name: &str,
) -> &'a (String, bool, String) {
    checks
        .iter()
        .rev()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("check {name} missing from {checks:?}"))
}

/// An HTTP server on 127.0.0.1 (port chosen at run time) answering every request with 200,
/// `x-echo: <x-from>`, `x-remove-resp: 1`, and a body listing the method, path, headers,
/// body and trailers. See [`spawn_upstream_gated`].
pub async fn spawn_upstream() -> SocketAddr {
    spawn_upstream_gated(None).await
}

/// Holds requests whose path starts with `/slow` until released: `arrived` is notified when
/// one comes in, it is answered after `release` is notified.
#[derive(Default)]
pub struct Gate {
    pub arrived: tokio::sync::Notify,
    pub release: tokio::sync::Notify,
}

/// [`spawn_upstream`], with `/slow` requests held by `gate`, and responses to paths starting
/// with `/trailers` sent chunked with the trailer `x-up-trailer: t`.
pub async fn spawn_upstream_gated(gate: Option<Arc<Gate>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let gate = gate.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let gate = gate.clone();
                    async move { Ok::<_, std::convert::Infallible>(echo(req, gate).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn echo(
    req: hyper::Request<hyper::body::Incoming>,
    gate: Option<Arc<Gate>>,
) -> hyper::Response<Chunks> {
    let path = req.uri().path().to_string();
    if let (Some(gate), true) = (gate, path.starts_with("/slow")) {
        gate.arrived.notify_one();
        gate.release.notified().await;
    }
    let mut text = format!("{} {}\n", req.method(), req.uri());
    for (k, v) in req.headers() {
        text.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
    }
    let from = req
        .headers()
        .get("x-from")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let collected = req.into_body().collect().await.ok();
    if let Some(t) = collected.as_ref().and_then(|c| c.trailers()) {
        for (k, v) in t {
            text.push_str(&format!("trailer {}: {}\n", k, v.to_str().unwrap_or("?")));
        }
    }
    let body = collected.map(|c| c.to_bytes()).unwrap_or_default();
    text.push_str(&format!("body: {}\n", String::from_utf8_lossy(&body)));
    let resp = hyper::Response::builder()
        .header("x-echo", from)
        .header("x-remove-resp", "1");
    if path.starts_with("/trailers") {
        resp.header("trailer", "x-up-trailer")
            .body(Chunks::new(&[text.as_str()], &[("x-up-trailer", "t")]))
            .expect("response")
    } else {
        let len = text.len().to_string();
        resp.header("content-length", len)
            .body(Chunks::new(&[text.as_str()], &[]))
            .expect("response")
    }
}

/// A body of data chunks, then trailers (if any), all ready at once; its size is unknown, so
/// HTTP/1.1 sends it chunked (one chunk per frame).
#[derive(Debug, Default)]
pub struct Chunks(VecDeque<Frame<Bytes>>);

impl Chunks {
    pub fn new(chunks: &[&str], trailers: &[(&str, &str)]) -> Self {
        let mut frames: VecDeque<Frame<Bytes>> = chunks
            .iter()
            .map(|c| Frame::data(Bytes::from(c.to_string())))
            .collect();
        if !trailers.is_empty() {
            let mut map = http::HeaderMap::new();
            for (k, v) in trailers {
                map.append(
                    http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    http::HeaderValue::from_str(v).expect("value"),
                );
            }
            frames.push_back(Frame::trailers(map));
        }
        Chunks(frames)
    }
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// A response as a test client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub trailers: Vec<(String, String)>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn trailer(&self, name: &str) -> Option<&str> {
        header(&self.trailers, name)
    }
}

async fn read_reply(resp: hyper::Response<hyper::body::Incoming>) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let collected = resp.into_body().collect().await.expect("body");
    let trailers = collected
        .trailers()
        .map(|t| {
            t.iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        trailers,
    }
}

fn build(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Chunks,
) -> hyper::Request<Chunks> {
    let mut req = hyper::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body).expect("request")
}

/// An HTTP/1.1 request to `addr` (a new connection).
pub async fn send_h1(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Chunks,
) -> Reply {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Chunks>();
    let req = build(method, &format!("http://{addr}{path}"), headers, body);
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    read_reply(resp).await
}

/// An HTTP/2 request to `addr` over cleartext with prior knowledge (h2c).
pub async fn send_h2(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Chunks,
) -> Reply {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let req = build(method, &format!("http://{addr}{path}"), headers, body);
    let resp = tokio::time::timeout(Duration::from_secs(20), send.send_request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    read_reply(resp).await
}

/// `edge-proxy` serving `plugin` on 127.0.0.1 (port chosen at run time) in front of
/// `upstream`, until [`Proxy::stop`].
pub struct Proxy {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn start_proxy(plugin: Plugin, upstream: SocketAddr, workers: usize) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cfg = edge_host::proxy::ProxyConfig {
        upstream: format!("http://{upstream}"),
        plugin,
        workers,
    };
    let server = tokio::spawn(edge_host::proxy::serve_with_shutdown(
        cfg,
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    Proxy { addr, stop, server }
}

impl Proxy {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(15), self.server)
            .await
            .expect("shut down in time")
            .expect("join")
            .expect("serve ok");
    }
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// A plain HTTP/1.1 client request; returns status, headers and body.
pub async fn http_get(url: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = hyper::Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(req.body(Full::new(Bytes::new())).expect("request")),
    )
    .await
    .expect("request timed out")
    .expect("request failed");
    let status = resp.status().as_u16();
    let hdrs = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, hdrs, String::from_utf8_lossy(&body).into_owned())
}
