//! Starting the real `control-plane` and `edge-proxy` binaries on 127.0.0.1 for the load
//! generators. Every process started here is killed (by its own handle) when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::vmkit::wasm_path;

const BUILD: &str = "cargo build --release --bins";

/// A release binary of the workspace (`control-plane`, `edge-proxy`).
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    crate::vmkit::find_built("release", name).map_err(|tried| {
        anyhow::anyhow!("{name} not found (tried {tried:?}); build it first with:\n  {BUILD}")
    })
}

/// A child process, killed and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd`, waits for a stdout line starting with `prefix` and returns what follows.
/// The rest of stdout is drained in a thread.
fn spawn_until(
    mut cmd: Command,
    name: &'static str,
    prefix: &str,
) -> anyhow::Result<(Proc, String)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let out = child.stdout.take().context("stdout")?;
    let proc = Proc { child, name };
    let (tx, rx) = mpsc::channel();
    let wanted = prefix.to_string();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(rest) = line.trim().strip_prefix(&wanted) {
                    let _ = tx.send(rest.trim().to_string());
                    sent = true;
                }
            }
        }
    });
    let rest = rx
        .recv_timeout(Duration::from_secs(30))
        .with_context(|| format!("{name} did not print `{prefix}` within 30 s"))?;
    Ok((proc, rest))
}

/// A control plane on a fresh SQLite file in `dir`: (process, base URL, admin token).
pub fn start_control_plane(dir: &Path) -> anyhow::Result<(Proc, String, String)> {
    let bin = bin_path("control-plane")?;
    let db = format!("sqlite://{}/cp.db", dir.display());
    let out = Command::new(&bin)
        .args([
            "--database-url",
            &db,
            "token",
            "create",
            "--role",
            "admin",
            "--name",
            "bench-admin",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .context("control-plane token create")?;
    if !out.status.success() {
        bail!(
            "token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let token = text
        .split_whitespace()
        .find(|w| w.starts_with("ecp_"))
        .context("no token printed by `control-plane token create`")?
        .to_string();
    let mut cmd = Command::new(&bin);
    cmd.args(["--database-url", &db, "serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn");
    let (proc, url) = spawn_until(cmd, "control-plane", "control-plane listening on")?;
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
    let authority = cp.trim_start_matches("http://").to_string();
    let cfg = serde_json::json!({
        "control_plane": {"cluster": "control-plane", "authority": authority},
        "edge_token": edge_token,
        "edge_id": format!("bench-edge-lp{long_poll_wait_s}"),
        "sync": {"long_poll_wait_s": long_poll_wait_s, "poll_interval_ms": poll_interval_ms},
        "trusted_hops": 1,
        "fail_mode": "open"
    });
    let cfg_path = dir.join(format!("plugin-lp{long_poll_wait_s}.json"));
    std::fs::write(&cfg_path, cfg.to_string())?;
    let mut cmd = Command::new(bin_path("edge-proxy")?);
    cmd.arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--upstream")
        .arg(format!("http://{upstream}"))
        .arg("--wasm")
        .arg(wasm_path("edge_filter.wasm")?)
        .arg("--plugin-config")
        .arg(&cfg_path)
        .arg("--cluster")
        .arg(format!("control-plane={cp}"))
        .arg("--workers")
        .arg("2")
        .env("RUST_LOG", "warn");
    let (proc, url) = spawn_until(cmd, "edge-proxy", "edge-proxy listening on")?;
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

/// A fresh temporary directory under the system temp dir.
pub fn temp_dir(tag: &str) -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let d = std::env::temp_dir().join(format!("edge-bench-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
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
