//! Envoy's behaviour for HTTP filters, asserted through `edge-proxy` with a real upstream:
//! bodies (buffering, replacement, `content-length`), trailers over HTTP/2, local replies
//! through the response phase, a callout pausing the request, configuration, ticks, logs,
//! and traps answered by the fail mode. The filter is the conformance fixture in `envoy`
//! mode (`tests/conformance-filter/src/envoy.rs`). Build it first:
//! `cargo build --profile wasm-release --target wasm32-wasip1 -p conformance-filter`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use edge_host::{FailMode, HostOptions, Plugin};

fn envoy_plugin(mode: FailMode, auth: Option<SocketAddr>) -> Plugin {
    let mut opts = HostOptions {
        plugin_name: "envoy".into(),
        fail_mode: mode,
        plugin_config: br#"{"mode":"envoy","greeting":"hello","auth_upstream":"auth"}"#.to_vec(),
        ..HostOptions::default()
    };
    if let Some(a) = auth {
        opts.clusters
            .insert("auth".into(), vec![format!("http://{a}")]);
    }
    load(opts)
}

/// The body callbacks the filter saw, as `(buffered_len, end_of_stream)`.
fn body_calls(reply: &Reply) -> Vec<(usize, bool)> {
    let raw = reply.header("x-body-calls").expect("x-body-calls");
    raw.split(',')
        .filter(|c| !c.is_empty())
        .map(|c| {
            let c = c.strip_prefix('q').expect("a request body call");
            let eos = c.ends_with('e');
            (c.trim_end_matches('e').parse().expect("size"), eos)
        })
        .collect()
}

