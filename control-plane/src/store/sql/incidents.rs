//! [`IncidentStore`] in SQL: incidents and their timelines.

use async_trait::async_trait;
use sqlx::AnyConnection;

use super::{rows, write_effects, Sql, SqlStore};
use crate::domain::incident::{IncidentChange, NewIncident, Phase};
use crate::domain::incident_rules::{self, IncidentUpdate};
use crate::domain::CoreResult;
use crate::store::{IncidentFilter, IncidentRecord, IncidentStore, TimelineEntry};

/// Insert `new` with what opening it writes (timeline, audit), in the caller's transaction.
pub(super) async fn insert_incident(
    c: &mut AnyConnection,
    actor: &str,
    new: &NewIncident,
    now: i64,
) -> CoreResult<IncidentRecord> {
    let id: i64 = sqlx::query_scalar(
            "INSERT INTO incidents (title, summary, severity, phase, assignee, detected_at, reported_at, systems,
                personal_data, created_at, created_by, updated_at, health_data, aware_at, next_update_at, facts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id",
        )
        .bind(&new.title)
        .bind(&new.summary)
        .bind(new.severity.as_str())
        .bind(Phase::DetectionAnalysis.as_str())
        .bind(&new.assignee)
        .bind(new.detected_at_ms)
        .bind(new.reported_at_ms)
        .bind(serde_json::to_string(&new.systems)?)
        .bind(i64::from(new.personal_data))
        .bind(now)
        .bind(actor)
        .bind(now)
        .bind(i64::from(new.health_data))
        .bind(new.aware_at_ms)
        .bind(new.next_update_at_ms)
        .bind(serde_json::to_string(&new.facts)?)
        .fetch_one(&mut *c)
        .await?;
    let rec = rows::get_incident(c, id).await?;
    write_effects(c, incident_rules::opened(&rec, actor, now)?, now).await?;
    Ok(rec)
}

#[async_trait]
impl IncidentStore for SqlStore {
    async fn create_incident(
        &self,
        actor: &str,
        new: &NewIncident,
        now: i64,
    ) -> CoreResult<IncidentRecord> {
        let mut w = self.begin_write().await?;
        let rec = insert_incident(&mut w.tx, actor, new, now).await?;
        self.commit(w, None).await?;
        Ok(rec)
    }

    async fn list_incidents(&self, f: &IncidentFilter) -> CoreResult<(Vec<IncidentRecord>, i64)> {
        let filter = |q: &mut Sql| {
            q.push(" WHERE 1 = 1");
            if let Some(p) = f.phase {
                q.push(" AND phase = ").push_bind(p.as_str());
            }
            if let Some(s) = f.severity {
                q.push(" AND severity = ").push_bind(s.as_str());
            }
            match f.open {
                Some(true) => {
                    q.push(" AND phase <> 'closed'");
                }
                Some(false) => {
                    q.push(" AND phase = 'closed'");
                }
                None => {}
            }
        };
        let mut q = Sql::new("SELECT COUNT(*) FROM incidents");
        filter(&mut q);
        let total: i64 = q.build_query_scalar().fetch_one(&self.pool).await?;
        let mut q = Sql::new("SELECT * FROM incidents");
        filter(&mut q);
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(f.limit)
            .push(" OFFSET ")
            .push_bind(f.offset);
        let items = q
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(rows::incident)
            .collect::<CoreResult<Vec<_>>>()?;
        Ok((items, total))
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
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let before = rows::get_incident(c, id).await?;
        let has_postmortem: Option<i64> =
            sqlx::query_scalar("SELECT incident_id FROM postmortems WHERE incident_id = $1")
                .bind(id)
                .fetch_optional(&mut *c)
                .await?;
        let live = super::actions::live_actions(c, id, now).await?;
        let update =
            incident_rules::update(&before, change, has_postmortem.is_some(), &live, actor, now)?;
        let Some(IncidentUpdate {
            after,
            writes,
            lift,
        }) = update
        else {
            return Ok(before);
        };
        // Closing with `lift_all`: the live actions end in the same transaction.
        let mut version = None;
        if !lift.is_empty() {
            let reason = change.reason.as_deref().unwrap_or("incident closed");
            version = Some(
                super::actions::lift_many(c, &lift, actor, reason, now)
                    .await?
                    .0,
            );
        }
        sqlx::query(
            "UPDATE incidents SET severity = $1, phase = $2, assignee = $3, closed_at = $4, updated_at = $5, summary = $6,
                personal_data = $7, health_data = $8, aware_at = $9, resolved_at = $10, next_update_at = $11, facts = $12
             WHERE id = $13",
        )
        .bind(after.severity.as_str())
        .bind(after.phase.as_str())
        .bind(&after.assignee)
        .bind(after.closed_at)
        .bind(after.updated_at)
        .bind(&after.summary)
        .bind(i64::from(after.personal_data))
        .bind(i64::from(after.health_data))
        .bind(after.aware_at)
        .bind(after.resolved_at)
        .bind(after.next_update_at)
        .bind(serde_json::to_string(&after.facts)?)
        .bind(id)
        .execute(&mut *c)
        .await?;
        write_effects(c, writes, now).await?;
        self.commit(w, version).await?;
        Ok(after)
    }

    async fn timeline(&self, incident_id: i64) -> CoreResult<Vec<TimelineEntry>> {
        let mut c = self.pool.acquire().await?;
        rows::get_incident(&mut c, incident_id).await?;
        let rows = sqlx::query("SELECT * FROM timeline WHERE incident_id = $1 ORDER BY at, id")
            .bind(incident_id)
            .fetch_all(&mut *c)
            .await?;
        rows.iter().map(rows::timeline).collect()
    }
}
