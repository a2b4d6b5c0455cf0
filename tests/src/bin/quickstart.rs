//! The quick start: control plane (embedded SQLite) + edge-proxy running the real
//! `edge_filter.wasm` + the demo upstream, on this machine, with nothing else installed.
//!
//! Creates an admin, a responder and an edge token, prints the addresses and three curl
//! commands (open an incident, block an address, see the edge answer 403), and stops every
//! process cleanly on Ctrl-C. `tests/e2e/system.rs` drives it and runs the printed commands.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use edge_policy::config::{ControlPlane, FilterConfig};
use edge_testkit::{paths, Proc};
use serde_json::{json, Value};

/// Run the whole product locally: control plane, one edge, a demo upstream.
#[derive(Parser)]
struct Args {
    /// Where the control plane listens.
    #[arg(long, env = "QUICKSTART_CP_LISTEN", default_value = "127.0.0.1:8080")]
    cp_listen: String,
    /// Where the edge listens.
    #[arg(long, env = "QUICKSTART_EDGE_LISTEN", default_value = "127.0.0.1:8000")]
    edge_listen: String,
    /// Where the demo upstream listens.
    #[arg(
        long,
        env = "QUICKSTART_UPSTREAM_LISTEN",
        default_value = "127.0.0.1:9000"
    )]
    upstream_listen: String,
    /// Directory for the SQLite database and the plugin configuration (default: a fresh
    /// temporary directory, removed on exit). Must not hold a database already.
    #[arg(long, env = "QUICKSTART_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Directory holding the `control-plane`, `edge-proxy` and `demo-upstream` binaries
    /// (default: next to this one).
    #[arg(long, env = "QUICKSTART_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// The filter (default: `wasm32-wasip1/wasm-release/edge_filter.wasm` in
    /// `$CARGO_TARGET_DIR`, else in the target directory this binary was built into).
    #[arg(long, env = "EDGE_FILTER_WASM")]
    wasm: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = |name: &str| match &args.bin_dir {
        Some(d) => paths::find(name, vec![d.join(name)], paths::BINS_BUILD),
        None => edge_testkit::bin(name),
    };
    let wasm = match &args.wasm {
        Some(w) => paths::find("edge_filter.wasm", vec![w.clone()], paths::WASM_BUILD)?,
        None => edge_testkit::wasm("edge_filter.wasm")?,
    };
    // A temporary data directory lives (and is removed) with `_temp`.
    let (data_dir, _temp) = match &args.data_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = edge_testkit::temp_dir("quickstart")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    std::fs::create_dir_all(&data_dir)?;
    let db = data_dir.join("edge-containment.db");
    if db.exists() {
        bail!(
            "{} already holds a database; choose another --data-dir",
            data_dir.display()
        );
    }
    let db_url = format!("sqlite://{}", db.display());

    // 1. The demo upstream.
    let mut cmd = Command::new(bin("demo-upstream")?);
    cmd.args(["--listen", &args.upstream_listen]);
    let (mut upstream, upstream_url) =
        Proc::spawn("demo-upstream", cmd, "demo-upstream listening on ")?;

    // 2. The control plane and its first (admin) token.
    let admin =
        edge_testkit::create_admin_token(&bin("control-plane")?, &db_url, "quickstart-admin")?;
    let mut cmd = Command::new(bin("control-plane")?);
    cmd.args([
        "--database-url",
        &db_url,
        "serve",
        "--listen",
        &args.cp_listen,
    ]);
    let (mut cp, cp_url) = Proc::spawn("control-plane", cmd, "control-plane listening on ")?;

    let http = reqwest::Client::new();
    let token = |name: &'static str, role: &'static str| {
        let req = http
            .post(format!("{cp_url}/v1/tokens"))
            .bearer_auth(&admin)
            .json(&json!({"name": name, "role": role}));
        async move {
            let v: Value = req.send().await?.error_for_status()?.json().await?;
            v["token"]
                .as_str()
                .map(str::to_string)
                .context("no token in the answer")
        }
    };
    let responder = token("quickstart-responder", "responder").await?;
    let edge_token = token("quickstart-edge", "edge").await?;

    // 3. The edge, with the real filter, syncing from the control plane and trusting the
    //    keys it signs policy with.
    let keys = edge_testkit::trusted_keys(&bin("control-plane")?, &db_url)?;
    let mut plugin = FilterConfig::new(
        ControlPlane::new("control-plane", "control-plane", keys),
        edge_token,
        "quickstart-edge-1",
    );
    plugin.sync.long_poll_wait_s = 20;
    plugin.sync.report_interval_s = 5;
    // One trusted hop, so the curl examples can play other clients with X-Forwarded-For.
    plugin.trusted_hops = 1;
    plugin.fail_mode = edge_policy::config::FailMode::Open;
    let plugin_path = edge_testkit::write_plugin_config(&data_dir, "plugin.json", &plugin)?;
    let mut cmd = Command::new(bin("edge-proxy")?);
    cmd.args([
        "--listen",
        &args.edge_listen,
        "--upstream",
        &upstream_url,
        "--workers",
        "2",
    ])
    .arg("--wasm")
    .arg(&wasm)
    .arg("--plugin-config")
    .arg(&plugin_path)
    .arg("--cluster")
    .arg(format!("control-plane={cp_url}"));
    let (mut edge, edge_url) = Proc::spawn("edge-proxy", cmd, "edge-proxy listening on ")?;
    // Ready when the filter enforces the control plane's first policy.
    if edge
        .wait_for_line("enforcing policy version", Duration::from_secs(30))
        .is_none()
    {
        bail!("the edge never received a policy:\n{}", edge.output_text());
    }

    let auth = |t: &str| format!("-H 'Authorization: Bearer {t}'");
    let json_h = "-H 'Content-Type: application/json'";
    println!();
    println!("Edge containment is running.");
    println!("  control plane  {cp_url}   (SQLite: {})", db.display());
    println!("  edge           {edge_url}   (edge-proxy + edge_filter.wasm, 2 workers)");
    println!(
        "  demo upstream  {upstream_url}   (page /, API /api/orders, pixel /px/demo-pixel.js)"
    );
    println!("  admin token      {admin}");
    println!("  responder token  {responder}");
    println!();
    println!("Try it, in another terminal:");
    println!("  # 1. open an incident");
    println!(
        "  $ curl -s -X POST {cp_url}/v1/incidents {} {json_h} -d '{{\"title\": \"Scraper on the demo shop\", \"summary\": \"One client pulls every order\", \"severity\": \"high\"}}'",
        auth(&responder)
    );
    println!("  # 2. block the scraper's address on that incident, for one hour");
    println!(
        "  $ curl -s -X POST {cp_url}/v1/incidents/1/actions {} {json_h} -d '{{\"kind\": \"block\", \"target\": {{\"cidr\": \"203.0.113.7\"}}, \"reason\": \"scraping orders\", \"expires_in\": \"1h\"}}'",
        auth(&responder)
    );
    println!(
        "  # 3. the edge answers 403 for that client (the edge trusts one X-Forwarded-For hop)"
    );
    println!("  $ curl -s -i {edge_url}/api/orders -H 'X-Forwarded-For: 203.0.113.7'");
    println!();
    println!(
        "The incident with per-action hit counts: curl -s {cp_url}/v1/incidents/1 {}",
        auth(&responder)
    );
    println!("Press Ctrl-C to stop.");

    tokio::signal::ctrl_c().await?;
    println!("stopping...");
    for p in [&mut edge, &mut cp, &mut upstream] {
        if !p.stop("TERM", Duration::from_secs(10)) {
            eprintln!("{} did not stop cleanly in 10 s; killing it", p.name);
            p.kill();
        }
    }
    println!("stopped.");
    Ok(())
}