/// Waits (bounded) until the plugin logged a line containing `needle`.
async fn wait_for_log(plugin: &Plugin, needle: &str) {
    for _ in 0..200 {
        if plugin.logs().iter().any(|l| l.message.contains(needle)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no log line containing {needle:?} in {:?}", plugin.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_iteration_and_buffer_buffers_until_end_of_stream_then_replaces_the_body() {
    let upstream = spawn_upstream().await;
    let proxy = start_proxy(envoy_plugin(FailMode::Closed, None), upstream, 1).await;
    let r = send_h1(
        proxy.addr,
        "POST",
        "/body/upper",
        &[],
        Chunks::new(&["ab", "cd", "ef"], &[]),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("body: ABCDEF\n"), "{}", r.body);
    assert!(r.body.contains("content-length: 6\n"), "{}", r.body);
    let calls = body_calls(&r);
    let (last, rest) = calls.split_last().expect("body callbacks ran");
    assert_eq!(*last, (6, true), "{calls:?}");
    assert!(rest.iter().all(|(_, eos)| !eos), "{calls:?}");
    // Pause kept the data: each call saw the whole body so far.
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "{calls:?}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_forwards_each_chunk_and_a_bodyless_request_gets_no_body_callback() {
    let upstream = spawn_upstream().await;
    let proxy = start_proxy(envoy_plugin(FailMode::Closed, None), upstream, 1).await;
    let r = send_h1(
        proxy.addr,
        "POST",
        "/body/pass",
        &[],
        Chunks::new(&["ab", "cd", "ef"], &[]),
    )
    .await;
    assert!(r.body.contains("body: abcdef\n"), "{}", r.body);
    let calls = body_calls(&r);
    assert_eq!(calls.last().map(|c| c.1), Some(true), "{calls:?}");
    // Continue emptied the buffer: no call saw more than one chunk.
    assert!(calls.iter().all(|(n, _)| *n <= 2), "{calls:?}");

    let r = send_h1(proxy.addr, "GET", "/plain", &[], Chunks::default()).await;
    assert_eq!(r.status, 200);
    assert_eq!(body_calls(&r), vec![]);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_response_body_gets_its_content_length_recomputed() {
    let upstream = spawn_upstream().await;
    let proxy = start_proxy(envoy_plugin(FailMode::Closed, None), upstream, 1).await;
    let original = send_h1(proxy.addr, "GET", "/body/plain", &[], Chunks::default()).await;
    let r = send_h1(proxy.addr, "GET", "/body/redact", &[], Chunks::default()).await;
    assert_eq!(r.status, 200);
    // The echo of `/body/redact` is as long as that of `/body/plain` plus one byte.
    let want = format!("redacted {} bytes", original.body.len() + 1);
    assert_eq!(r.body, want);
    assert_eq!(
        r.header("content-length"),
        Some(want.len().to_string().as_str())
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_reply_runs_the_response_phase_and_gets_text_plain() {
    let upstream = spawn_upstream().await;
    let plugin = envoy_plugin(FailMode::Closed, None);
    let proxy = start_proxy(plugin.clone(), upstream, 1).await;
    for h2 in [false, true] {
        let r = if h2 {
            send_h2(proxy.addr, "GET", "/deny", &[], Chunks::default()).await
        } else {
            send_h1(proxy.addr, "GET", "/deny", &[], Chunks::default()).await
        };
        assert_eq!(r.status, 403);
        assert_eq!(r.body, "denied");
        assert_eq!(r.header("x-deny"), Some("1"));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.header("x-response-phase"), Some("1"), "{r:?}");
        assert_eq!(r.header("x-greeting"), Some("hello"));
    }
    // The response side of the local reply was logged, as the request side.
    wait_for_log(&plugin, "<- :status: 403").await;
    wait_for_log(&plugin, "-> :path: /deny").await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callout_pauses_the_request_then_resumes_or_rejects_it() {
    let upstream = spawn_upstream().await;
    let proxy = start_proxy(envoy_plugin(FailMode::Closed, Some(upstream)), upstream, 1).await;
    let r = send_h1(
        proxy.addr,
        "GET",
        "/auth",
        &[("x-auth", "let-me-in")],
        Chunks::default(),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.starts_with("GET /auth"), "{}", r.body);
    assert_eq!(r.header("x-response-phase"), Some("1"));

    let r = send_h1(
        proxy.addr,
        "GET",
        "/auth",
        &[("x-auth", "nope")],
        Chunks::default(),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, "forbidden");
    assert_eq!(r.header("x-auth"), Some("denied"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_deep_properties_ticks_and_logs() {
    let upstream = spawn_upstream().await;
    let plugin = envoy_plugin(FailMode::Closed, None);
    let proxy = start_proxy(plugin.clone(), upstream, 1).await;
    let r = send_h1(proxy.addr, "GET", "/hello", &[], Chunks::default()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-greeting"), Some("hello"));
    assert_eq!(r.header("x-deep-property"), Some("deep-value"));
    wait_for_log(&plugin, "envoy fixture: configured").await;
    wait_for_log(&plugin, "envoy fixture: first tick").await;
    wait_for_log(&plugin, "-> :path: /hello").await;
    wait_for_log(&plugin, "<- x-echo: ").await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_carries_request_trailers_through_the_filter() {
    let upstream = spawn_upstream().await;
    let proxy = start_proxy(envoy_plugin(FailMode::Closed, None), upstream, 1).await;
    let r = send_h2(
        proxy.addr,
        "POST",
        "/trailers/x",
        &[],
        Chunks::new(&["abc"], &[("x-req-trailer", "v")]),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("body: abc\n"), "{}", r.body);
    // Request trailers reached the filter (which added one) and the upstream.
    assert!(r.body.contains("trailer x-req-trailer: v\n"), "{}", r.body);
    assert!(r.body.contains("trailer x-trailer-seen: v\n"), "{}", r.body);
    // Response trailers are not covered: `edge-proxy` talks HTTP/1.1 to its upstream and
    // the test upstream's trailers never reach it, so nothing here can prove them.
    proxy.stop().await;
}

/// Checks the trap of `callback` was logged, then that the next request is served by a
/// working filter.
async fn logged_and_served_again(plugin: &Plugin, proxy: &Proxy, callback: &str) {
    wait_for_log(plugin, &format!("guest trapped in {callback}")).await;
    let r = send_h1(proxy.addr, "GET", "/after", &[], Chunks::default()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-response-phase"), Some("1"), "filtered again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_before_forwarding_is_answered_by_the_fail_mode() {
    let upstream = spawn_upstream().await;
    for mode in FailMode::ALL {
        let plugin = envoy_plugin(mode, None);
        let proxy = start_proxy(plugin.clone(), upstream, 1).await;
        let r = send_h1(
            proxy.addr,
            "POST",
            "/trap/request-body",
            &[],
            Chunks::new(&["raw"], &[]),
        )
        .await;
        match mode {
            FailMode::Closed => assert_eq!(r.status, 503, "{r:?}"),
            FailMode::Open => {
                assert_eq!(r.status, 200, "{r:?}");
                assert!(r.body.contains("body: raw\n"), "{}", r.body);
            }
        }
        logged_and_served_again(&plugin, &proxy, "proxy_on_request_body").await;
        proxy.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_when_its_vm_traps_is_answered_by_the_fail_mode() {
    let gate = Arc::new(Gate::default());
    let upstream = spawn_upstream_gated(Some(gate.clone())).await;
    for mode in FailMode::ALL {
        let plugin = envoy_plugin(mode, None);
        let proxy = start_proxy(plugin.clone(), upstream, 1).await;
        let addr = proxy.addr;
        let slow =
            tokio::spawn(
                async move { send_h1(addr, "GET", "/slow", &[], Chunks::default()).await },
            );
        gate.arrived.notified().await;
        // Another request traps the (only) VM while /slow is upstream.
        let r = send_h1(
            addr,
            "POST",
            "/trap/request-body",
            &[],
            Chunks::new(&["x"], &[]),
        )
        .await;
        assert_ne!(r.status, 0);
        gate.release.notify_one();
        let r = slow.await.expect("join");
        match mode {
            FailMode::Closed => assert_eq!(r.status, 503, "{r:?}"),
            FailMode::Open => {
                assert_eq!(r.status, 200, "{r:?}");
                assert!(r.body.starts_with("GET /slow"), "{}", r.body);
                assert_eq!(r.header("x-response-phase"), None, "unfiltered");
            }
        }
        logged_and_served_again(&plugin, &proxy, "proxy_on_request_body").await;
        proxy.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_in_the_response_phase_is_answered_by_the_fail_mode() {
    let upstream = spawn_upstream().await;
    for mode in FailMode::ALL {
        for (path, callback) in [
            ("/trap/response-headers", "proxy_on_response_headers"),
            ("/trap/response-body", "proxy_on_response_body"),
        ] {
            let plugin = envoy_plugin(mode, None);
            let proxy = start_proxy(plugin.clone(), upstream, 1).await;
            let r = send_h1(proxy.addr, "GET", path, &[], Chunks::default()).await;
            match mode {
                FailMode::Closed => assert_eq!(r.status, 503, "{path}: {r:?}"),
                FailMode::Open => {
                    assert_eq!(r.status, 200, "{path}: {r:?}");
                    assert!(r.body.starts_with(&format!("GET {path}")), "{}", r.body);
                }
            }
            logged_and_served_again(&plugin, &proxy, callback).await;
            proxy.stop().await;
        }
    }
}
