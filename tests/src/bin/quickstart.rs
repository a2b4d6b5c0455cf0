//! The quick start: control plane (embedded SQLite) + edge-proxy running the real
//! `edge_filter.wasm` + the demo upstream, on this machine, with nothing else installed.
//!
//! Creates an admin, a responder and an edge token, prints the console's address and a
//! sign-in token first, then the other addresses and the commands of a first containment
//! (open an incident, block an address on it, wait until the edge answers 403, see the hit
//! counts, lift the block), which capture the ids they create with `jq`; stops every
//! process cleanly on Ctrl-C. A `--data-dir` that holds an earlier run's database resumes it
//! (same tokens, same incidents). `tests/e2e/system.rs` drives it and runs the printed
//! commands.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
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
    /// Directory for the SQLite database, the tokens and the plugin configuration (default:
    /// a fresh temporary directory, removed on exit). One that holds an earlier run's
    /// database resumes it.
    #[arg(long, env = "QUICKSTART_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The data protection officer's contact, stated in breach notifications (can also be
    /// set later: `PATCH /v1/settings`).
    #[arg(long, env = "QUICKSTART_DPO_CONTACT")]
    dpo_contact: Option<String>,
    /// The company name documents are written in (also `PATCH /v1/settings`).
    #[arg(long, env = "QUICKSTART_COMPANY_NAME")]
    company_name: Option<String>,
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
async fn main() {
    // One line per failure (with its causes), never a backtrace: a busy port or a bad flag
    // is something to read at a glance.
    if let Err(e) = run(Args::parse()).await {
        eprintln!("quickstart: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
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
    // A busy address is one line naming the flag, before anything starts.
    for (flag, addr) in [
        ("--cp-listen", &args.cp_listen),
        ("--edge-listen", &args.edge_listen),
        ("--upstream-listen", &args.upstream_listen),
    ] {
        if let Err(e) = TcpListener::bind(addr.as_str()) {
            bail!("{flag} {addr}: cannot listen there ({e}); choose another address with {flag}");
        }
    }
    std::fs::create_dir_all(&data_dir)?;
    let db = data_dir.join("edge-containment.db");
    let tokens_file = data_dir.join(TOKENS_FILE);
    let resumed = db.exists();
    let saved = if resumed {
        Some(Tokens::load(&tokens_file).with_context(|| {
            format!(
                "{} holds a database but no readable {TOKENS_FILE} (not made by the quick start?); choose another --data-dir",
                data_dir.display()
            )
        })?)
    } else {
        None
    };
    let db_url = format!("sqlite://{}", db.display());

    // 1. The demo upstream.
    let mut cmd = Command::new(bin("demo-upstream")?);
    cmd.args(["--listen", &args.upstream_listen]);
    let (mut upstream, upstream_url) =
        Proc::spawn("demo-upstream", cmd, "demo-upstream listening on ")?;

    // 2. The control plane and its tokens (the first run creates them, a resumed run reads
    //    what the first one saved).
    let admin = match &saved {
        Some(t) => t.admin.clone(),
        None => {
            edge_testkit::create_admin_token(&bin("control-plane")?, &db_url, "quickstart-admin")?
        }
    };
    let mut cmd = Command::new(bin("control-plane")?);
    cmd.args([
        "--database-url",
        &db_url,
        "serve",
        "--listen",
        &args.cp_listen,
    ]);
    if let Some(d) = &args.dpo_contact {
        cmd.args(["--dpo-contact", d]);
    }
    if let Some(c) = &args.company_name {
        cmd.args(["--company-name", c]);
    }
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
    let tokens = match saved {
        Some(t) => t,
        None => {
            let t = Tokens {
                admin: admin.clone(),
                responder: token("quickstart-responder", "responder").await?,
                edge: token("quickstart-edge", "edge").await?,
            };
            t.save(&tokens_file)?;
            t
        }
    };
    let (responder, edge_token) = (tokens.responder.clone(), tokens.edge.clone());

    // 3. The edge, with the real filter, syncing from the control plane and trusting the
    //    keys it signs policy with.
    let keys = edge_testkit::trusted_keys(&bin("control-plane")?, &db_url)?;
    let mut plugin = FilterConfig::new(
        ControlPlane::new("control-plane", "control-plane", keys),
        edge_token,
        "quickstart-edge-1",
    );
    plugin.sync.long_poll_wait_s = 20;
    plugin.sync.report_interval_s = REPORT_INTERVAL_S;
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

    let state = if resumed { "resumed" } else { "new" };
    println!();
    println!("Edge containment is running.");
    println!("  console        {cp_url}/console   (sign in with the responder token)");
    println!("  responder token  {responder}");
    println!("  admin token      {admin}");
    println!(
        "  control plane  {cp_url}   (SQLite, {state}: {})",
        db.display()
    );
    println!("  edge           {edge_url}   (edge-proxy + edge_filter.wasm, 2 workers; reports hits every {REPORT_INTERVAL_S} s)");
    println!(
        "  demo upstream  {upstream_url}   (page /, API /api/orders, pixel /px/demo-pixel.js)"
    );
    println!();
    println!("Try it, in another terminal (needs curl and jq; each command keeps the ids it creates in shell variables):");
    for line in commands(&cp_url, &edge_url, &responder) {
        println!("  {line}");
    }
    println!();
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

/// Seconds between the edge's hit reports: hit counts lag by up to this.
const REPORT_INTERVAL_S: u32 = 5;

/// Where a first run keeps its tokens, so that a later run on the same `--data-dir` resumes.
const TOKENS_FILE: &str = "quickstart-tokens.json";

/// The quick start's tokens (in `TOKENS_FILE`, mode 0600).
#[derive(serde::Serialize, serde::Deserialize)]
struct Tokens {
    admin: String,
    responder: String,
    edge: String,
}

impl Tokens {
    fn load(path: &Path) -> anyhow::Result<Tokens> {
        Ok(serde_json::from_slice(&std::fs::read(path)?)?)
    }
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(&serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
}

/// The commands of a first containment, as printed: comments (`# ...`) and commands
/// (`$ ...`), run in order in one shell. Ids are captured with `jq`, never assumed.
fn commands(cp: &str, edge: &str, responder: &str) -> Vec<String> {
    let auth = format!("-H 'Authorization: Bearer {responder}'");
    let json_h = "-H 'Content-Type: application/json'";
    let client = "-H 'X-Forwarded-For: 203.0.113.7'";
    vec![
        "# 1. open an incident; its id goes to $INCIDENT".into(),
        format!("$ INCIDENT=$(curl -sf -X POST {cp}/v1/incidents {auth} {json_h} -d '{{\"title\": \"Scraper on the demo shop\", \"summary\": \"One client pulls every order\", \"severity\": \"high\"}}' | jq -r .id) && echo \"incident $INCIDENT\""),
        "# 2. block the scraper's address on that incident, for one hour; the action's id goes to $ACTION".into(),
        format!("$ ACTION=$(curl -sf -X POST {cp}/v1/incidents/$INCIDENT/actions {auth} {json_h} -d '{{\"kind\": \"block\", \"target\": {{\"cidr\": \"203.0.113.7\"}}, \"reason\": \"scraping orders\", \"expires_in\": \"1h\"}}' | jq -r .id) && echo \"action $ACTION\""),
        "# 3. wait until the edge enforces it (usually well under a second), then see its 403 (the edge trusts one X-Forwarded-For hop)".into(),
        format!("$ for i in $(seq 100); do R=$(curl -s -i {edge}/api/orders {client}); case \"$R\" in \"HTTP/1.1 403\"*) break;; esac; sleep 0.1; done; echo \"$R\""),
        format!("# 4. the block's hit counts (edges report every {REPORT_INTERVAL_S} s: see hits.last_report_at)"),
        format!("$ sleep {}; curl -sf {cp}/v1/actions/$ACTION {auth} | jq '{{id, status, hits}}'", REPORT_INTERVAL_S + 1),
        "# 5. lift it, with a reason".into(),
        format!("$ curl -sf -X POST {cp}/v1/actions/$ACTION/lift {auth} {json_h} -d '{{\"reason\": \"scraper gone\"}}' | jq -r .status"),
    ]
}
