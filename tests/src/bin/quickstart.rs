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
use edge_e2e::procs::Proc;
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
    /// The filter (default: `wasm32-wasip1/wasm-release/edge_filter.wasm` in the target
    /// directory this binary was built into).
    #[arg(long, env = "EDGE_FILTER_WASM")]
    wasm: Option<PathBuf>,
}

struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn sigterm(p: &mut Proc) {
    // SAFETY: kill(2) with a child's pid and SIGTERM has no memory-safety preconditions.
    unsafe {
        libc::kill(p.pid() as libc::pid_t, libc::SIGTERM);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .to_path_buf(),
    };
    let bin = |name: &str| -> anyhow::Result<PathBuf> {
        let p = bin_dir.join(name);
        if !p.exists() {
            bail!(
                "{} is missing: build with `cargo build --release --bins`",
                p.display()
            );
        }
        Ok(p)
    };
    // target/release/quickstart -> target/wasm32-wasip1/wasm-release/edge_filter.wasm
    let wasm = match args.wasm {
        Some(w) => w,
        None => bin_dir
            .parent()
            .context("target directory")?
            .join("wasm32-wasip1/wasm-release/edge_filter.wasm"),
    };
    if !wasm.exists() {
        bail!(
            "{} is missing: build it with `cargo build --profile wasm-release --target wasm32-wasip1 -p edge-filter`",
            wasm.display()
        );
    }
    let (data_dir, _cleanup) = match args.data_dir {
        Some(d) => (d, Cleanup(None)),
        None => {
            let d = std::env::temp_dir().join(format!("edge-quickstart-{}", std::process::id()));
            (d.clone(), Cleanup(Some(d)))
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
        Proc::start("demo-upstream", cmd, "demo-upstream listening on ");

    // 2. The control plane and its first (admin) token.
    let out = Command::new(bin("control-plane")?)
        .args([
            "--database-url",
            &db_url,
            "token",
            "create",
            "--role",
            "admin",
            "--name",
            "quickstart-admin",
        ])
        .output()?;
    if !out.status.success() {
        bail!(
            "creating the admin token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let admin = String::from_utf8(out.stdout)?.trim().to_string();
    let mut cmd = Command::new(bin("control-plane")?);
    cmd.args([
        "--database-url",
        &db_url,
        "serve",
        "--listen",
        &args.cp_listen,
    ]);
    let (mut cp, cp_url) = Proc::start("control-plane", cmd, "control-plane listening on ");

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

    // 3. The edge, with the real filter, syncing from the control plane.
    let plugin = json!({
        "control_plane": {"cluster": "control-plane", "authority": "control-plane"},
        "edge_token": edge_token,
        "edge_id": "quickstart-edge-1",
        "sync": {"long_poll_wait_s": 20, "report_interval_s": 5},
        // One trusted hop, so the curl examples can play other clients with X-Forwarded-For.
        "trusted_hops": 1,
        "fail_mode": "open"
    });
    let plugin_path = data_dir.join("plugin.json");
    std::fs::write(&plugin_path, serde_json::to_vec_pretty(&plugin)?)?;
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
    let (mut edge, edge_url) = Proc::start("edge-proxy", cmd, "edge-proxy listening on ");
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
        sigterm(p);
    }
    for p in [&mut edge, &mut cp, &mut upstream] {
        if !p.wait_exit(Duration::from_secs(10)) {
            eprintln!("{} did not stop in 10 s; killing it", p.name);
            p.kill();
        }
    }
    println!("stopped.");
    Ok(())
}
