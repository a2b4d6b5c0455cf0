//! Command line: `control-plane [serve]`, `control-plane token create`,
//! `control-plane key list|rotate`, `control-plane purge` and `control-plane copy`.

mod copy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::clock::{Clock, SystemClock};
use crate::domain::action::GuardRails;
use crate::domain::check_name;
use crate::domain::deadline::Holidays;
use crate::domain::token::{self, Role};
use crate::store::sql::SqlStore;
use crate::store::{RecordStore, TokenStore};
use crate::{server, AppState, Settings};

/// Edge containment control plane.
#[derive(Debug, Parser)]
#[command(name = "control-plane", version, about)]
pub struct Cli {
    /// Database URL. A SQLite file (`sqlite://path.db` or a plain path: one process) is
    /// created and migrated on start, in WAL mode; `postgres://user:password@host/db` is
    /// migrated on start and may be shared by several replicas.
    #[arg(
        long,
        env = "EC_DATABASE_URL",
        default_value = "sqlite://edge-containment.db",
        global = true
    )]
    pub database_url: String,
    /// Log format on stderr (`RUST_LOG` sets the level, default `info`).
    #[arg(long, env = "EC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(Box<ServeArgs>),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the keys that sign every policy answer.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Delete the records of incidents closed more than N (at least 5) years ago. Their
    /// audit events are kept, and the purge itself is appended to the audit log.
    Purge(PurgeArgs),
    /// Copy every record (incidents, actions, policy versions, the audit chain with its
    /// hashes, tokens, signing keys, edge reports, evidence) from one database into a new,
    /// empty one: how a SQLite deployment moves to PostgreSQL. Stop the control plane first.
    Copy(copy::CopyArgs),
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Purge incidents closed more than this many years ago (5 or more: records are kept
    /// at least 5 years).
    #[arg(long, value_parser = clap::value_parser!(u32).range(5..=100))]
    pub older_than_years: u32,
    /// List what would be purged; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Recorded as the actor of the purge in the audit log.
    #[arg(long, default_value = "cli")]
    pub actor: String,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once on stdout. Meant for the first admin token on an
    /// empty database; refuses when active tokens exist unless `--force`.
    Create(TokenCreate),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the signing keys (public keys only): what goes into every edge's
    /// `control_plane.trusted_keys`. On a database without keys, creates the first one (as
    /// the first start does), so edges can be configured before the control plane runs.
    List {
        /// One JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Create a new signing key. Every key signing now keeps signing for the overlap (both
    /// sign every answer meanwhile), then retires: add the new key to every edge's
    /// `control_plane.trusted_keys` within the overlap. Audited as `signing_key.rotate`.
    /// Running servers pick the new key up within 5 s.
    Rotate {
        /// How long the keys signing now go on signing: a number and a unit, `s`, `m`, `h`
        /// or `d` (`90s`, `24h`, `7d`; at most 90 days; `0s` retires them at once).
        #[arg(long, default_value = "24h", value_parser = parse_overlap)]
        overlap: i64,
        /// Recorded as the actor in the audit log.
        #[arg(long, default_value = "cli")]
        actor: String,
    },
}

#[derive(Debug, Args)]
pub struct TokenCreate {
    /// The token's role.
    #[arg(long, value_enum)]
    pub role: Role,
    /// The token's name, recorded as the actor of every change made with it.
    #[arg(long)]
    pub name: String,
    /// Create the token even though active tokens exist (break-glass; audited as `cli`).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the chosen address is printed).
    #[arg(long, env = "EC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Shortest IPv4 prefix a block may have without `force: true`.
    #[arg(long, env = "EC_MIN_PREFIX_V4", default_value_t = 8, value_parser = clap::value_parser!(u8).range(0..=32))]
    pub min_prefix_v4: u8,
    /// Shortest IPv6 prefix a block may have without `force: true`.
    #[arg(long, env = "EC_MIN_PREFIX_V6", default_value_t = 24, value_parser = clap::value_parser!(u8).range(0..=128))]
    pub min_prefix_v6: u8,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "EC_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// How often expired actions are looked for, in milliseconds.
    #[arg(long, env = "EC_EXPIRY_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    pub expiry_interval_ms: u64,
    /// Holidays the post-mortem deadline skips besides weekends: `YYYY-MM-DD` dates,
    /// comma-separated (`2026-12-25,2026-12-26`).
    #[arg(long, env = "EC_HOLIDAYS", default_value = "")]
    pub holidays: String,
    /// A file of holidays: dates separated by commas or newlines, `#` comments.
    #[arg(long, env = "EC_HOLIDAYS_FILE")]
    pub holidays_file: Option<std::path::PathBuf>,
    /// The data protection officer's contact (name, e-mail, phone), stated in every breach
    /// notification and the customer notification.
    /// Until set through `PATCH /v1/settings`.
    #[arg(long, env = "EC_DPO_CONTACT")]
    pub dpo_contact: Option<String>,
    /// The company name documents are written in (until set through `PATCH /v1/settings`).
    #[arg(long, env = "EC_COMPANY_NAME")]
    pub company_name: Option<String>,
    /// The security mailbox incidents are reported to (the internal alert's recipient; until
    /// set through `PATCH /v1/settings`).
    #[arg(long, env = "EC_SECURITY_MAILBOX")]
    pub security_mailbox: Option<String>,
    /// Alert intake configuration (JSON): the severity label and its values, the labels
    /// that carry indicators, and the rules that propose blocks (see API.md, "Alert
    /// intake"). Default: label `severity`, indicators from `client_ip`, `source_ip`,
    /// `src_ip`, `user_agent`, `pixel_id`, no rules.
    #[arg(long, env = "EC_INTAKE_CONFIG")]
    pub intake_config: Option<std::path::PathBuf>,
    /// Largest accepted access-log batch (`POST /v1/evidence/access-logs`), in bytes.
    #[arg(long, env = "EC_MAX_EVIDENCE_BYTES", default_value_t = 8 << 20)]
    pub max_evidence_bytes: usize,
    /// Waiting edge long-polls are woken at most once per this many milliseconds: the first
    /// policy change after a quiet interval at once, later ones together at the interval's
    /// end, with the latest version (0: on every change). Bounds the work a burst of writes
    /// causes with many edges; adds at most this much to propagation during a burst.
    #[arg(long, env = "EC_POLICY_WAKE_INTERVAL_MS", default_value_t = crate::DEFAULT_POLICY_WAKE_INTERVAL_MS,
        value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub policy_wake_interval_ms: u64,
    /// How long a successful bearer-token check is reused without a database query, in
    /// milliseconds (0: never). Revocations through this process apply at once whatever the
    /// value; it bounds how long a revocation made elsewhere (another replica) takes.
    #[arg(long, env = "EC_TOKEN_CACHE_TTL_MS", default_value_t = crate::DEFAULT_TOKEN_CACHE_TTL_MS,
        value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub token_cache_ttl_ms: u64,
    /// A request head (request line and headers) must arrive complete within this many
    /// milliseconds of the connection's start, or of its first byte after a keep-alive wait;
    /// otherwise the connection is closed.
    #[arg(long, env = "EC_HEADER_READ_TIMEOUT_MS", default_value_t = server::DEFAULT_HEADER_READ_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub header_read_timeout_ms: u64,
    /// A request body must arrive complete within this many milliseconds of the request's
    /// start (408 `body_timeout` otherwise).
    #[arg(long, env = "EC_BODY_READ_TIMEOUT_MS", default_value_t = server::DEFAULT_BODY_READ_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub body_read_timeout_ms: u64,
    /// A kept-alive connection with no request for this many milliseconds is closed.
    #[arg(long, env = "EC_IDLE_TIMEOUT_MS", default_value_t = server::DEFAULT_IDLE_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub idle_timeout_ms: u64,
    /// Connections open at once; further ones get 503 `overloaded` and are closed. 0 (the
    /// default): the open-file limit (raised to its hard limit at start) less 64.
    #[arg(long, env = "EC_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,
    /// Most headers one request may carry (431 `headers_too_large` beyond).
    #[arg(long, env = "EC_MAX_HEADERS", default_value_t = server::DEFAULT_MAX_HEADERS,
        value_parser = clap::value_parser!(u16).range(1..=1000).map(usize::from))]
    pub max_headers: usize,
    /// Largest request line plus headers, in bytes (431 `headers_too_large` beyond).
    #[arg(long, env = "EC_MAX_HEADER_BYTES", default_value_t = server::DEFAULT_MAX_HEADER_BYTES,
        value_parser = clap::value_parser!(u32).range(1024..=1_048_576).map(|n| n as usize))]
    pub max_header_bytes: usize,
}

