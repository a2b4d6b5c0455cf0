//! [`IntakeStore`] in SQL: alert groups and the incidents they opened.

use async_trait::async_trait;

use super::incidents::insert_incident;
use super::{add_timeline, rows, SqlStore};
use crate::domain::incident::{NewIncident, Phase};
use crate::domain::intake::{timeline_entry, AlertGroup};
use crate::domain::CoreResult;
use crate::store::{IncidentRecord, IntakeStore};

#[async_trait]
impl IntakeStore for SqlStore {
    async fn intake_alert(
        &self,
        group: &AlertGroup,
        new: &NewIncident,
        now: i64,
    ) -> CoreResult<(IncidentRecord, bool)> {
        // One write transaction: concurrent notifications of one group (Alertmanager in a
        // cluster sends from each peer) find the row the first one wrote.
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let known: Option<i64> =
            sqlx::query_scalar("SELECT incident_id FROM intake_groups WHERE group_key = $1")
                .bind(&group.group_key)
                .fetch_optional(&mut *c)
                .await?;
        if let Some(id) = known {
            let rec = rows::get_incident(c, id).await?;
            if rec.phase != Phase::Closed {
                sqlx::query(
                    "UPDATE intake_groups SET last_at = $1, updates = updates + 1 WHERE group_key = $2",
                )
                .bind(now)
                .bind(&group.group_key)
                .execute(&mut *c)
                .await?;
                add_timeline(c, &timeline_entry(id, group, false, now)).await?;
                self.commit(w, None).await?;
                return Ok((rec, false));
            }
        }
        // New, or its incident was closed: a new incident for the group. A group that only
        // resolves is recorded against nothing (there is nothing to open).
        let rec = insert_incident(c, "intake", new, now).await?;
        sqlx::query(
            "INSERT INTO intake_groups (group_key, incident_id, first_at, last_at, updates) VALUES ($1, $2, $3, $3, 0)
             ON CONFLICT (group_key) DO UPDATE SET incident_id = excluded.incident_id, first_at = excluded.first_at,
                last_at = excluded.last_at, updates = 0",
        )
        .bind(&group.group_key)
        .bind(rec.id)
        .bind(now)
        .execute(&mut *c)
        .await?;
        add_timeline(c, &timeline_entry(rec.id, group, true, now)).await?;
        self.commit(w, None).await?;
        Ok((rec, true))
    }

    async fn intake_incident(&self, group_key: &str) -> CoreResult<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT incident_id FROM intake_groups WHERE group_key = $1")
                .bind(group_key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
