//! Running the real filter (and the no-op fixture) in `edge-host` for benchmarks.

use std::net::SocketAddr;

use anyhow::Context as _;
use edge_host::{FilterOutcome, HostOptions, HttpContextId, Plugin, RequestHead, Vm};
use edge_policy::config::{ControlPlane, FilterConfig};

pub use edge_policy::shared::{DELTAS_KEY, VERSION_KEY};

/// The filter's plugin configuration for benchmarks: the control plane is cluster `cp`
/// (which [`filter_plugin_with`] points at a closed port), 20 s long-polls, no reports.
pub fn filter_config() -> FilterConfig {
    let mut cfg = FilterConfig::new(
        ControlPlane::new(
            "cp",
            "control-plane",
            vec![edge_testkit::test_trusted_key()],
        ),
        "ecp_bench",
        "bench-edge",
    );
    cfg.sync.long_poll_wait_s = 20;
    cfg.sync.report_interval_s = 0;
    cfg
}

/// Loads `edge_filter.wasm` with the benchmark configuration.
pub fn filter_plugin() -> anyhow::Result<Plugin> {
    filter_plugin_with(|_| {})
}

/// Loads `edge_filter.wasm` with the benchmark configuration, then `tweak` on the options.
pub fn filter_plugin_with(tweak: impl FnOnce(&mut HostOptions)) -> anyhow::Result<Plugin> {
    let mut config = serde_json::to_value(filter_config())?;
    if std::env::var_os("EDGE_BENCH_UNSEALED").is_some() {
        // A filter built before policy answers were signed knows no `trusted_keys`.
        if let Some(cp) = config["control_plane"].as_object_mut() {
            cp.remove("trusted_keys");
        }
    }
    let mut opts = HostOptions {
        plugin_config: serde_json::to_vec(&config)?,
        // Adopting a 1M-rule snapshot in on_configure takes about 0.5 s (the default deadline
        // is 5 s); on a machine busy with other work it can take several times that, and
        // the benchmarks measure the time rather than trap.
        callback_deadline: std::time::Duration::from_secs(30),
        ..HostOptions::default()
    };
    opts.clusters
        .insert("cp".to_string(), vec!["http://127.0.0.1:9".to_string()]);
    tweak(&mut opts);
    // EDGE_FILTER_WASM=path benchmarks another build of the filter (e.g. a baseline copy).
    let path = edge_testkit::filter_wasm()?;
    Plugin::load_file(&path, opts).with_context(|| format!("loading {}", path.display()))
}

/// Loads the conformance fixture in `noop` mode (`Continue` on request headers, nothing else).
pub fn noop_plugin() -> anyhow::Result<Plugin> {
    let opts = HostOptions {
        plugin_config: br#"{"mode":"noop"}"#.to_vec(),
        ..HostOptions::default()
    };
    Plugin::load_file(&edge_testkit::wasm("conformance_filter.wasm")?, opts)
        .context("loading conformance_filter.wasm")
}

/// Seeds a policy into the plugin's shared data, as a leader VM would publish it
/// (layout: `edge_policy::shared`).
pub fn seed_policy(plugin: &Plugin, encoded_snapshot: &[u8], version: u64) -> anyhow::Result<()> {
    use edge_policy::shared::{part_key, split, Announcement};
    const SEED: u64 = 0x5eed;
    let mut parts = 0;
    for (i, part) in split(encoded_snapshot).enumerate() {
        plugin
            .shared_data_set(&part_key(SEED, i), part, 0)
            .map_err(|s| anyhow::anyhow!("shared_data_set policy part {i}: {s:?}"))?;
        parts += 1;
    }
    let a = Announcement {
        version,
        base: version,
        snapshot: SEED,
        parts,
    };
    plugin
        .shared_data_set(VERSION_KEY, &a.encode(), 0)
        .map_err(|s| anyhow::anyhow!("shared_data_set version: {s:?}"))
}

/// A typical browser/API request: 4 pseudo-headers plus 8 regular headers.
pub fn typical_request(client: std::net::IpAddr) -> RequestHead {
    RequestHead::get(
        "/api/v1/orders?page=2",
        "shop.example",
        SocketAddr::new(client, 51234),
    )
    .header(
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0",
    )
    .header("accept", "application/json, text/plain, */*")
    .header("accept-encoding", "gzip, deflate, br")
    .header("accept-language", "en-GB,en;q=0.9,nl;q=0.8")
    .header("x-api-key", "a-key-that-is-not-blocked")
    .header("cookie", "session=4f1c9a0b2e; theme=dark")
    .header("x-request-id", "6b1d3c2e-1f00-4b8e-9f7a-0c2d9e4f5a61")
    .header("referer", "https://shop.example/orders")
}

/// The context of an outcome.
pub fn context_of(o: &FilterOutcome) -> HttpContextId {
    match o {
        FilterOutcome::Continue { context, .. }
        | FilterOutcome::LocalResponse { context, .. }
        | FilterOutcome::Paused { context } => *context,
    }
}

/// One request through the VM: request headers, verdict, end of the context. Returns the
/// status the client would get (0 for forwarded).
pub fn run_request(vm: &mut Vm, head: &RequestHead) -> u16 {
    match vm.on_request(head) {
        Ok(o) => {
            let status = match &o {
                FilterOutcome::LocalResponse { status, .. } => *status,
                _ => 0,
            };
            vm.finish(context_of(&o));
            status
        }
        Err(_) => 1,
    }
}