impl ServeArgs {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut holidays =
            Holidays::parse(&self.holidays).map_err(|e| anyhow::anyhow!("--holidays: {e}"))?;
        if let Some(path) = &self.holidays_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--holidays-file {}: {e}", path.display()))?;
            let more = Holidays::parse(&text)
                .map_err(|e| anyhow::anyhow!("--holidays-file {}: {e}", path.display()))?;
            holidays.0.extend(more.0);
        }
        fn given(v: &Option<String>) -> Option<Option<&str>> {
            v.as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(Some)
        }
        let change = crate::domain::settings::validate(
            given(&self.company_name),
            given(&self.dpo_contact),
            given(&self.security_mailbox),
        )
        .map_err(|e| {
            let mut m = e.to_string();
            for f in ["company_name", "dpo_contact", "security_mailbox"] {
                m = m.replace(f, &format!("--{}", f.replace('_', "-")));
            }
            anyhow::anyhow!("{m}")
        })?;
        let org = crate::domain::settings::OrgSettings {
            company_name: change.company_name.flatten(),
            dpo_contact: change.dpo_contact.flatten(),
            security_mailbox: change.security_mailbox.flatten(),
        };
        let intake = match &self.intake_config {
            None => crate::domain::intake::IntakeConfig::default(),
            Some(path) => {
                let text = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("--intake-config {}: {e}", path.display()))?;
                serde_json::from_slice(&text)
                    .map_err(|e| anyhow::anyhow!("--intake-config {}: {e}", path.display()))?
            }
        };
        Ok(Settings {
            rails: GuardRails {
                min_prefix_v4: self.min_prefix_v4,
                min_prefix_v6: self.min_prefix_v6,
            },
            max_body_bytes: self.max_body_bytes,
            expiry_interval: Duration::from_millis(self.expiry_interval_ms),
            holidays,
            org,
            intake,
            max_evidence_bytes: self.max_evidence_bytes,
            policy_wake_interval: Duration::from_millis(self.policy_wake_interval_ms),
            token_cache_ttl: Duration::from_millis(self.token_cache_ttl_ms),
            conn: server::ConnLimits {
                header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
                body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
                idle_timeout: Duration::from_millis(self.idle_timeout_ms),
                max_connections: match self.max_connections {
                    0 => server::FALLBACK_MAX_CONNECTIONS,
                    n => n,
                },
                max_headers: self.max_headers,
                max_header_bytes: self.max_header_bytes,
                max_request_bytes: self.max_body_bytes.max(self.max_evidence_bytes),
            },
        })
    }
}

