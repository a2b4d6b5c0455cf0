//! Tokens, the audit log and edge reports.

use edge_policy::report::EdgeReport;
use sqlx::{QueryBuilder, Row};

use super::{append_audit, rows, upsert_bucket, SqliteStore};
use crate::domain::audit::ChainVerifier;
use crate::domain::edge_record::{bucket_of, merge_hits, HIT_BUCKET_MS};
use crate::domain::token::Role;
use crate::domain::token_rules;
use crate::domain::{CoreError, CoreResult};
use crate::store::{
    AuditFilter, AuditRecord, AuthToken, ChainReport, Counts, EdgeRecord, ReportOutcome,
    TokenRecord,
};

async fn add_hits_to_timeline(
    c: &mut sqlx::SqliteConnection,
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

impl SqliteStore {
    pub(crate) async fn create_token_impl(
        &self,
        actor: &str,
        name: &str,
        role: Role,
        hash: [u8; 32],
        only_if_none: bool,
        now: i64,
    ) -> CoreResult<TokenRecord> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL")
            .fetch_one(&mut *c)
            .await?;
        let same_name: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE name = ? AND revoked_at IS NULL")
                .bind(name)
                .fetch_one(&mut *c)
                .await?;
        token_rules::check_create(live, same_name, only_if_none, name)?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tokens (name, role, hash, created_at, created_by) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(&hash[..])
        .bind(now)
        .bind(actor)
        .fetch_one(&mut *c)
        .await?;
        let row = sqlx::query("SELECT * FROM tokens WHERE id = ?")
            .bind(id)
            .fetch_one(&mut *c)
            .await?;
        let rec = rows::token(&row)?;
        let event = token_rules::created(&rec, actor);
        append_audit(c, event, now).await?;
        self.commit(w, None).await?;
        Ok(rec)
    }

    pub(crate) async fn find_token_impl(&self, hash: &[u8; 32]) -> CoreResult<Option<AuthToken>> {
        let row = sqlx::query("SELECT id, name, role, hash, revoked_at FROM tokens WHERE hash = ?")
            .bind(&hash[..])
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get("role")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        Ok(Some(AuthToken {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            role: role.parse().map_err(CoreError::Internal)?,
            hash: row.try_get("hash")?,
            revoked: revoked_at.is_some(),
        }))
    }

    pub(crate) async fn list_tokens_impl(&self) -> CoreResult<Vec<TokenRecord>> {
        let rows = sqlx::query("SELECT * FROM tokens ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::token).collect()
    }

    pub(crate) async fn revoke_token_impl(
        &self,
        actor: &str,
        id: i64,
        now: i64,
    ) -> CoreResult<TokenRecord> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let row = sqlx::query("SELECT * FROM tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
            .ok_or_else(|| CoreError::not_found("token", id))?;
        let before = rows::token(&row)?;
        let (after, event) = token_rules::revoke(&before, actor, now)?;
        sqlx::query("UPDATE tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?")
            .bind(after.revoked_at)
            .bind(&after.revoked_by)
            .bind(id)
            .execute(&mut *c)
            .await?;
        append_audit(c, event, now).await?;
        self.commit(w, None).await?;
        Ok(after)
    }

    pub(crate) async fn audit_impl(&self, f: &AuditFilter) -> CoreResult<Vec<AuditRecord>> {
        let mut q = QueryBuilder::new("SELECT * FROM audit WHERE seq > ");
        q.push_bind(f.after_seq);
        if let Some(i) = f.incident {
            q.push(" AND incident_id = ").push_bind(i);
        }
        if let Some(a) = &f.actor {
            q.push(" AND actor = ").push_bind(a.clone());
        }
        if let Some(t) = f.from_ms {
            q.push(" AND at_ms >= ").push_bind(t);
        }
        if let Some(t) = f.to_ms {
            q.push(" AND at_ms < ").push_bind(t);
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(f.limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(rows::audit).collect()
    }

    pub(crate) async fn verify_audit_impl(&self) -> CoreResult<ChainReport> {
        let mut v = ChainVerifier::default();
        let mut last_seq = 0;
        loop {
            let rows = sqlx::query("SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT 1000")
                .bind(last_seq)
                .fetch_all(&self.pool)
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let r = rows::audit(row)?;
                if let Err(broken) = v.check(&r) {
                    return Ok(ChainReport {
                        checked: v.checked,
                        last_seq,
                        last_hash: v.last_hash().to_string(),
                        first_broken: Some(broken),
                    });
                }
                last_seq = r.seq;
            }
        }
        Ok(ChainReport {
            checked: v.checked,
            last_seq,
            last_hash: v.last_hash().to_string(),
            first_broken: None,
        })
    }

    pub(crate) async fn record_report_impl(
        &self,
        r: &EdgeReport,
        now: i64,
    ) -> CoreResult<ReportOutcome> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let seq = i64::try_from(r.seq).map_err(|_| CoreError::invalid("seq", "too large"))?;
        let version = i64::try_from(r.policy_version)
            .map_err(|_| CoreError::invalid("policy_version", "too large"))?;
        let fresh = sqlx::query("INSERT OR IGNORE INTO edge_reports_seen (edge_id, boot_id, seq, at) VALUES (?, ?, ?, ?)")
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
            "INSERT INTO edges (edge_id, boot_id, last_seen, policy_version, reports) VALUES (?, ?, ?, ?, 1)
             ON CONFLICT (edge_id) DO UPDATE SET boot_id = excluded.boot_id, last_seen = excluded.last_seen,
                policy_version = excluded.policy_version, reports = edges.reports + 1",
        )
        .bind(&r.edge_id)
        .bind(&r.boot_id)
        .bind(now)
        .bind(version)
        .execute(&mut *c)
        .await?;
        let mut per_incident: std::collections::BTreeMap<i64, Vec<(i64, i64)>> =
            std::collections::BTreeMap::new();
        let mut unknown_rule_ids = Vec::new();
        for h in &r.hits {
            // The handler has checked both fit (1..=i64::MAX, count <= 2^40).
            let (Ok(action_id), Ok(count)) = (i64::try_from(h.rule_id), i64::try_from(h.count))
            else {
                return Err(CoreError::invalid("hits", "rule_id or count out of range"));
            };
            let incident: Option<i64> =
                sqlx::query_scalar("SELECT incident_id FROM actions WHERE id = ?")
                    .bind(action_id)
                    .fetch_optional(&mut *c)
                    .await?;
            let Some(incident) = incident else {
                unknown_rule_ids.push(h.rule_id);
                continue;
            };
            if count == 0 {
                continue;
            }
            per_incident
                .entry(incident)
                .or_default()
                .push((action_id, count));
            sqlx::query(
                "INSERT INTO action_hits (action_id, edge_id, count) VALUES (?1, ?2, ?3)
                 ON CONFLICT (action_id, edge_id) DO UPDATE SET count = action_hits.count + excluded.count",
            )
            .bind(action_id)
            .bind(&r.edge_id)
            .bind(count)
            .execute(&mut *c)
            .await?;
        }
        for (incident, hits) in per_incident {
            add_hits_to_timeline(c, incident, &r.edge_id, &hits, now).await?;
        }
        self.commit(w, None).await?;
        Ok(ReportOutcome {
            counted: true,
            unknown_rule_ids,
        })
    }

    pub(crate) async fn list_edges_impl(&self) -> CoreResult<Vec<EdgeRecord>> {
        let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT edge_id, boot_id, last_seen, policy_version, reports FROM edges ORDER BY edge_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(edge_id, boot_id, last_seen, policy_version, reports)| EdgeRecord {
                    edge_id,
                    boot_id,
                    last_seen,
                    policy_version,
                    reports,
                },
            )
            .collect())
    }

    pub(crate) async fn counts_impl(&self) -> CoreResult<Counts> {
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
}
