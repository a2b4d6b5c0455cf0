//! Starting the real `control-plane` and `edge-proxy` binaries on 127.0.0.1 for the load
//! generators. Every process started here is killed (by its own handle) when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::Context as _;
use edge_policy::config::{ControlPlane, FilterConfig};
use edge_testkit::Proc;

/// A control plane on a fresh SQLite file in `dir`: (process, base URL, admin token).
pub fn start_control_plane(dir: &Path) -> anyhow::Result<(Proc, String, String)> {
    let bin = edge_testkit::bin("control-plane")?;
    let db = format!("sqlite://{}/cp.db", dir.display());
    let token = edge_testkit::create_admin_token(&bin, &db, "bench-admin")?;
    let mut cmd = Command::new(&bin);
    cmd.args(["--database-url", &db, "serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn");
    let (proc, url) = Proc::spawn("control-plane", cmd, "control-plane listening on")?;
    Ok((proc, url, token))
}

/// Creates a token with `role` through the API.
pub async fn create_token(
    c: &reqwest::Client,
    cp: &str,
    admin: &str,
    name: &str,
    role: &str,
) -> anyhow::Result<String> {
    let v: serde_json::Value = c
        .post(format!("{cp}/v1/tokens"))
        .bearer_auth(admin)
        .json(&serde_json::json!({"name": name, "role": role}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(v["token"]
        .as_str()
        .context("no token in response")?
        .to_string())
}

/// Opens an incident; returns its id.
pub async fn open_incident(c: &reqwest::Client, cp: &str, responder: &str) -> anyhow::Result<u64> {
    let v: serde_json::Value = c
        .post(format!("{cp}/v1/incidents"))
        .bearer_auth(responder)
        .json(
            &serde_json::json!({"title": "bench", "summary": "load generator", "severity": "high"}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    v["id"].as_u64().context("no incident id")
}

/// Blocks one address on an incident.
pub async fn block(
    c: &reqwest::Client,
    cp: &str,
    responder: &str,
    incident: u64,
    ip: &str,
) -> anyhow::Result<reqwest::StatusCode> {
    let r = c
        .post(format!("{cp}/v1/incidents/{incident}/actions"))
        .bearer_auth(responder)
        .json(&serde_json::json!({"kind": "block", "target": {"cidr": ip}, "reason": "bench", "expires_in": "1h"}))
        .send()
        .await?;
    Ok(r.status())
}

/// A minimal upstream on 127.0.0.1 answering 200 to everything (runs on the tokio runtime).
pub async fn start_upstream() -> anyhow::Result<SocketAddr> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(resp).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// An `edge-proxy` running `edge_filter.wasm`, syncing from `cp` with `edge_token`, trusting
/// one `X-Forwarded-For` hop. Returns (process, base URL).
pub fn start_edge(
    dir: &Path,
    cp: &str,
    edge_token: &str,
    upstream: SocketAddr,
    long_poll_wait_s: u32,
    poll_interval_ms: u32,
) -> anyhow::Result<(Proc, String)> {
    // The keys of the database `start_control_plane` made in `dir`.
    let keys = edge_testkit::trusted_keys(
        &edge_testkit::bin("control-plane")?,
        &format!("sqlite://{}/cp.db", dir.display()),
    )?;
    let mut cfg = FilterConfig::new(
        ControlPlane::new("control-plane", cp.trim_start_matches("http://"), keys),
        edge_token,
        format!("bench-edge-lp{long_poll_wait_s}"),
    );
    cfg.sync.long_poll_wait_s = long_poll_wait_s;
    cfg.sync.poll_interval_ms = poll_interval_ms;
    cfg.trusted_hops = 1;
    cfg.fail_mode = edge_policy::config::FailMode::Open;
    let cfg_path =
        edge_testkit::write_plugin_config(dir, &format!("plugin-lp{long_poll_wait_s}.json"), &cfg)?;
    let mut cmd = Command::new(edge_testkit::bin("edge-proxy")?);
    cmd.arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--upstream")
        .arg(format!("http://{upstream}"))
        .arg("--wasm")
        .arg(edge_testkit::filter_wasm()?)
        .arg("--plugin-config")
        .arg(&cfg_path)
        .arg("--cluster")
        .arg(format!("control-plane={cp}"))
        .arg("--workers")
        .arg("2")
        .env("RUST_LOG", "warn");
    let (proc, url) = Proc::spawn("edge-proxy", cmd, "edge-proxy listening on")?;
    Ok((proc, url))
}

/// Resident set size of a process in KiB (`VmRSS` from /proc), and its peak (`VmHWM`).
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Raises this process's open-file limit to its hard limit (for thousands of connections).
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read/write the struct passed by pointer.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        r.rlim_cur = r.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
            return 0;
        }
        r.rlim_cur
    }
}

/// `n` control-plane replicas on one database (`postgres://…`): the first admin token is
/// made with the CLI, then each replica serves on its own port. Returns (processes, base
/// URLs, admin token).
pub fn start_control_plane_replicas(
    database_url: &str,
    n: usize,
) -> anyhow::Result<(Vec<Proc>, Vec<String>, String)> {
    let bin = edge_testkit::bin("control-plane")?;
    let token = edge_testkit::create_admin_token(&bin, database_url, "bench-admin")?;
    let mut procs = Vec::with_capacity(n);
    let mut urls = Vec::with_capacity(n);
    for i in 0..n.max(1) {
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--database-url",
            database_url,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn");
        let (proc, url) = Proc::spawn(
            &format!("control-plane-{i}"),
            cmd,
            "control-plane listening on",
        )?;
        procs.push(proc);
        urls.push(url);
    }
    Ok((procs, urls, token))
}

/// Blocks one address on an incident; the status, the instant the answer's headers
/// arrived, and the policy version the action created (`created_version` of a 201 body).
pub async fn block_versioned(
    c: &reqwest::Client,
    cp: &str,
    responder: &str,
    incident: u64,
    ip: &str,
) -> anyhow::Result<(reqwest::StatusCode, std::time::Instant, Option<u64>)> {
    let r = c
        .post(format!("{cp}/v1/incidents/{incident}/actions"))
        .bearer_auth(responder)
        .json(&serde_json::json!({"kind": "block", "target": {"cidr": ip}, "reason": "bench", "expires_in": "1h"}))
        .send()
        .await?;
    let at = std::time::Instant::now();
    let status = r.status();
    let version = if status.is_success() {
        r.json::<serde_json::Value>().await?["created_version"].as_u64()
    } else {
        None
    };
    Ok((status, at, version))
}

/// CPU time (user + system) a process has used, in seconds (`/proc/<pid>/stat`).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// CPU time (user + system) this process has used, in seconds.
pub fn own_cpu_secs() -> f64 {
    cpu_secs(std::process::id()).unwrap_or(f64::NAN)
}

/// Proportional set size of a process in KiB (`Pss` from `/proc/<pid>/smaps_rollup`):
/// shared pages divided among the processes sharing them, so a sum over PostgreSQL's
/// processes counts its shared buffers once.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// A process and its direct children (a PostgreSQL postmaster and its backends).
pub fn with_children(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        let ppid = s
            .lines()
            .find(|l| l.starts_with("PPid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pid) {
            pids.push(p);
        }
    }
    pids
}

/// The postmaster's pid of a [`edge_testkit::postgres::PgCluster`] (first line of
/// `postmaster.pid` in its data directory).
pub fn postmaster_pid(pg: &edge_testkit::postgres::PgCluster) -> anyhow::Result<u32> {
    let data = pg.psql(
        "postgres",
        "SELECT setting FROM pg_settings WHERE name = 'data_directory'",
    )?;
    let s = std::fs::read_to_string(Path::new(&data).join("postmaster.pid"))
        .context("reading postmaster.pid")?;
    s.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .context("no pid in postmaster.pid")
}
