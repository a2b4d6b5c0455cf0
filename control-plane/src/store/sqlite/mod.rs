//! SQLite implementation of [`Store`]: one file, WAL mode, migrations run on start.
//!
//! Writers are serialised twice: an in-process mutex (so concurrent requests queue fairly
//! instead of spinning on `SQLITE_BUSY`) and `BEGIN IMMEDIATE` with a busy timeout (so
//! another process on the same file, such as the `token create` CLI, waits its turn).

mod actions;
mod evidence;
mod incidents;
mod keys;
mod misc;
mod records;
mod retention;
mod rows;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::signing::SigningKeyRecord;
use async_trait::async_trait;
use edge_policy::report::EdgeReport;
use edge_policy::Version;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::{watch, Mutex, MutexGuard};

use super::*;
use crate::clock::rfc3339;
use crate::domain::audit::NewAuditEvent;
use crate::domain::effects::{NewTimelineEntry, Writes};
use crate::domain::notification::NewNotification;
use crate::domain::postmortem::PostMortem;
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
    async fn create_token(
        &self,
        actor: &str,
        name: &str,
        role: Role,
        hash: [u8; 32],
        only_if_none: bool,
        now: i64,
    ) -> CoreResult<TokenRecord> {
        self.create_token_impl(actor, name, role, hash, only_if_none, now)
            .await
    }
    async fn find_token(&self, hash: &[u8; 32]) -> CoreResult<Option<AuthToken>> {
        self.find_token_impl(hash).await
    }
    async fn list_tokens(&self) -> CoreResult<Vec<TokenRecord>> {
        self.list_tokens_impl().await
    }
    async fn revoke_token(&self, actor: &str, id: i64, now: i64) -> CoreResult<TokenRecord> {
        self.revoke_token_impl(actor, id, now).await
    }
    async fn signing_keys(&self) -> CoreResult<Vec<SigningKeyRecord>> {
        self.signing_keys_impl().await
    }
    async fn add_signing_key(
        &self,
        actor: &str,
        new: SigningKeyRecord,
        overlap_ms: i64,
        only_if_none: bool,
        now: i64,
    ) -> CoreResult<Vec<SigningKeyRecord>> {
        self.add_signing_key_impl(actor, new, overlap_ms, only_if_none, now)
            .await
    }
    async fn create_incident(
        &self,
        actor: &str,
        new: &NewIncident,
        now: i64,
    ) -> CoreResult<IncidentRecord> {
        self.create_incident_impl(actor, new, now).await
    }
    async fn list_incidents(&self, f: &IncidentFilter) -> CoreResult<(Vec<IncidentRecord>, i64)> {
        self.list_incidents_impl(f).await
    }
    async fn get_incident(&self, id: i64) -> CoreResult<IncidentRecord> {
        rows::get_incident(&mut *self.pool.acquire().await?, id).await
    }
    async fn update_incident(
        &self,
        actor: &str,
        id: i64,
        change: &IncidentChange,
        now: i64,
    ) -> CoreResult<IncidentRecord> {
        self.update_incident_impl(actor, id, change, now).await
    }
    async fn timeline(&self, incident_id: i64) -> CoreResult<Vec<TimelineEntry>> {
        self.timeline_impl(incident_id).await
    }
    async fn create_action(
        &self,
        actor: &str,
        new: &NewAction,
        rails: GuardRails,
        now: i64,
    ) -> CoreResult<ActionRecord> {
        self.create_action_impl(actor, new, rails, now).await
    }
    async fn lift_action(
        &self,
        actor: &str,
        id: i64,
        reason: &str,
        now: i64,
    ) -> CoreResult<ActionRecord> {
        self.lift_action_impl(actor, id, reason, now).await
    }
    async fn get_action(&self, id: i64) -> CoreResult<ActionRecord> {
        rows::get_action(&mut *self.pool.acquire().await?, id).await
    }
    async fn list_actions(
        &self,
        f: &ActionFilter,
        now: i64,
    ) -> CoreResult<(Vec<ActionRecord>, i64)> {
        self.list_actions_impl(f, now).await
    }
    async fn expire_due(&self, now: i64) -> CoreResult<usize> {
        self.expire_due_impl(now).await
    }
    async fn hits(&self, action_ids: &[i64]) -> CoreResult<Vec<HitRecord>> {
        self.hits_impl(action_ids).await
    }
    async fn policy_version(&self) -> CoreResult<Version> {
        let v: i64 = sqlx::query_scalar("SELECT version FROM policy_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(v as Version)
    }
    async fn policy(&self, since: Version) -> CoreResult<PolicyAnswer> {
        self.policy_impl(since).await
    }
    fn watch_version(&self) -> watch::Receiver<Version> {
        self.version_tx.subscribe()
    }
    async fn audit(&self, f: &AuditFilter) -> CoreResult<Vec<AuditRecord>> {
        self.audit_impl(f).await
    }
    async fn verify_audit(&self) -> CoreResult<ChainReport> {
        self.verify_audit_impl().await
    }
    async fn record_report(&self, r: &EdgeReport, now: i64) -> CoreResult<ReportOutcome> {
        self.record_report_impl(r, now).await
    }
    async fn list_edges(&self) -> CoreResult<Vec<EdgeRecord>> {
        self.list_edges_impl().await
    }
    async fn record_notification(
        &self,
        actor: &str,
        n: &NewNotification,
        now: i64,
    ) -> CoreResult<NotificationRecord> {
        self.record_notification_impl(actor, n, now).await
    }
    async fn notifications(&self, incident_id: i64) -> CoreResult<Vec<NotificationRecord>> {
        self.notifications_impl(incident_id).await
    }
    async fn submit_postmortem(
        &self,
        actor: &str,
        incident_id: i64,
        pm: &PostMortem,
        now: i64,
    ) -> CoreResult<PostMortemRecord> {
        self.submit_postmortem_impl(actor, incident_id, pm, now)
            .await
    }
    async fn postmortem(&self, incident_id: i64) -> CoreResult<Option<PostMortemRecord>> {
        self.postmortem_impl(incident_id).await
    }
    async fn deadline_facts(&self, incident: Option<i64>) -> CoreResult<Vec<IncidentDeadlines>> {
        self.deadline_facts_impl(incident).await
    }
    async fn ingest_evidence(
        &self,
        actor: &str,
        batch: &EvidenceBatch,
        now: i64,
    ) -> CoreResult<IngestOutcome> {
        self.ingest_evidence_impl(actor, batch, now).await
    }
    async fn evidence(
        &self,
        incident_id: i64,
        after_id: i64,
        limit: i64,
    ) -> CoreResult<Vec<EvidenceRecord>> {
        self.evidence_impl(incident_id, after_id, limit).await
    }
    async fn audit_links(&self, from_seq: i64, to_seq: i64) -> CoreResult<Vec<AuditLink>> {
        self.audit_links_impl(from_seq, to_seq).await
    }
    async fn purge(
        &self,
        actor: &str,
        cutoff: i64,
        older_than_years: u32,
        dry_run: bool,
        now: i64,
    ) -> CoreResult<PurgeReport> {
        self.purge_impl(actor, cutoff, older_than_years, dry_run, now)
            .await
    }
    async fn counts(&self) -> CoreResult<Counts> {
        self.counts_impl().await
    }
    async fn ping(&self) -> CoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
