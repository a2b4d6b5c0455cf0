//! Integration tests: the conformance filter (built with the real proxy-wasm SDK) running in
//! the host, the worker layer, and edge-proxy. Build the fixture first:
//! `cargo build --profile wasm-release --target wasm32-wasip1 -p conformance-filter`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use edge_host::proxy::{serve_with_shutdown, ProxyConfig};
use edge_host::{
    FailMode, FilterOutcome, HostOptions, HttpCallResponse, Outcome, ResponseHead, ResponseOutcome,
    Vm, Worker,
};

/// Every check the filter must report, so a check that silently stops running fails.
const EXPECTED_CHECKS: &[&str] = &[
    "vm_config_size",
    "plugin_config_size",
    "vm_config",
    "property_plugin_name",
    "property_plugin_root_id",
    "property_plugin_vm_id",
    "property_unknown",
    "property_request_on_root",
    "property_set_root",
    "time",
    "log_level",
    "random_hashmap",
    "foreign_function",
    "grpc_call_refused",
    "grpc_stream_refused",
    "grpc_send_unknown",
    "grpc_cancel_unknown",
    "grpc_close_unknown",
    "grpc_status",
    "metric_define_idempotent",
    "metric_counter",
    "metric_counter_negative",
    "metric_gauge",
    "metric_histogram_record",
    "metric_unknown",
    "shared_missing",
    "shared_set_new",
    "shared_get",
    "shared_set_with_cas",
    "shared_value_after_cas",
    "shared_cas_changes",
    "shared_cas_mismatch",
    "shared_cas0_existing",
    "queue_resolve",
    "queue_resolve_unknown",
    "queue_enqueue",
    "queue_dequeue",
    "queue_dequeue_empty",
    "queue_dequeue_unknown",
    "queue_enqueue_unknown",
    "on_tick",
    "on_queue_ready",
    "http_prop_source_address",
    "http_prop_source_port",
    "http_prop_request_path",
    "http_prop_url_path",
    "http_prop_host",
    "http_prop_method",
    "http_prop_scheme",
    "http_prop_protocol",
    "http_prop_request_id",
    "http_prop_request_header",
    "http_prop_unknown",
    "http_set_property",
    "http_deep_property",
    "http_deep_property_from_root",
    "http_request_body",
    "http_shared_from_root",
    "http_time",
    "http_num_headers",
    "http_end_of_stream",
    "http_pseudo_method",
    "http_pseudo_path",
    "http_header_value",
    "http_header_case_insensitive",
    "http_header_missing",
    "http_add_header",
    "http_replace_header",
    "http_remove_header",
    "http_set_map",
    "http_set_map_keeps",
    "http_header_bytes",
];

/// Runs ticks until `on_tick` and `on_queue_ready` happened.
fn tick(vm: &mut Vm) {
    std::thread::sleep(Duration::from_millis(20));
    vm.run_due_timers(Instant::now())
        .expect("tick without trap");
}

