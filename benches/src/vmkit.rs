//! Running the real filter (and the no-op fixture) in `edge-host` for benchmarks.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use edge_host::{FilterOutcome, HostOptions, HttpContextId, Plugin, RequestHead, Vm};

pub use edge_policy::shared::{DELTAS_KEY, VERSION_KEY};

const BUILD: &str = "cargo build --profile wasm-release \
                     --target wasm32-wasip1 -p edge-filter -p conformance-filter";

/// Finds a built artifact `sub/name` under `$CARGO_TARGET_DIR` (which wins when it has
/// one), else the workspace `target/`.
pub fn find_built(sub: &str, name: &str) -> Result<PathBuf, Vec<PathBuf>> {
    let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        let p = PathBuf::from(t).join(sub).join(name);
        if p.is_file() {
            return Ok(p);
        }
        dirs.push(p);
    }
    dirs.push(ws.join("target").join(sub).join(name));
    dirs.iter()
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .cloned()
        .ok_or(dirs)
}

/// Finds `name` (e.g. `edge_filter.wasm`) with [`find_built`]; the error names the build
/// command.
pub fn wasm_path(name: &str) -> anyhow::Result<PathBuf> {
    find_built("wasm32-wasip1/wasm-release", name).map_err(|tried| {
        anyhow::anyhow!("{name} not found (tried {tried:?}); build it first with:\n  {BUILD}")
    })
}

/// The filter's plugin configuration for benchmarks. `cluster_url`: where `cp` points.
pub fn filter_config(
    cluster_url: Option<&str>,
    long_poll_wait_s: u32,
) -> (Vec<u8>, Option<(String, String)>) {
    let cfg = serde_json::json!({
        "control_plane": {"cluster": "cp", "authority": "control-plane"},
        "edge_token": "ecp_bench",
        "edge_id": "bench-edge",
        "sync": {"long_poll_wait_s": long_poll_wait_s, "report_interval_s": 0},
        "pixel_routes": ["/p/{pixel}.gif", "/px/{pixel}.js", "?pid="],
        "fail_mode": "open"
    });
    let cluster = Some((
        "cp".to_string(),
        cluster_url.unwrap_or("http://127.0.0.1:9").to_string(),
    ));
    (cfg.to_string().into_bytes(), cluster)
}

/// Loads `edge_filter.wasm` with the benchmark configuration.
pub fn filter_plugin() -> anyhow::Result<Plugin> {
    filter_plugin_with(|_| {})
}

/// Loads `edge_filter.wasm` with the benchmark configuration, then `tweak` on the options.
pub fn filter_plugin_with(tweak: impl FnOnce(&mut HostOptions)) -> anyhow::Result<Plugin> {
    let (cfg, cluster) = filter_config(None, 20);
    let mut opts = HostOptions {
        plugin_config: cfg,
        // Adopting a 1M-rule snapshot in on_configure takes about 0.5 s (the default deadline
        // is 5 s); on a machine busy with other work it can take several times that, and
        // the benchmarks measure the time rather than trap.
        callback_deadline: std::time::Duration::from_secs(30),
        ..HostOptions::default()
    };
    opts.clusters.extend(cluster);
    tweak(&mut opts);
    // EDGE_FILTER_WASM=path benchmarks another build of the filter (e.g. a baseline copy).
    let path = match std::env::var_os("EDGE_FILTER_WASM") {
        Some(p) => PathBuf::from(p),
        None => wasm_path("edge_filter.wasm")?,
    };
    Plugin::load_file(&path, opts).with_context(|| format!("loading {}", path.display()))
}

/// Loads the conformance fixture in `noop` mode (`Continue` on request headers, nothing else).
pub fn noop_plugin() -> anyhow::Result<Plugin> {
    let opts = HostOptions {
        plugin_config: br#"{"mode":"noop"}"#.to_vec(),
        ..HostOptions::default()
    };
    Plugin::load_file(&wasm_path("conformance_filter.wasm")?, opts)
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
