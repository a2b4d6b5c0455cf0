//! The SQL implementation of [`Store`], on SQLite (one file, WAL mode: one process) or
//! PostgreSQL (several replicas on one database). The statements are shared: written with
//! numbered placeholders and types both engines read the same way (see the PostgreSQL
//! migration's header), through sqlx's `Any` driver; what differs is here, in [`Backend`]:
//! how a write transaction starts, how a snapshot read starts, the singleton-job lock and
//! how other replicas learn of a commit ([`notify`]). Each aggregate's trait is implemented in
//! a file of its own (`tokens`, `incidents`, `actions`, `audit`, `edges`, `records`); this
//! file holds the connection, the transactions and the shared writers (audit append,
//! timeline entries, policy version).
//!
//! Writers that append to the audit chain or bump the policy version are serialised:
//! - SQLite: an in-process mutex (so concurrent requests queue fairly instead of spinning on
//!   `SQLITE_BUSY`) and `BEGIN IMMEDIATE` with a busy timeout (so another process on the same
//!   file, such as the `token create` CLI, waits its turn);
//! - PostgreSQL: the transaction first locks the one `policy_state` row (`FOR UPDATE`), the
//!   head of both the version sequence and the audit chain, so every replica's writers take
//!   versions and chain links in commit order. Writes that touch neither (edge reports) do
//!   not take it.

mod actions;
mod audit;
mod builder;
pub mod copy;
mod edges;
mod incidents;
mod intake;
pub mod notify;
mod records;
mod refile;
mod rows;
mod settings;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use edge_policy::Version;
use serde_json::Value;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Row, Transaction};
use tokio::sync::{watch, Mutex, MutexGuard};

use super::*;
use crate::clock::rfc3339;
use crate::domain::audit::NewAuditEvent;
use crate::domain::effects::{NewTimelineEntry, Writes};
use crate::domain::{CoreError, CoreResult};
pub(crate) use builder::Sql;

/// Which database engine a [`SqlStore`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The engine a `--database-url` names: `postgres://` / `postgresql://`, else SQLite
    /// (`sqlite://path`, `sqlite:path` or a plain path).
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// Singleton jobs: run by one replica at a time (a PostgreSQL advisory lock key each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Job {
    ExpirySweep = 0x6563_0001,
    Retention = 0x6563_0002,
}

pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    write_lock: Mutex<()>,
    version_tx: Arc<watch::Sender<Version>>,
    tokens_tx: Arc<watch::Sender<u64>>,
    /// Stops the change listener of a PostgreSQL store when the store is dropped.
    _listener: Option<notify::ListenerGuard>,
}

/// A write transaction (holding, on SQLite, the in-process writer lock).
pub(crate) struct WriteTx<'a> {
    pub tx: Transaction<'static, Any>,
    _guard: Option<MutexGuard<'a, ()>>,
}

