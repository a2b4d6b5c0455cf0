//! Retention: purge the records of incidents closed long ago (never younger than 5 years),
//! keeping every audit event, and the chain links the export needs.

use std::collections::BTreeMap;

use serde_json::json;
use sqlx::{QueryBuilder, Sqlite};

use super::{append_audit, SqliteStore};
use crate::domain::token_rules;
use crate::domain::CoreResult;
use crate::store::{AuditLink, PurgeReport};

/// The tables holding an incident's records, children first (the order of deletion), with
/// the condition selecting the rows of the incidents in `ids`.
const TABLES: [(&str, &str); 8] = [
    ("evidence", "incident_id IN"),
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

fn scoped<'a>(head: &str, cond: &str, ids: &[i64]) -> QueryBuilder<'a, Sqlite> {
    let mut q = QueryBuilder::new(format!("{head} WHERE {cond} ("));
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

impl SqliteStore {
    pub(crate) async fn purge_impl(
        &self,
        actor: &str,
        cutoff: i64,
        older_than_years: u32,
        dry_run: bool,
        now: i64,
    ) -> CoreResult<PurgeReport> {
        token_rules::check_purge(older_than_years)?;
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        // Closed before the cutoff, and no containment still enforced for it.
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM incidents i WHERE phase = 'closed' AND closed_at IS NOT NULL AND closed_at < ?
               AND NOT EXISTS (SELECT 1 FROM actions a WHERE a.incident_id = i.id AND a.state = 'active')
             ORDER BY id",
        )
        .bind(cutoff)
        .fetch_all(&mut *c)
        .await?;
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
        let event = token_rules::purged(
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

    pub(crate) async fn audit_links_impl(
        &self,
        from_seq: i64,
        to_seq: i64,
    ) -> CoreResult<Vec<AuditLink>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, prev_hash, hash FROM audit WHERE seq >= ? AND seq <= ? ORDER BY seq",
        )
        .bind(from_seq)
        .bind(to_seq)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(seq, prev_hash, hash)| AuditLink {
                seq,
                prev_hash,
                hash,
            })
            .collect())
    }
}
