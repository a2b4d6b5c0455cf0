//! [`RecordStore`] in SQL: notifications, post-mortems, the inputs of the policy
//! clock, and retention (purging the records of incidents closed long ago, never younger
//! than 5 years, keeping every audit event).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::json;

use super::{append_audit, rows, write_effects, Job, Sql, SqlStore};
use crate::domain::notification::NewNotification;
use crate::domain::postmortem::PostMortem;
use crate::domain::record_rules::{self, DeadlineRows};
use crate::domain::{CoreError, CoreResult};
use crate::store::{
    IncidentDeadlines, NotificationRecord, PostMortemRecord, PurgeReport, RecordStore,
};

/// The tables holding an incident's records, children first (the order of deletion), with
/// the condition selecting the rows of the incidents in `ids`.
const TABLES: [(&str, &str); 10] = [
    ("evidence", "incident_id IN"),
    ("action_links", "incident_id IN"),
    (
        "action_links",
        "action_id IN (SELECT id FROM actions WHERE incident_id IN",
    ),
    ("notifications", "incident_id IN"),
    ("postmortems", "incident_id IN"),
    ("timeline", "incident_id IN"),
    (
        "policy_changes",
        "action_id IN (SELECT id FROM actions WHERE incident_id IN",
    ),
    (
        "action_hits",
        "action_id IN (SELECT id FROM actions WHERE incident_id IN",
    ),
    ("actions", "incident_id IN"),
    ("incidents", "id IN"),
];

fn scoped(head: &str, cond: &str, ids: &[i64]) -> Sql {
    let mut q = Sql::new(format!("{head} WHERE {cond} ("));
    let mut sep = q.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
    q.push(")");
    if cond.contains("(SELECT") {
        q.push(")");
    }
    q
}

