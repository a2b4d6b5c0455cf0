//! Host profiles refuse what their host refuses: a guest dispatching an HTTP call from
//! `proxy_on_configure` starts under `envoy` but traps under `kong` (as ngx_wasm_module
//! does), while a dispatch from `proxy_on_tick` works under both, naming the upstream as
//! each host names it.

use std::time::{Duration, Instant};

use crate::{HostProfile, Plugin, Vm};

/// A guest that dispatches `GET /` to `127.0.0.1:9` (or cluster `cp`, by the upstream at
/// offset 0/16) from `proxy_on_configure` when the configuration is `c`, and from every
/// `proxy_on_tick` (period 1 ms).
const DISPATCHER: &str = r#"
(module
  (import "env" "proxy_http_call"
    (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buf (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 8192))
  ;; upstreams
  (data (i32.const 0) "127.0.0.1:9")
  (data (i32.const 16) "cp")
  ;; a header map of 3 pairs: :method GET, :path /, :authority x
  (data (i32.const 64) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\01\00\00\00\0a\00\00\00\01\00\00\00:method\00GET\00:path\00/\00:authority\00x\00")
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $n)))
    (local.get $p))
  (func $dispatch (param $up i32) (param $len i32)
    (drop (call $call (local.get $up) (local.get $len) (i32.const 64) (i32.const 61)
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 4000))))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $tick (i32.const 1)))
    ;; the plugin configuration's first byte: `c` dispatches here
    (drop (call $buf (i32.const 7) (i32.const 0) (i32.const 1) (i32.const 4096) (i32.const 4100)))
    (if (i32.eq (i32.load8_u (i32.load (i32.const 4096))) (i32.const 99))
      (then (call $dispatch (i32.const 0) (i32.const 11))))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (call $dispatch (i32.const 0) (i32.const 11))
    (call $dispatch (i32.const 16) (i32.const 2))))
"#;

fn plugin(profile: HostProfile, config: &[u8]) -> Plugin {
    let mut opts = profile.options();
    opts.plugin_config = config.to_vec();
    opts.clusters = [("cp".to_string(), vec!["http://127.0.0.1:8".to_string()])].into();
    let wasm = wat::parse_str(DISPATCHER).expect("valid wat");
    Plugin::load(&wasm, opts).expect("module loads")
}

#[test]
fn a_dispatch_from_on_configure_traps_under_kong_only() {
    let err = Vm::start(&plugin(HostProfile::Kong, b"c")).expect_err("kong traps");
    let msg = format!("{err:#}");
    assert!(msg.contains("proxy_on_configure"), "{msg}");
    assert!(msg.contains("bad usage"), "{msg}");
    // Envoy lets it through (the unknown upstream is an error status, not a trap).
    Vm::start(&plugin(HostProfile::Envoy, b"c")).expect("envoy starts it");
}

#[test]
fn a_dispatch_from_on_tick_works_under_both_naming_upstreams_as_each_host_does() {
    for profile in HostProfile::ALL {
        let mut vm = Vm::start(&plugin(profile, b"-")).expect("starts");
        vm.run_due_timers(Instant::now() + Duration::from_secs(1))
            .expect("no trap on tick");
        let calls = vm.take_http_calls();
        let bases: Vec<&str> = calls.iter().map(|c| c.base_url.as_str()).collect();
        // Kong dials `host:port` and has no clusters; Envoy has clusters and no `host:port`.
        let want: &[&str] = match profile {
            HostProfile::Envoy => &["http://127.0.0.1:8"],
            HostProfile::Kong => &["http://127.0.0.1:9"],
        };
        assert_eq!(bases, want, "{profile}");
    }
}
