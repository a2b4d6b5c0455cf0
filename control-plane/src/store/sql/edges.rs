//! [`EdgeStore`] in SQL: edge reports (hit counts) and access-log evidence: load what
//! matching needs, store idempotently, write the summaries and audit events
//! [`crate::domain::edge_record`] makes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use edge_policy::report::EdgeReport;
use sqlx::AnyConnection;

use super::{append_audit, rows, upsert_bucket, Sql, SqlStore};
use crate::domain::edge_record::{
    action_window, bucket_of, hit_action_ids, merge_evidence, merge_hits, open_indicators,
    report_hits, IncidentEvidence, HIT_BUCKET_MS,
};
use crate::domain::evidence::{default_pixel_routes, match_line};
use crate::domain::{CoreError, CoreResult};
use crate::store::{
    EdgeRecord, EdgeStore, EvidenceBatch, EvidenceRecord, IngestOutcome, ReportOutcome,
};

async fn add_hits_to_timeline(
    c: &mut AnyConnection,
    incident: i64,
    edge_id: &str,
    hits: &[(i64, i64)],
    now: i64,
) -> CoreResult<()> {
    let bucket = bucket_of(now, HIT_BUCKET_MS);
    upsert_bucket(c, incident, "edge_hits", bucket, now, "edge", |old| {
        merge_hits(old, bucket, edge_id, hits)
    })
    .await
}

#[async_trait]
impl EdgeStore for SqlStore {
    async fn record_report(&self, r: &EdgeReport, now: i64) -> CoreResult<ReportOutcome> {
        // No audit event and no version: reports do not queue behind containment changes.
        // Whichever replica a resent report reaches, the `(edge_id, boot_id, seq)` key of
        // `edge_reports_seen` lets exactly one transaction count it.
        let mut w = self.begin_unchained().await?;
        let c = &mut *w.tx;
        let seq = i64::try_from(r.seq).map_err(|_| CoreError::invalid("seq", "too large"))?;
        let version = i64::try_from(r.policy_version)
            .map_err(|_| CoreError::invalid("policy_version", "too large"))?;
        let fresh = sqlx::query("INSERT INTO edge_reports_seen (edge_id, boot_id, seq, at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(&r.edge_id)
            .bind(&r.boot_id)
            .bind(seq)
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected()
            == 1;
        if !fresh {
            return Ok(ReportOutcome::default());
        }
        sqlx::query(
            "INSERT INTO edges (edge_id, boot_id, last_seen, policy_version, reports, report_interval_s) VALUES ($1, $2, $3, $4, 1, $5)
             ON CONFLICT (edge_id) DO UPDATE SET boot_id = excluded.boot_id, last_seen = excluded.last_seen,
                policy_version = excluded.policy_version, reports = edges.reports + 1,
                report_interval_s = excluded.report_interval_s",
        )
        .bind(&r.edge_id)
        .bind(&r.boot_id)
        .bind(now)
        .bind(version)
        .bind(r.interval_s.map(i64::from))
        .execute(&mut *c)
        .await?;
        let mut incident_of = HashMap::new();
        for id in hit_action_ids(&r.hits)? {
            let incident: Option<i64> =
                sqlx::query_scalar("SELECT incident_id FROM actions WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *c)
                    .await?;
            if let Some(incident) = incident {
                incident_of.insert(id, incident);
            }
        }
        let hits = report_hits(&r.hits, &incident_of)?;
        for (action_id, count) in &hits.counts {
            sqlx::query(
                "INSERT INTO action_hits (action_id, edge_id, count) VALUES ($1, $2, $3)
                 ON CONFLICT (action_id, edge_id) DO UPDATE SET count = action_hits.count + excluded.count",
            )
            .bind(action_id)
            .bind(&r.edge_id)
            .bind(count)
            .execute(&mut *c)
            .await?;
        }
        for (incident, counts) in &hits.per_incident {
            add_hits_to_timeline(c, *incident, &r.edge_id, counts, now).await?;
        }
        self.commit(w, None).await?;
        Ok(ReportOutcome {
            counted: true,
            unknown_rule_ids: hits.unknown_rule_ids,
        })
    }

    async fn list_edges(&self) -> CoreResult<Vec<EdgeRecord>> {
        let rows: Vec<(String, String, i64, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT edge_id, boot_id, last_seen, policy_version, reports, report_interval_s FROM edges ORDER BY edge_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(edge_id, boot_id, last_seen, policy_version, reports, report_interval_s)| {
                    EdgeRecord {
                        edge_id,
                        boot_id,
                        last_seen,
                        policy_version,
                        reports,
                        report_interval_s,
                    }
                },
            )
            .collect())
    }

    async fn ingest_evidence(
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
        let mut q = Sql::new("SELECT * FROM actions WHERE (kind <> 'allow' AND created_at <= ");
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
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
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

    async fn evidence(
        &self,
        incident_id: i64,
        after_id: i64,
        limit: i64,
    ) -> CoreResult<Vec<EvidenceRecord>> {
        let mut c = self.pool.acquire().await?;
        rows::get_incident(&mut c, incident_id).await?;
        let rows = sqlx::query(
            "SELECT * FROM evidence WHERE incident_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(incident_id)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(rows::evidence).collect()
    }
}
