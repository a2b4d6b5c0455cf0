//! Access-log evidence: load what matching needs, store idempotently, write the summaries
//! and audit events [`crate::domain::edge_record`] makes.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::QueryBuilder;

use super::{append_audit, rows, upsert_bucket, SqliteStore};
use crate::domain::edge_record::{
    action_window, merge_evidence, open_indicators, IncidentEvidence,
};
use crate::domain::evidence::{default_pixel_routes, match_line};
use crate::domain::CoreResult;
use crate::store::{EvidenceBatch, EvidenceRecord, IngestOutcome};

impl SqliteStore {
    pub(crate) async fn ingest_evidence_impl(
        &self,
        actor: &str,
        batch: &EvidenceBatch,
        now: i64,
    ) -> CoreResult<IngestOutcome> {
        let mut out = IngestOutcome::default();
        let (Some(min_t), Some(max_t)) = (
            batch.lines.iter().map(|l| l.at).min(),
            batch.lines.iter().map(|l| l.at).max(),
        ) else {
            return Ok(out);
        };
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let rule_ids: BTreeSet<i64> = batch.lines.iter().filter_map(|l| l.rule_id).collect();
        let mut q =
            QueryBuilder::new("SELECT * FROM actions WHERE (kind <> 'allow' AND created_at <= ");
        q.push_bind(max_t)
            .push(" AND (ended_at IS NULL OR ended_at > ")
            .push_bind(min_t)
            .push("))");
        if !rule_ids.is_empty() {
            q.push(" OR id IN (");
            let mut sep = q.separated(", ");
            for id in rule_ids.iter().take(1000) {
                sep.push_bind(*id);
            }
            q.push(")");
        }
        q.push(" ORDER BY id");
        let actions = q
            .build()
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| action_window(&rows::action(r)?))
            .collect::<CoreResult<Vec<_>>>()?;
        let open: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, facts FROM incidents WHERE phase <> 'closed' ORDER BY id")
                .fetch_all(&mut *c)
                .await?;
        let indicators = open_indicators(
            open.into_iter()
                .map(|(id, facts)| Ok((id, serde_json::from_str(&facts)?)))
                .collect::<CoreResult<Vec<_>>>()?,
        );
        let routes = default_pixel_routes();
        let mut per_incident: BTreeMap<i64, IncidentEvidence> = BTreeMap::new();
        for line in &batch.lines {
            let matches = match_line(line, &actions, &indicators, &routes);
            if matches.is_empty() {
                out.unmatched += 1;
                continue;
            }
            for m in matches {
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO evidence (incident_id, action_id, matched, line_hash, batch_id, edge_id, at, client_ip,
                        method, host, path, status, user_agent, line, ingested_at, ingested_by)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (incident_id, line_hash) DO NOTHING RETURNING id",
                )
                .bind(m.incident_id)
                .bind(m.action_id)
                .bind(serde_json::to_string(&m.reasons)?)
                .bind(&line.hash)
                .bind(&batch.batch_id)
                .bind(&batch.edge_id)
                .bind(line.at)
                .bind(line.peer.or(line.forwarded.first().copied()).map(|a| a.to_string()))
                .bind(&line.method)
                .bind(&line.host)
                .bind(&line.path)
                .bind(line.status)
                .bind(&line.user_agent)
                .bind(&line.raw)
                .bind(now)
                .bind(actor)
                .fetch_optional(&mut *c)
                .await?;
                let Some(id) = id else {
                    out.duplicates += 1;
                    continue;
                };
                out.stored += 1;
                per_incident
                    .entry(m.incident_id)
                    .or_default()
                    .add(id, &line.hash, line.at, m.keys);
            }
        }
        for (incident, e) in &per_incident {
            for (bucket, minute) in &e.minutes {
                upsert_bucket(
                    c,
                    *incident,
                    "evidence",
                    *bucket,
                    minute.first,
                    actor,
                    |old| merge_evidence(old, *bucket, minute),
                )
                .await?;
            }
            let event = e.event(actor, *incident, &batch.batch_id, batch.edge_id.as_deref());
            append_audit(c, event, now).await?;
        }
        out.incidents = per_incident.keys().copied().collect();
        if out.stored == 0 {
            // Nothing new: leave the database untouched.
            return Ok(out);
        }
        self.commit(w, None).await?;
        Ok(out)
    }

    pub(crate) async fn evidence_impl(
        &self,
        incident_id: i64,
        after_id: i64,
        limit: i64,
    ) -> CoreResult<Vec<EvidenceRecord>> {
        let mut c = self.pool.acquire().await?;
        rows::get_incident(&mut c, incident_id).await?;
        let rows = sqlx::query(
            "SELECT * FROM evidence WHERE incident_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(incident_id)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(rows::evidence).collect()
    }
}
