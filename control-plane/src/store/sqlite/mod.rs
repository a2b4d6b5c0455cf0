//! SQLite implementation of [`Store`]: one file, WAL mode, migrations run on start. Each
//! aggregate's trait is implemented in a file of its own (`tokens`, `incidents`, `actions`,
//! `audit`, `edges`, `records`); this file holds the connection, the write transaction and
//! the shared writers (audit append, timeline entries, policy version).
//!
//! Writers are serialised twice: an in-process mutex (so concurrent requests queue fairly
//! instead of spinning on `SQLITE_BUSY`) and `BEGIN IMMEDIATE` with a busy timeout (so
//! another process on the same file, such as the `token create` CLI, waits its turn).

mod actions;
mod audit;
mod edges;
mod incidents;
mod records;
mod rows;
mod tokens;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use edge_policy::Version;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::{watch, Mutex, MutexGuard};

use super::*;
use crate::clock::rfc3339;
use crate::domain::audit::NewAuditEvent;
use crate::domain::effects::{NewTimelineEntry, Writes};
use crate::domain::{CoreError, CoreResult};

pub struct SqliteStore {
    pool: SqlitePool,
    write_lock: Mutex<()>,
    version_tx: Arc<watch::Sender<Version>>,
}

/// A write transaction holding the in-process writer lock.
pub(crate) struct WriteTx<'a> {
    pub tx: Transaction<'static, Sqlite>,
    _guard: MutexGuard<'a, ()>,
}

impl SqliteStore {
    /// Open (creating if missing) and migrate the database at `url`
    /// (`sqlite://path/to/file.db`, `sqlite:file.db` or a plain path).
    pub async fn connect(url: &str) -> CoreResult<SqliteStore> {
        let url = if url.starts_with("sqlite:") {
            url.to_string()
        } else {
            format!("sqlite://{url}")
        };
        let opts = SqliteConnectOptions::from_str(&url)
            .map_err(|e| CoreError::Internal(format!("database url {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await
            .map_err(|e| CoreError::Internal(format!("opening database {url:?}: {e}")))?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let version: i64 = sqlx::query_scalar("SELECT version FROM policy_state WHERE id = 1")
            .fetch_one(&pool)
            .await?;
        let (version_tx, _) = watch::channel(version as Version);
        Ok(SqliteStore {
            pool,
            write_lock: Mutex::new(()),
            version_tx: Arc::new(version_tx),
        })
    }

    /// The underlying pool (tests and tools).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) async fn begin_write(&self) -> CoreResult<WriteTx<'_>> {
        let guard = self.write_lock.lock().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx { tx, _guard: guard })
    }

    /// Commit and, when the policy version moved, wake the long-polls.
    ///
    /// If the caller is cancelled while the commit is in flight (a client hanging up), the
    /// commit may still have happened: a guard then re-reads the version in the background
    /// so no long-poll misses it.
    pub(crate) async fn commit(&self, w: WriteTx<'_>, new_version: Option<i64>) -> CoreResult<()> {
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
}

/// Raise the published version to `v` (never lower it).
fn publish(tx: &watch::Sender<Version>, v: Version) {
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
    pool: &'a SqlitePool,
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
                let v: Result<i64, _> =
                    sqlx::query_scalar("SELECT version FROM policy_state WHERE id = 1")
                        .fetch_one(&pool)
                        .await;
                match v {
                    Ok(v) => publish(&tx, v as Version),
                    Err(e) => tracing::error!(error = %e, "re-reading the policy version failed"),
                }
            });
        }
    }
}

/// Increment the policy version; returns the new one.
pub(crate) async fn bump_version(c: &mut SqliteConnection) -> CoreResult<i64> {
    let v: i64 = sqlx::query_scalar(
        "UPDATE policy_state SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(c)
    .await?;
    Ok(v)
}

/// Append an audit event chained to the previous one (the open write transaction holds
/// the writer lock, so the chain's last event cannot move under it).
pub(crate) async fn append_audit(
    c: &mut SqliteConnection,
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
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
async fn add_timeline(c: &mut SqliteConnection, e: &NewTimelineEntry) -> CoreResult<()> {
    sqlx::query(
        "INSERT INTO timeline (incident_id, at, actor, kind, message, reason, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
pub(crate) async fn write_effects(c: &mut SqliteConnection, w: Writes, now: i64) -> CoreResult<()> {
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
    c: &mut SqliteConnection,
    incident_id: i64,
    kind: &str,
    bucket: i64,
    at: i64,
    actor: &str,
    merge: impl FnOnce(Option<&Value>) -> (String, Value),
) -> CoreResult<()> {
    let row: Option<(i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT id, at, data FROM timeline WHERE incident_id = ? AND kind = ? AND bucket = ?",
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
            sqlx::query("UPDATE timeline SET at = ?, message = ?, data = ? WHERE id = ?")
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
                "INSERT INTO timeline (incident_id, at, actor, kind, message, data, bucket) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
impl Store for SqliteStore {
    async fn counts(&self) -> CoreResult<Counts> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM incidents) AS incidents, (SELECT COUNT(*) FROM actions) AS actions,
                    (SELECT COUNT(*) FROM tokens) AS tokens, (SELECT COUNT(*) FROM audit) AS audit,
                    (SELECT COUNT(*) FROM edges) AS edges, (SELECT version FROM policy_state WHERE id = 1) AS version,
                    (SELECT COUNT(*) FROM timeline) AS timeline,
                    (SELECT COALESCE(SUM(count), 0) FROM action_hits) AS hits,
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
}