/// How often a PostgreSQL replica re-reads the policy version in case a change notification
/// was lost (the long-polls of every replica wake within this of a commit on any replica).
pub const VERSION_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl SqlStore {
    /// Open and migrate the database at `url` (see [`Backend::of_url`]); SQLite creates the
    /// file when missing.
    pub async fn connect(url: &str) -> CoreResult<SqlStore> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url);
        let pool = match backend {
            Backend::Sqlite => open_sqlite(url).await?,
            Backend::Postgres => open_postgres(url).await?,
        };
        let migrated = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await,
            // sqlx holds an advisory lock while migrating: replicas starting together on a
            // new database migrate it once.
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await,
        };
        migrated?;
        let version = read_version(&pool).await?;
        let (version_tx, _) = watch::channel(version as Version);
        let (tokens_tx, _) = watch::channel(0);
        let (version_tx, tokens_tx) = (Arc::new(version_tx), Arc::new(tokens_tx));
        let listener = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                notify::listen(url, pool.clone(), version_tx.clone(), tokens_tx.clone()).await?,
            ),
        };
        Ok(SqlStore {
            pool,
            backend,
            write_lock: Mutex::new(()),
            version_tx,
            tokens_tx,
            _listener: listener,
        })
    }

    /// The underlying pool (tests and tools).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A write transaction that may append to the audit chain or bump the version.
    pub(crate) async fn begin_write(&self) -> CoreResult<WriteTx<'_>> {
        let mut w = self.begin_unchained().await?;
        if self.backend == Backend::Postgres {
            lock_chain_head(&mut w.tx).await?;
        }
        Ok(w)
    }

    /// A write transaction that neither appends to the audit chain nor bumps the version
    /// (on PostgreSQL it runs beside the chain's writers).
    pub(crate) async fn begin_unchained(&self) -> CoreResult<WriteTx<'_>> {
        match self.backend {
            Backend::Sqlite => {
                let guard = self.write_lock.lock().await;
                let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                Ok(WriteTx {
                    tx,
                    _guard: Some(guard),
                })
            }
            Backend::Postgres => Ok(WriteTx {
                tx: self.pool.begin().await?,
                _guard: None,
            }),
        }
    }

    /// [`SqlStore::begin_write`] for a singleton job: `None` when another replica runs `job`
    /// now (PostgreSQL: a transaction-scoped advisory lock, taken before the chain head).
    pub(crate) async fn begin_job(&self, job: Job) -> CoreResult<Option<WriteTx<'_>>> {
        let mut w = self.begin_unchained().await?;
        if self.backend == Backend::Postgres {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(job as i64)
                .fetch_one(&mut *w.tx)
                .await?;
            if !got {
                return Ok(None);
            }
            lock_chain_head(&mut w.tx).await?;
        }
        Ok(Some(w))
    }

    /// A read-only transaction whose statements all see one snapshot.
    pub(crate) async fn begin_read(&self) -> CoreResult<Transaction<'static, Any>> {
        Ok(match self.backend {
            // A deferred transaction in WAL mode reads one snapshot.
            Backend::Sqlite => self.pool.begin().await?,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
        })
    }

    /// Commit and, when the policy version moved, wake the long-polls (on PostgreSQL, every
    /// replica's, through a notification sent with the commit).
    ///
    /// If the caller is cancelled while the commit is in flight (a client hanging up), the
    /// commit may still have happened: a guard then re-reads the version in the background
    /// so no long-poll misses it.
    pub(crate) async fn commit(
        &self,
        mut w: WriteTx<'_>,
        new_version: Option<i64>,
    ) -> CoreResult<()> {
        if let (Backend::Postgres, Some(v)) = (self.backend, new_version) {
            notify::policy_changed(&mut w.tx, v).await?;
        }
        let mut guard = ResyncOnDrop {
            armed: new_version.is_some(),
            pool: &self.pool,
            tx: &self.version_tx,
        };
        w.tx.commit().await?;
        if let Some(v) = new_version {
            publish(&self.version_tx, v as Version);
        }
        guard.armed = false;
        Ok(())
    }

    /// Tell every replica (this one included) that tokens changed, with the commit of `w`.
    pub(crate) async fn tokens_changed(&self, w: &mut WriteTx<'_>) -> CoreResult<()> {
        if self.backend == Backend::Postgres {
            notify::tokens_changed(&mut w.tx).await?;
        }
        Ok(())
    }
}

async fn open_sqlite(url: &str) -> CoreResult<AnyPool> {
    let mut url = if url.starts_with("sqlite:") {
        url.to_string()
    } else {
        format!("sqlite://{url}")
    };
    if !url.contains("mode=") {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("mode=rwc");
    }
    AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|c, _| {
            Box::pin(async move {
                c.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                )
                .await?;
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(|e| CoreError::Internal(format!("opening database {url:?}: {e}")))
}

async fn open_postgres(url: &str) -> CoreResult<AnyPool> {
    AnyPoolOptions::new()
        .max_connections(16)
        // A replica whose database is gone answers 503 within this, rather than queueing.
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .map_err(|e| CoreError::Unavailable(format!("opening database: {e}")))
}

pub(crate) async fn read_version(pool: &AnyPool) -> CoreResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT version FROM policy_state WHERE id = 1")
            .fetch_one(pool)
            .await?,
    )
}

/// PostgreSQL: lock the head of the version sequence and the audit chain until commit.
async fn lock_chain_head(c: &mut AnyConnection) -> CoreResult<()> {
    sqlx::query("SELECT version FROM policy_state WHERE id = 1 FOR UPDATE")
        .execute(c)
        .await?;
    Ok(())
}

/// Raise the published version to `v` (never lower it).
pub(crate) fn publish(tx: &watch::Sender<Version>, v: Version) {
    tx.send_if_modified(|cur| {
        let moved = v > *cur;
        if moved {
            *cur = v;
        }
        moved
    });
}

/// Re-reads the committed version when a commit was abandoned half-way (see `commit`).
struct ResyncOnDrop<'a> {
    armed: bool,
    pool: &'a AnyPool,
    tx: &'a Arc<watch::Sender<Version>>,
}

impl Drop for ResyncOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (pool, tx) = (self.pool.clone(), self.tx.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                match read_version(&pool).await {
                    Ok(v) => publish(&tx, v as Version),
                    Err(e) => tracing::error!(error = %e, "re-reading the policy version failed"),
                }
            });
        }
    }
}

