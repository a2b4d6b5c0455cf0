//! Access-log evidence: match, store idempotently, summarise on the timeline, audit.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::QueryBuilder;

use super::{append_audit, rows, upsert_bucket, SqliteStore};
use crate::clock::rfc3339;
use crate::domain::audit::NewAuditEvent;
use crate::domain::evidence::{default_pixel_routes, match_line, ActionWindow, IncidentIndicators};
use crate::domain::facts::IncidentFacts;
use crate::domain::CoreResult;
use crate::store::{EvidenceBatch, EvidenceRecord, IngestOutcome};

/// Evidence goes on the timeline as one entry per incident and minute (of the lines' time).
pub(crate) const EVIDENCE_BUCKET_MS: i64 = 60_000;

#[derive(Default)]
struct Stored {
    ids: Vec<i64>,
    hashes: Vec<String>,
    /// bucket → (earliest line time, lines, counts per reason key)
    buckets: BTreeMap<i64, (i64, i64, BTreeMap<String, i64>)>,
}

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
            .map(|r| {
                let a = rows::action(r)?;
                Ok(ActionWindow {
                    rule: a.rule()?,
                    incident_id: a.incident_id,
                    from: a.created_at,
                    until: a.ended_at.or(a.expires_at),
                })
            })
            .collect::<CoreResult<Vec<_>>>()?;
        let open: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, facts FROM incidents WHERE phase <> 'closed' ORDER BY id")
                .fetch_all(&mut *c)
                .await?;
        let mut indicators = Vec::new();
        for (id, facts) in open {
            let f: IncidentFacts = serde_json::from_str(&facts)?;
            if !f.indicators.is_empty() {
                indicators.push(IncidentIndicators {
                    incident_id: id,
                    indicators: f.indicators,
                });
            }
        }
        let routes = default_pixel_routes();
        let mut per_incident: BTreeMap<i64, Stored> = BTreeMap::new();
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
                let s = per_incident.entry(m.incident_id).or_default();
                s.ids.push(id);
                s.hashes.push(line.hash.clone());
                let bucket = line.at - line.at.rem_euclid(EVIDENCE_BUCKET_MS);
                let b = s
                    .buckets
                    .entry(bucket)
                    .or_insert((line.at, 0, BTreeMap::new()));
                b.0 = b.0.min(line.at);
                b.1 += 1;
                for k in m.keys {
                    *b.2.entry(k).or_default() += 1;
                }
            }
        }
        for (incident, s) in &per_incident {
            for (bucket, (first, lines, keys)) in &s.buckets {
                upsert_bucket(c, *incident, "evidence", *bucket, *first, actor, |old| {
                    let mut data = old.cloned().unwrap_or_else(
                        || json!({"bucket": rfc3339(*bucket), "lines": 0, "matched": {}}),
                    );
                    let cur = data["lines"].as_i64().unwrap_or(0);
                    data["lines"] = json!(cur + lines);
                    for (k, n) in keys {
                        let cur = data["matched"].get(k).and_then(|v| v.as_i64()).unwrap_or(0);
                        data["matched"][k] = json!(cur + n);
                    }
                    let matched = data["matched"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| format!("{}: {v}", k.replace(':', " ")))
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default();
                    let message = format!(
                        "access-log evidence in the minute from {}: {} line(s) ({matched})",
                        rfc3339(*bucket),
                        data["lines"]
                    );
                    (message, data)
                })
                .await?;
            }
            let mut hashes = s.hashes.clone();
            hashes.sort();
            let digest = hex::encode(Sha256::digest(hashes.join("\n").as_bytes()));
            let event = NewAuditEvent {
                actor: actor.to_string(),
                verb: "evidence.ingest".to_string(),
                object: format!("incident/{incident}/evidence"),
                incident_id: Some(*incident),
                before: None,
                after: Some(json!({
                    "batch_id": batch.batch_id,
                    "edge_id": batch.edge_id,
                    "stored": s.ids.len(),
                    "evidence_ids": s.ids,
                    "line_hashes_sha256": digest,
                })),
                reason: None,
            };
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
