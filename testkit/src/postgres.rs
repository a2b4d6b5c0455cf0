//! A throwaway PostgreSQL cluster for tests: `initdb` in a temporary directory, the server
//! on 127.0.0.1 on a port chosen at run time (no Unix socket), trust authentication, stopped
//! and removed when dropped — and, should the test process die first, by a watcher process
//! that outlives it by at most a second.
//!
//! `initdb` refuses to run as root; as root (CI), every server command runs as the
//! unprivileged `postgres` user the Debian package creates, which owns the directory.
//!
//! The server binaries come from `$PG_BIN` when set, else the newest
//! `/usr/lib/postgresql/*/bin` (Debian's layout), else `PATH`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context as _};
use tempfile::TempDir;

pub struct PgCluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Run server commands as this (uid, gid) (when the tests run as root).
    user: Option<(u32, u32)>,
    _dir: TempDir,
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

impl PgCluster {
    /// Create and start a cluster.
    pub fn start() -> anyhow::Result<PgCluster> {
        let bin = server_bin()?;
        let user = unprivileged_user()?;
        let dir = tempfile::Builder::new().prefix("edge-pg-").tempdir()?;
        let data = dir.path().join("data");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("giving the cluster directory to the postgres user")?;
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg("-D")
            .arg(&data);
        run(as_user(initdb, user), "initdb")?;
        let port = free_port()?;
        // fsync off: the tests kill processes, never the machine; every write() still
        // reaches the kernel before a commit is acknowledged (synchronous_commit stays on),
        // so an immediate shutdown loses nothing acknowledged.
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n\
             fsync = off\nfull_page_writes = off\nmax_connections = 300\nshared_buffers = 32MB\n"
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .context("writing postgresql.conf")?;
        let cluster = PgCluster {
            bin,
            data,
            port,
            user,
            _dir: dir,
        };
        cluster.pg_ctl_start()?;
        cluster.watch_parent()?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Create a new, empty database; returns its URL.
    pub fn create_database(&self) -> anyhow::Result<String> {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Run one SQL command in `db`; its output.
    pub fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(["-d", db, "-c", sql])
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!(
                "psql `{sql}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Stop the server without a shutdown checkpoint, as a crash would
    /// (`pg_ctl stop -m immediate`).
    pub fn stop_immediate(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"])
    }

    /// Start the server again after [`PgCluster::stop_immediate`] (recovery runs first).
    pub fn restart(&self) -> anyhow::Result<()> {
        self.pg_ctl_start()
    }

    fn pg_ctl_start(&self) -> anyhow::Result<()> {
        let log = self.data.with_file_name("server.log");
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"]);
        run(as_user(cmd, self.user), "pg_ctl start").with_context(|| {
            format!(
                "server log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.arg("-D").arg(&self.data).args(args);
        run(as_user(cmd, self.user), "pg_ctl")
    }

    /// A detached shell that stops the server and removes the directory once this process
    /// is gone (statics holding a cluster are never dropped).
    fn watch_parent(&self) -> anyhow::Result<()> {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; \
             '{bin}/pg_ctl' -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            bin = self.bin.display(),
            data = self.data.display(),
            dir = self
                .data
                .parent()
                .unwrap_or(Path::new("/nonexistent"))
                .display(),
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: a test harness killing ours does not take it along.
        cmd.process_group(0);
        as_user(cmd, self.user)
            .spawn()
            .context("starting the cluster watcher")?;
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
    }
}

fn as_user(mut cmd: Command, user: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
        cmd.env("HOME", "/tmp");
    }
    cmd
}

fn run(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The directory holding `initdb`, `pg_ctl`, `postgres` and `psql`.
pub fn server_bin() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Ok(bin);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
            return Ok(dir);
        }
    }
    bail!(
        "the PostgreSQL server binaries (initdb, pg_ctl) were not found: install Debian's \
         `postgresql` package or set PG_BIN"
    )
}

/// As root: the `postgres` user's (uid, gid); otherwise none needed.
fn unprivileged_user() -> anyhow::Result<Option<(u32, u32)>> {
    let euid = Command::new("id").arg("-u").output()?;
    if String::from_utf8_lossy(&euid.stdout).trim() != "0" {
        return Ok(None);
    }
    let id = |flag: &str| -> anyhow::Result<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output()?;
        if !out.status.success() {
            bail!("running as root and there is no `postgres` user to run the server as");
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    Ok(Some((id("-u")?, id("-g")?)))
}