/// `ms` moved back by `years` calendar years (forward when negative); 29 February becomes
/// 28 February in a year without it.
pub fn years_before(ms: i64, years: i32) -> i64 {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let year = t.year() - years;
    let moved = t
        .replace_year(year)
        .or_else(|_| t.replace_day(28).and_then(|d| d.replace_year(year)))
        .unwrap_or(t);
    i64::try_from(moved.unix_timestamp_nanos() / 1_000_000).unwrap_or(ms)
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().try_init(),
    };
}

/// Entry point of the binary.
pub fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if cli.command.is_none() {
        // `serve` is the default: parse again with it appended so its flags and env apply.
        let args = std::env::args_os().chain(std::iter::once("serve".into()));
        cli = Cli::parse_from(args);
    }
    init_logging(cli.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Copy(c)) = &cli.command {
        return copy::run(c).await;
    }
    let store = SqlStore::connect(&cli.database_url)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match cli.command {
        Some(Command::Token(TokenCommand::Create(t))) => {
            let name = check_name("name", &t.name, 100).map_err(|e| anyhow::anyhow!("{e}"))?;
            let clear = token::generate();
            let rec = store
                .create_token(
                    "cli",
                    &name,
                    t.role,
                    token::hash(&clear),
                    !t.force,
                    SystemClock.now_ms(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "created {} token {} ({}); it is shown only once:",
                rec.role, rec.id, rec.name
            );
            println!("{clear}");
            Ok(())
        }
        Some(Command::Serve(args)) => serve(store, *args).await,
        Some(Command::Key(k)) => key_command(&store, k).await,
        Some(Command::Purge(p)) => {
            let actor = check_name("actor", &p.actor, 100).map_err(|e| anyhow::anyhow!("{e}"))?;
            let now = SystemClock.now_ms();
            let cutoff = years_before(now, p.older_than_years as i32);
            let report = store
                .purge(&actor, cutoff, p.older_than_years, p.dry_run, now)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "{} {} incident(s) closed before {}{}",
                if p.dry_run { "would purge" } else { "purged" },
                report.incidents.len(),
                crate::clock::rfc3339(cutoff),
                report
                    .audit_seq
                    .map(|s| format!("; recorded as audit event {s}"))
                    .unwrap_or_default()
            );
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Some(Command::Copy(_)) => unreachable!("handled before connecting"),
        None => Err(anyhow::anyhow!("no command")),
    }
}