#[test]
fn every_conformance_check_passes() {
    let plugin = load(conformance_opts());
    let mut vm = Vm::start(&plugin).expect("vm starts");
    assert!(vm.next_deadline().is_some(), "the filter set a tick period");

    let req = request("/headers?q=1");
    let (ctx, headers) = match vm.on_request(&req).expect("no trap") {
        FilterOutcome::Continue { context, headers } => (context, headers),
        other => panic!("expected Continue, got {other:?}"),
    };
    assert_eq!(header(&headers, "x-added"), Some("a"));
    assert_eq!(header(&headers, "x-test"), Some("2"));
    assert_eq!(header(&headers, "x-set-map"), Some("1"));
    assert_eq!(header(&headers, "x-remove-me"), None);
    assert_eq!(header(&headers, ":path"), Some("/headers?q=1"));

    let resp = ResponseHead {
        status: 201,
        headers: vec![
            ("x-remove-resp".into(), "1".into()),
            ("x-up".into(), "u".into()),
        ],
        body_empty: true,
    };
    match vm.on_response(ctx, &resp).expect("no trap") {
        ResponseOutcome::Continue { headers } => {
            assert_eq!(header(&headers, "x-conformance-response"), Some("1"));
            assert_eq!(header(&headers, "x-status-seen"), Some("201"));
            assert_eq!(header(&headers, "x-response-code"), Some("201"));
            assert_eq!(header(&headers, "x-up"), Some("u"));
            assert_eq!(header(&headers, "x-remove-resp"), None);
            assert_eq!(header(&headers, ":status"), None);
        }
        other => panic!("expected Continue, got {other:?}"),
    }
    assert_eq!(
        vm.active_contexts(),
        0,
        "context deleted after the response"
    );
    assert_eq!(plugin.metric("conformance_on_log"), Some(1));

    tick(&mut vm);
    let checks = checks(&mut vm);
    let failed: Vec<_> = checks.iter().filter(|c| !c.1).collect();
    assert!(failed.is_empty(), "failed checks: {failed:?}");
    for name in EXPECTED_CHECKS {
        find_check(&checks, name);
    }
    assert!(plugin.metric("conformance_ticks").unwrap_or(0) >= 1);
    assert_eq!(plugin.metric("conformance_counter"), Some(2));
    assert_eq!(plugin.metric("conformance_gauge"), Some(7));
    let hist = plugin
        .metrics()
        .into_iter()
        .find(|m| m.name == "conformance_histogram")
        .expect("histogram defined");
    assert_eq!((hist.value, hist.sum), (2, 12));
    let logs = plugin.logs();
    for needle in ["conformance: stdout line", "conformance: proxy_log line"] {
        assert!(
            logs.iter().any(|l| l.message == needle),
            "{needle} not in {logs:?}"
        );
    }
    assert!(plugin.prometheus().contains("conformance_counter 2"));
}

#[test]
fn source_address_with_and_without_port() {
    for with_port in [true, false] {
        let plugin = load(HostOptions {
            source_address_with_port: with_port,
            ..conformance_opts()
        });
        let mut vm = Vm::start(&plugin).expect("vm starts");
        let out = vm.on_request(&request("/x")).expect("no trap");
        vm.finish(match out {
            FilterOutcome::Continue { context, .. } => context,
            other => panic!("expected Continue, got {other:?}"),
        });
        let checks = checks(&mut vm);
        let detail = &find_check(&checks, "http_prop_source_address").2;
        let want = if with_port {
            "127.0.0.1:4242"
        } else {
            "127.0.0.1"
        };
        assert_eq!(detail, want);
        assert!(find_check(&checks, "http_prop_source_port").1);
    }
}

#[test]
fn cas_zero_on_existing_key_envoy_vs_strict() {
    for (strict, want) in [(false, "ok"), (true, "cas_mismatch")] {
        let plugin = load(HostOptions {
            strict_cas: strict,
            ..conformance_opts()
        });
        let mut vm = Vm::start(&plugin).expect("vm starts");
        let checks = checks(&mut vm);
        assert_eq!(
            find_check(&checks, "shared_cas0_existing").2,
            want,
            "strict_cas={strict}"
        );
        assert!(find_check(&checks, "shared_cas_mismatch").1);
        let (value, cas) = plugin.shared_data_get("conformance/cas").expect("key set");
        assert_ne!(cas, 0);
        let expected: &[u8] = if strict { b"v2" } else { b"v4" };
        assert_eq!(value, expected);
    }
}

#[test]
fn two_vms_share_data() {
    let plugin = load(conformance_opts());
    let mut a = Vm::start(&plugin).expect("vm a");
    let mut b = Vm::start(&plugin).expect("vm b");
    let (starts, _) = plugin
        .shared_data_get("conformance/vm_starts")
        .expect("counted");
    assert_eq!(
        starts, b"2",
        "both VMs incremented the CAS-protected counter"
    );
    let (_, _, set) = expect_local_json(
        a.on_request(&request("/shared/set?key=k1&value=hello"))
            .expect("no trap"),
    );
    assert_eq!(set["result"], "Ok(())");
    let (_, _, got) = expect_local_json(
        b.on_request(&request("/shared/get?key=k1"))
            .expect("no trap"),
    );
    assert_eq!(got["value"], "hello");
    assert_ne!(got["cas"], 0);
}

#[test]
fn failed_configure_is_an_error_with_the_guest_logs() {
    let plugin = load(with_config(
        conformance_opts(),
        r#"{"mode":"fail-configure"}"#,
    ));
    let err = Vm::start(&plugin)
        .expect_err("on_configure returned false")
        .to_string();
    assert!(err.contains("proxy_on_configure returned false"), "{err}");
    assert!(err.contains("configuration rejected on purpose"), "{err}");
}

