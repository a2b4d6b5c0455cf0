//! [`AuditStore`] in SQL: listing and verifying the audit chain (appending is
//! `append_audit`, part of every write).

use async_trait::async_trait;

use super::{rows, Sql, SqlStore};
use crate::domain::audit::ChainVerifier;
use crate::domain::CoreResult;
use crate::store::{AuditFilter, AuditLink, AuditRecord, AuditStore, ChainReport};

#[async_trait]
impl AuditStore for SqlStore {
    async fn audit(&self, f: &AuditFilter) -> CoreResult<Vec<AuditRecord>> {
        let mut q = Sql::new("SELECT * FROM audit WHERE seq > ");
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

    async fn verify_audit(&self) -> CoreResult<ChainReport> {
        let mut v = ChainVerifier::default();
        let mut last_seq = 0;
        loop {
            let rows = sqlx::query("SELECT * FROM audit WHERE seq > $1 ORDER BY seq LIMIT 1000")
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

    async fn audit_links(&self, from_seq: i64, to_seq: i64) -> CoreResult<Vec<AuditLink>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, prev_hash, hash FROM audit WHERE seq >= $1 AND seq <= $2 ORDER BY seq",
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