/// Increment the policy version; returns the new one.
pub(crate) async fn bump_version(c: &mut AnyConnection) -> CoreResult<i64> {
    let v: i64 = sqlx::query_scalar(
        "UPDATE policy_state SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(c)
    .await?;
    Ok(v)
}

/// Append an audit event chained to the previous one (the open write transaction, from
/// [`SqlStore::begin_write`], holds the chain head, so the last event cannot move under it).
pub(crate) async fn append_audit(
    c: &mut AnyConnection,
    e: NewAuditEvent,
    now: i64,
) -> CoreResult<i64> {
    let last: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *c)
            .await?;
    let r = AuditRecord::chained(last, rfc3339(now), e);
    sqlx::query(
        "INSERT INTO audit (seq, at, at_ms, actor, verb, object, incident_id, before, after, reason, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(r.seq)
    .bind(&r.at)
    .bind(now)
    .bind(&r.actor)
    .bind(&r.verb)
    .bind(&r.object)
    .bind(r.incident_id)
    .bind(&r.before)
    .bind(&r.after)
    .bind(&r.reason)
    .bind(&r.prev_hash)
    .bind(&r.hash)
    .execute(c)
    .await?;
    Ok(r.seq)
}

/// Add an entry to an incident's timeline.
async fn add_timeline(c: &mut AnyConnection, e: &NewTimelineEntry) -> CoreResult<()> {
    sqlx::query(
        "INSERT INTO timeline (incident_id, at, actor, kind, message, reason, data) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.incident_id)
    .bind(e.at)
    .bind(&e.actor)
    .bind(&e.kind)
    .bind(&e.message)
    .bind(&e.reason)
    .bind(e.data.as_ref().map(Value::to_string))
    .execute(c)
    .await?;
    Ok(())
}

/// Write what a decision returned: its timeline entries, then its audit events.
pub(crate) async fn write_effects(c: &mut AnyConnection, w: Writes, now: i64) -> CoreResult<()> {
    for e in &w.timeline {
        add_timeline(c, e).await?;
    }
    for e in w.audit {
        append_audit(c, e, now).await?;
    }
    Ok(())
}

/// Add to an aggregated timeline entry: one per incident, kind and time bucket (edge hits,
/// evidence). `merge` gets the entry's data so far and returns the new message and data; the
/// entry's time is the earliest `at` merged into it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn upsert_bucket(
    c: &mut AnyConnection,
    incident_id: i64,
    kind: &str,
    bucket: i64,
    at: i64,
    actor: &str,
    merge: impl FnOnce(Option<&Value>) -> (String, Value),
) -> CoreResult<()> {
    let row: Option<(i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT id, at, data FROM timeline WHERE incident_id = $1 AND kind = $2 AND bucket = $3",
    )
    .bind(incident_id)
    .bind(kind)
    .bind(bucket)
    .fetch_optional(&mut *c)
    .await?;
    match row {
        Some((id, old_at, data)) => {
            let old: Option<Value> = data.map(|d| serde_json::from_str(&d)).transpose()?;
            let (message, data) = merge(old.as_ref());
            sqlx::query("UPDATE timeline SET at = $1, message = $2, data = $3 WHERE id = $4")
                .bind(old_at.min(at))
                .bind(message)
                .bind(data.to_string())
                .bind(id)
                .execute(c)
                .await?;
        }
        None => {
            let (message, data) = merge(None);
            sqlx::query(
                "INSERT INTO timeline (incident_id, at, actor, kind, message, data, bucket) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(incident_id)
            .bind(at)
            .bind(actor)
            .bind(kind)
            .bind(message)
            .bind(data.to_string())
            .bind(bucket)
            .execute(c)
            .await?;
        }
    }
    Ok(())
}

#[async_trait]
impl Store for SqlStore {
    async fn counts(&self) -> CoreResult<Counts> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM incidents) AS incidents, (SELECT COUNT(*) FROM actions) AS actions,
                    (SELECT COUNT(*) FROM tokens) AS tokens, (SELECT COUNT(*) FROM audit) AS audit,
                    (SELECT COUNT(*) FROM edges) AS edges, (SELECT version FROM policy_state WHERE id = 1) AS version,
                    (SELECT COUNT(*) FROM timeline) AS timeline,
                    (SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM action_hits) AS hits,
                    (SELECT COUNT(*) FROM notifications) AS notifications,
                    (SELECT COUNT(*) FROM postmortems) AS postmortems,
                    (SELECT COUNT(*) FROM evidence) AS evidence",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Counts {
            incidents: row.try_get("incidents")?,
            actions: row.try_get("actions")?,
            tokens: row.try_get("tokens")?,
            audit: row.try_get("audit")?,
            edges: row.try_get("edges")?,
            version: row.try_get("version")?,
            timeline: row.try_get("timeline")?,
            hits: row.try_get("hits")?,
            notifications: row.try_get("notifications")?,
            postmortems: row.try_get("postmortems")?,
            evidence: row.try_get("evidence")?,
        })
    }
    async fn ping(&self) -> CoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
    fn replicated(&self) -> bool {
        self.backend == Backend::Postgres
    }
}