#[test]
fn noop_mode_continues_with_headers_untouched() {
    let plugin = load(with_config(conformance_opts(), r#"{"mode":"noop"}"#));
    let mut vm = Vm::start(&plugin).expect("vm");
    let req = request("/anything");
    match vm.on_request(&req).expect("no trap") {
        FilterOutcome::Continue { context, headers } => {
            assert_eq!(headers, req.header_map());
            vm.finish(context);
        }
        other => panic!("expected Continue, got {other:?}"),
    }
    assert!(vm.next_deadline().is_none());
    assert!(plugin.metrics().is_empty());
}

#[test]
fn runaway_guest_is_stopped_by_the_deadline() {
    let plugin = load(HostOptions {
        callback_deadline: Duration::from_millis(100),
        ..conformance_opts()
    });
    let mut vm = Vm::start(&plugin).expect("vm");
    let started = Instant::now();
    let trap = vm.on_request(&request("/loop")).expect_err("loop traps");
    assert!(trap.deadline_exceeded, "{trap:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(vm.poisoned().is_some());
    assert!(
        vm.on_request(&request("/x")).is_err(),
        "a poisoned VM refuses work"
    );
    // A fresh VM of the same plugin serves again.
    let mut vm = Vm::start(&plugin).expect("vm");
    assert!(matches!(
        vm.on_request(&request("/x")),
        Ok(FilterOutcome::Continue { .. })
    ));
}

#[test]
fn http_call_is_handed_out_and_its_failure_delivered() {
    let mut opts = conformance_opts();
    opts.clusters
        .insert("backend".into(), vec!["http://127.0.0.1:9".into()]);
    let plugin = load(opts);
    let mut vm = Vm::start(&plugin).expect("vm");
    let ctx = match vm
        .on_request(&request("/callout?upstream=backend"))
        .expect("no trap")
    {
        FilterOutcome::Paused { context } => context,
        other => panic!("expected Paused, got {other:?}"),
    };
    assert_eq!(vm.poll_request(ctx), None);
    let calls = vm.take_http_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.upstream, "backend");
    assert_eq!(call.base_url, "http://127.0.0.1:9");
    assert_eq!(header(&call.headers, ":path"), Some("/callout-target"));
    assert_eq!(header(&call.headers, "x-from"), Some("filter"));
    assert_eq!(call.timeout, Duration::from_millis(1500));
    vm.deliver_http_call_response(call.token, None)
        .expect("no trap");
    let (status, headers, v) = expect_local_json(vm.poll_request(ctx).expect("resumed"));
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-callout"), Some("done"));
    assert_eq!(v["status"], serde_json::Value::Null);
    assert_eq!(v["num_headers"], 0);
    assert_eq!(v["token_matches"], true);

    // A delivered response reaches the guest with its headers and body.
    let ctx = match vm
        .on_request(&request("/callout?upstream=backend"))
        .expect("no trap")
    {
        FilterOutcome::Paused { context } => context,
        other => panic!("expected Paused, got {other:?}"),
    };
    let token = vm.take_http_calls()[0].token;
    let resp = HttpCallResponse::new(200, vec![("x-echo".into(), "e".into())], b"pong".to_vec());
    vm.deliver_http_call_response(token, Some(resp))
        .expect("no trap");
    let (_, _, v) = expect_local_json(vm.poll_request(ctx).expect("resumed"));
    assert_eq!(v["status"], "200");
    assert_eq!(v["x_echo"], "e");
    assert_eq!(v["body"], "pong");
    assert_eq!(v["num_headers"], 2);

    // An unknown upstream is refused at dispatch.
    let (status, _, v) = expect_local_json(
        vm.on_request(&request("/callout?upstream=nope"))
            .expect("no trap"),
    );
    assert_eq!(status, 500);
    assert_eq!(v["dispatch_error"], "BadArgument");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_performs_real_http_calls() {
    let upstream = spawn_upstream().await;
    let mut opts = conformance_opts();
    opts.clusters
        .insert("backend".into(), vec![format!("http://{upstream}")]);
    opts.clusters.insert(
        "closed".into(),
        vec![format!("http://127.0.0.1:{}", closed_port())],
    );
    opts.allow_host_port_upstreams = true;
    opts.plugin_config = br#"{"mode":"conformance","upstream":"backend"}"#.to_vec();
    let plugin = load(opts);
    let worker = Worker::spawn(plugin.clone(), tokio::runtime::Handle::current()).expect("worker");

    let json = |o: Outcome| match o {
        Outcome::LocalResponse { status, body, .. } => (
            status,
            serde_json::from_slice::<serde_json::Value>(&body).expect("json"),
        ),
        other => panic!("expected a local response, got {other:?}"),
    };
    let (status, v) = json(
        worker
            .on_request(request("/callout?upstream=backend"))
            .await,
    );
    assert_eq!(status, 200);
    assert_eq!(v["status"], "200");
    assert_eq!(
        v["x_echo"], "filter",
        "the call carried the guest's headers"
    );
    assert!(
        v["body"]
            .as_str()
            .unwrap_or("")
            .starts_with("GET /callout-target"),
        "{v}"
    );

    // Kong style: a literal host:port upstream.
    let (_, v) = json(
        worker
            .on_request(request(&format!("/callout?upstream={upstream}")))
            .await,
    );
    assert_eq!(v["status"], "200");

    // Nothing listening: the callout fails with no :status.
    let (status, v) = json(worker.on_request(request("/callout?upstream=closed")).await);
    assert_eq!(status, 200);
    assert_eq!(v["status"], serde_json::Value::Null);
    assert_eq!(v["num_headers"], 0);

    // The root context's call from its first tick succeeded too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, v) = json(worker.on_request(request("/checks")).await);
    let root_call = v
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["name"] == "root_http_call")
        .expect("root_http_call reported");
    assert_eq!(root_call["ok"], true, "{root_call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_answers_by_fail_mode_and_the_vm_is_recreated() {
    for mode in FailMode::ALL {
        let plugin = load(HostOptions {
            fail_mode: mode,
            ..conformance_opts()
        });
        let worker =
            Worker::spawn(plugin.clone(), tokio::runtime::Handle::current()).expect("worker");
        let out = worker.on_request(request("/trap")).await;
        match (mode, &out) {
            (FailMode::Open, Outcome::Continue { headers, .. }) => {
                assert_eq!(header(headers, ":path"), Some("/trap"));
            }
            (FailMode::Closed, Outcome::LocalResponse { status, .. }) => assert_eq!(*status, 503),
            _ => panic!("{mode}: unexpected {out:?}"),
        }
        assert_eq!(worker.restarts(), 1);
        // The response of the dead VM's request passes through untouched.
        let resp = ResponseHead {
            status: 200,
            headers: vec![("a".into(), "b".into())],
            body_empty: true,
        };
        assert_eq!(
            worker.on_response(out.context(), resp).await,
            ResponseOutcome::Continue {
                headers: vec![("a".into(), "b".into())]
            }
        );
        // The next request is served by the fresh VM.
        match worker.on_request(request("/x")).await {
            Outcome::Continue { headers, .. } => assert_eq!(header(&headers, "x-added"), Some("a")),
            other => panic!("{mode}: expected Continue, got {other:?}"),
        }
        assert!(
            plugin
                .logs()
                .iter()
                .any(|l| l.message.contains("conformance: trap requested")),
            "the guest's panic message is logged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_proxy_forwards_filters_and_serves_stats() {
    let upstream = spawn_upstream().await;
    let plugin = load(conformance_opts());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin_addr = admin.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cfg = ProxyConfig {
        upstream: format!("http://{upstream}"),
        plugin: plugin.clone(),
        workers: 2,
    };
    let server = tokio::spawn(serve_with_shutdown(cfg, listener, async {
        let _ = stopped.await;
    }));
    tokio::spawn(edge_host::proxy::serve_admin(
        plugin.clone(),
        admin,
        edge_host::proxy::AdminLimits::default(),
        std::future::pending(),
    ));

    let (status, headers, body) = http_get(
        &format!("http://{addr}/hello?x=1"),
        &[
            ("x-test", "1"),
            ("x-remove-me", "1"),
            ("x-forwarded-for", "10.0.0.1"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("GET /hello?x=1"), "{body}");
    assert!(body.contains("x-added: a"), "{body}");
    assert!(body.contains("x-test: 2"), "{body}");
    assert!(!body.contains("x-remove-me"), "{body}");
    assert!(
        body.contains("x-forwarded-for: 10.0.0.1, 127.0.0.1"),
        "{body}"
    );
    assert_eq!(header(&headers, "x-conformance-response"), Some("1"));
    assert_eq!(header(&headers, "x-remove-resp"), None);

    let (status, _, body) = http_get(&format!("http://{addr}/checks"), &[]).await;
    assert_eq!(status, 200);
    assert!(body.starts_with('['), "{body}");

    let (status, _, _) = http_get(&format!("http://{addr}/trap"), &[]).await;
    assert_eq!(status, 503, "fail closed by default");
    let (status, _, _) = http_get(&format!("http://{addr}/again"), &[("x-test", "1")]).await;
    assert_eq!(status, 200, "served after the trap");

    let (status, _, stats) = http_get(&format!("http://{admin_addr}/stats"), &[]).await;
    assert_eq!(status, 200);
    assert!(
        stats.contains("# TYPE conformance_on_log counter"),
        "{stats}"
    );
    let (status, _, _) = http_get(&format!("http://{admin_addr}/ready"), &[]).await;
    assert_eq!(status, 200);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("shut down in time")
        .expect("join")
        .expect("serve ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_proxy_binary_prints_its_address_and_stops_on_sigterm() {
    let upstream = spawn_upstream().await;
    let dir = edge_testkit::temp_dir("host-test").expect("tmp dir");
    let config = dir.path().join("plugin.json");
    std::fs::write(&config, r#"{"mode":"noop"}"#).expect("write config");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edge-proxy"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--fail-mode",
        "open",
    ])
    .arg("--upstream")
    .arg(format!("http://{upstream}"))
    .arg("--wasm")
    .arg(wasm_path())
    .arg("--plugin-config")
    .arg(&config);
    let (mut proxy, addr) = tokio::task::block_in_place(|| {
        edge_testkit::Proc::start("edge-proxy", cmd, "edge-proxy listening on http://")
    });
    let (status, _, body) = http_get(&format!("http://{addr}/via-binary"), &[]).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("GET /via-binary"), "{body}");

    assert!(
        tokio::task::block_in_place(|| proxy.stop("TERM", Duration::from_secs(15))),
        "edge-proxy did not exit 0 after SIGTERM:\n{}",
        proxy.output_text()
    );
}

/// A hand-written module probing the host's error paths: a bad pointer to `proxy_log`, an
/// import the host does not know, a return pointer outside memory, a truncated map. It
/// stores the four statuses in shared data under `r`.
const PROBE_WAT: &str = r#"
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $getprop (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_call_from_the_future" (func $future (param i32) (result i32)))
  (import "env" "proxy_set_header_map_pairs" (func $setmap (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "r")
  (data (i32.const 64) "plugin_name")
  (data (i32.const 100) "\05\00\00\00")
  (global $heap (mut i32) (i32.const 1024))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get 0)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (i32.store8 (i32.const 32) (call $log (i32.const 2) (i32.const 0xFFFFFFF0) (i32.const 100)))
    (i32.store8 (i32.const 33) (call $future (i32.const 1)))
    (i32.store8 (i32.const 34)
      (call $getprop (i32.const 64) (i32.const 11) (i32.const 70000) (i32.const 8)))
    (i32.store8 (i32.const 35) (call $setmap (i32.const 0) (i32.const 100) (i32.const 4)))
    (drop (call $set (i32.const 16) (i32.const 1) (i32.const 32) (i32.const 4) (i32.const 0)))
    (i32.const 1)))
"#;

#[test]
fn bad_pointers_and_unknown_imports_become_statuses() {
    let wasm = wat::parse_str(PROBE_WAT).expect("valid wat");
    let plugin = edge_host::Plugin::load(&wasm, HostOptions::default()).expect("loads");
    let _vm = Vm::start(&plugin).expect("starts");
    let (statuses, _) = plugin
        .shared_data_get("r")
        .expect("probe stored its results");
    let want = [
        edge_host::Status::InvalidMemoryAccess,
        edge_host::Status::Unimplemented,
        edge_host::Status::InvalidMemoryAccess,
        edge_host::Status::SerializationFailure,
    ]
    .map(|s| s.code() as u8);
    assert_eq!(statuses, want);
}