/// `90s`, `15m`, `24h`, `7d` as milliseconds.
fn parse_overlap(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit (s, m, h, d)"))?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(ms)
        .filter(|v| *v <= crate::domain::signing::MAX_OVERLAP_MS)
        .ok_or_else(|| format!("{s:?}: at most 90 days"))
}

async fn key_command(store: &SqlStore, k: KeyCommand) -> anyhow::Result<()> {
    let err = |e: crate::domain::CoreError| anyhow::anyhow!("{e}");
    let now = SystemClock.now_ms();
    let (keys, json) = match k {
        KeyCommand::List { json } => {
            crate::signing::ensure_key(store, &SystemClock, "cli")
                .await
                .map_err(err)?;
            (store.signing_keys().await.map_err(err)?, json)
        }
        KeyCommand::Rotate { overlap, actor } => {
            let actor = check_name("actor", &actor, 100).map_err(err)?;
            let new = crate::signing::generate(now);
            let id = new.key_id.clone();
            let keys = store
                .add_signing_key(&actor, new, overlap, false, now)
                .await
                .map_err(err)?;
            eprintln!(
                "new signing key {id}; the keys signing until now retire in {} s: add the new public key to every edge's control_plane.trusted_keys before then",
                overlap / 1000
            );
            (keys, false)
        }
    };
    let views: Vec<_> = keys.iter().map(|k| k.view(now)).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&views)?);
    } else {
        for v in views {
            let until = v
                .retire_at
                .map(|t| format!(" until {}", crate::clock::rfc3339(t)))
                .unwrap_or_default();
            println!("{} {}{until} {}", v.key_id, v.state, v.public_key);
        }
    }
    Ok(())
}

async fn serve(store: SqlStore, args: ServeArgs) -> anyhow::Result<()> {
    let mut settings = args.settings()?;
    // Every connection is a descriptor: raise the soft limit to the hard one, and let the
    // connection cap follow it (so the process refuses with 503 before it runs out).
    let open_files = server::raise_open_file_limit();
    let allowed = server::connections_for(open_files);
    settings.conn.max_connections = match args.max_connections {
        0 => allowed,
        n => {
            if n > allowed {
                tracing::warn!(
                    max_connections = n,
                    allowed,
                    "--max-connections exceeds what the open-file limit allows; new connections may fail"
                );
            }
            n
        }
    };
    tracing::info!(
        open_files = open_files
            .map(|n| n.to_string())
            .unwrap_or_else(|| "unknown".into()),
        max_connections = settings.conn.max_connections,
        "open-file limit and connection cap"
    );
    crate::signing::ensure_key(&store, &SystemClock, "control-plane")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (state, shutdown) = AppState::new(Arc::new(store), Arc::new(SystemClock), settings);
    let listener = TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "control plane listening");
    println!("control-plane listening on http://{addr}");
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown.send(true);
    });
    crate::serve(listener, state).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests;
