//! Shared helpers of the `host` integration tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use edge_host::{FilterOutcome, HostOptions, Plugin, RequestHead, Vm};
use http_body_util::{BodyExt, Full};
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
/// `x-echo: <x-from>`, `x-remove-resp: 1`, and a body listing the method, path and headers.
pub async fn spawn_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
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
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    text.push_str(&format!("body: {}\n", String::from_utf8_lossy(&body)));
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("x-echo", from)
                            .header("x-remove-resp", "1")
                            .body(Full::new(Bytes::from(text)))
                            .expect("response"),
                    )
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
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