#[async_trait]
impl RecordStore for SqlStore {
    async fn record_notification(
        &self,
        actor: &str,
        n: &NewNotification,
        now: i64,
    ) -> CoreResult<NotificationRecord> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let incident = rows::get_incident(c, n.incident_id).await?;
        let facts = record_rules::check_notification(&incident, n)?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO notifications (incident_id, audience, kind, notified_at, notified_by, channel, reference, note,
                facts, recorded_at, recorded_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(n.incident_id)
        .bind(n.audience.as_str())
        .bind(n.kind.as_str())
        .bind(n.notified_at)
        .bind(&n.notified_by)
        .bind(&n.channel)
        .bind(&n.reference)
        .bind(&n.note)
        .bind(facts.as_ref().map(|f| f.to_string()))
        .bind(now)
        .bind(actor)
        .fetch_one(&mut *c)
        .await?;
        let row = sqlx::query("SELECT * FROM notifications WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *c)
            .await?;
        let rec = rows::notification(&row)?;
        write_effects(
            c,
            record_rules::notification_recorded(&rec, n, actor, now)?,
            now,
        )
        .await?;
        self.commit(w, None).await?;
        Ok(rec)
    }

    async fn notifications(&self, incident_id: i64) -> CoreResult<Vec<NotificationRecord>> {
        let mut c = self.pool.acquire().await?;
        rows::get_incident(&mut c, incident_id).await?;
        let rows = sqlx::query(
            "SELECT * FROM notifications WHERE incident_id = $1 ORDER BY notified_at, id",
        )
        .bind(incident_id)
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(rows::notification).collect()
    }

    async fn submit_postmortem(
        &self,
        actor: &str,
        incident_id: i64,
        pm: &PostMortem,
        now: i64,
    ) -> CoreResult<PostMortemRecord> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        rows::get_incident(c, incident_id).await?;
        let before = sqlx::query("SELECT * FROM postmortems WHERE incident_id = $1")
            .bind(incident_id)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| rows::postmortem(&r))
            .transpose()?;
        if !record_rules::postmortem_changes(before.as_ref(), pm) {
            return before.ok_or_else(|| CoreError::Internal("unreachable".into()));
        }
        sqlx::query(
            "INSERT INTO postmortems (incident_id, lessons_learned, root_cause, attack_vectors, data_impact, follow_ups,
                policy_changes, submitted_at, submitted_by, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (incident_id) DO UPDATE SET lessons_learned = excluded.lessons_learned,
                root_cause = excluded.root_cause, attack_vectors = excluded.attack_vectors,
                data_impact = excluded.data_impact, follow_ups = excluded.follow_ups,
                policy_changes = excluded.policy_changes, updated_at = excluded.updated_at,
                updated_by = excluded.updated_by",
        )
        .bind(incident_id)
        .bind(&pm.lessons_learned)
        .bind(&pm.root_cause)
        .bind(serde_json::to_string(&pm.attack_vectors)?)
        .bind(&pm.data_impact)
        .bind(serde_json::to_string(&pm.follow_ups)?)
        .bind(&pm.policy_changes)
        .bind(now)
        .bind(actor)
        .bind(now)
        .bind(actor)
        .execute(&mut *c)
        .await?;
        let row = sqlx::query("SELECT * FROM postmortems WHERE incident_id = $1")
            .bind(incident_id)
            .fetch_one(&mut *c)
            .await?;
        let rec = rows::postmortem(&row)?;
        let writes = record_rules::postmortem_written(before.as_ref(), &rec, actor, now)?;
        write_effects(c, writes, now).await?;
        self.commit(w, None).await?;
        Ok(rec)
    }

    async fn postmortem(&self, incident_id: i64) -> CoreResult<Option<PostMortemRecord>> {
        let mut c = self.pool.acquire().await?;
        rows::get_incident(&mut c, incident_id).await?;
        sqlx::query("SELECT * FROM postmortems WHERE incident_id = $1")
            .bind(incident_id)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| rows::postmortem(&r))
            .transpose()
    }

    async fn deadline_facts(&self, incident: Option<i64>) -> CoreResult<Vec<IncidentDeadlines>> {
        // One read transaction, so every part comes from the same snapshot.
        let mut tx = self.begin_read().await?;
        let incidents = match incident {
            Some(id) => vec![rows::get_incident(&mut tx, id).await?],
            None => sqlx::query("SELECT * FROM incidents ORDER BY id")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(rows::incident)
                .collect::<CoreResult<Vec<_>>>()?,
        };
        let scoped = |sql: &str| {
            let mut q = Sql::new(sql);
            if let Some(id) = incident {
                q.push(" AND incident_id = ").push_bind(id);
            }
            q
        };
        let mut q = scoped(
            "SELECT incident_id, at, message, data FROM timeline WHERE kind = 'phase_changed'",
        );
        q.push(" ORDER BY at, id");
        let phase_entries: Vec<(i64, i64, String, Option<String>)> =
            q.build_query_as().fetch_all(&mut *tx).await?;
        let mut q = scoped(
            "SELECT incident_id, audience, kind, MIN(notified_at) FROM notifications WHERE 1 = 1",
        );
        q.push(" GROUP BY incident_id, audience, kind");
        let first_notifications: Vec<(i64, String, String, i64)> =
            q.build_query_as().fetch_all(&mut *tx).await?;
        let mut q = scoped("SELECT incident_id, submitted_at FROM postmortems WHERE 1 = 1");
        let postmortems: Vec<(i64, i64)> = q.build_query_as().fetch_all(&mut *tx).await?;
        tx.commit().await?;

        Ok(record_rules::deadline_inputs(DeadlineRows {
            incidents,
            phase_entries,
            first_notifications,
            postmortems,
        }))
    }

    async fn purge(
        &self,
        actor: &str,
        cutoff: i64,
        older_than_years: u32,
        dry_run: bool,
        now: i64,
    ) -> CoreResult<PurgeReport> {
        record_rules::check_purge(older_than_years)?;
        let Some(mut w) = self.begin_job(Job::Retention).await? else {
            return Err(CoreError::conflict(
                "purge",
                "another control-plane replica is purging now; try again when it has finished",
            ));
        };
        let c = &mut *w.tx;
        // Closed before the cutoff, and no containment still enforced for it.
        let closed: Vec<(i64, String, Option<i64>, i64)> = sqlx::query_as(
            "SELECT id, phase, closed_at,
                CASE WHEN EXISTS (SELECT 1 FROM actions a WHERE a.incident_id = i.id AND a.state = 'active')
                     THEN 1 ELSE 0 END
             FROM incidents i WHERE phase = 'closed' ORDER BY id",
        )
        .fetch_all(&mut *c)
        .await?;
        let mut ids = Vec::new();
        for (id, phase, closed_at, active) in closed {
            let phase = phase.parse().map_err(CoreError::Internal)?;
            if record_rules::purge_eligible(phase, closed_at, active != 0, cutoff) {
                ids.push(id);
            }
        }
        let mut rows = BTreeMap::new();
        for chunk in ids.chunks(500) {
            for (table, cond) in TABLES {
                let n: i64 = scoped(&format!("SELECT COUNT(*) FROM {table}"), cond, chunk)
                    .build_query_scalar()
                    .fetch_one(&mut *c)
                    .await?;
                if !dry_run {
                    scoped(&format!("DELETE FROM {table}"), cond, chunk)
                        .build()
                        .execute(&mut *c)
                        .await?;
                }
                *rows.entry(table.to_string()).or_insert(0u64) += n as u64;
            }
        }
        let mut report = PurgeReport {
            dry_run,
            older_than_years,
            cutoff,
            incidents: ids,
            rows,
            audit_seq: None,
        };
        if dry_run {
            return Ok(report);
        }
        if !report.incidents.is_empty() {
            // Purged actions are gone from policy_changes: older deltas become snapshots.
            sqlx::query("UPDATE policy_state SET min_delta_since = version WHERE id = 1")
                .execute(&mut *c)
                .await?;
        }
        let event = record_rules::purged(
            actor,
            older_than_years,
            json!({
                "older_than_years": older_than_years,
                "cutoff": crate::clock::rfc3339(cutoff),
                "incidents": report.incidents,
                "rows": report.rows,
                "audit_events_kept": true,
            }),
        );
        report.audit_seq = Some(append_audit(c, event, now).await?);
        self.commit(w, None).await?;
        Ok(report)
    }
}
