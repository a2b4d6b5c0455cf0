//! Notifications, post-mortems and the inputs of the policy clock.

use sqlx::QueryBuilder;

use super::{rows, write_effects, SqliteStore};
use crate::domain::notification::NewNotification;
use crate::domain::postmortem::PostMortem;
use crate::domain::record_rules::{self, DeadlineRows};
use crate::domain::{CoreError, CoreResult};
use crate::store::{IncidentDeadlines, NotificationRecord, PostMortemRecord};

impl SqliteStore {
    pub(crate) async fn record_notification_impl(
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        let row = sqlx::query("SELECT * FROM notifications WHERE id = ?")
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

    pub(crate) async fn notifications_impl(
        &self,
        incident_id: i64,
    ) -> CoreResult<Vec<NotificationRecord>> {
        let mut c = self.pool.acquire().await?;
        rows::get_incident(&mut c, incident_id).await?;
        let rows = sqlx::query(
            "SELECT * FROM notifications WHERE incident_id = ? ORDER BY notified_at, id",
        )
        .bind(incident_id)
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(rows::notification).collect()
    }

    pub(crate) async fn submit_postmortem_impl(
        &self,
        actor: &str,
        incident_id: i64,
        pm: &PostMortem,
        now: i64,
    ) -> CoreResult<PostMortemRecord> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        rows::get_incident(c, incident_id).await?;
        let before = sqlx::query("SELECT * FROM postmortems WHERE incident_id = ?")
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
        let row = sqlx::query("SELECT * FROM postmortems WHERE incident_id = ?")
            .bind(incident_id)
            .fetch_one(&mut *c)
            .await?;
        let rec = rows::postmortem(&row)?;
        let writes = record_rules::postmortem_written(before.as_ref(), &rec, actor, now)?;
        write_effects(c, writes, now).await?;
        self.commit(w, None).await?;
        Ok(rec)
    }

    pub(crate) async fn postmortem_impl(
        &self,
        incident_id: i64,
    ) -> CoreResult<Option<PostMortemRecord>> {
        let mut c = self.pool.acquire().await?;
        rows::get_incident(&mut c, incident_id).await?;
        sqlx::query("SELECT * FROM postmortems WHERE incident_id = ?")
            .bind(incident_id)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| rows::postmortem(&r))
            .transpose()
    }

    pub(crate) async fn deadline_facts_impl(
        &self,
        incident: Option<i64>,
    ) -> CoreResult<Vec<IncidentDeadlines>> {
        // One read transaction, so every part comes from the same snapshot.
        let mut tx = self.pool.begin().await?;
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
            let mut q = QueryBuilder::new(sql);
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
}
