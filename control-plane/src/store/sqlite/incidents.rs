//! Incidents and their timelines.

use sqlx::{QueryBuilder, Sqlite};

use super::{add_timeline, append_audit, rows, Event, SqliteStore};
use crate::domain::incident::{check_phase_move, IncidentChange, NewIncident, Phase};
use crate::domain::CoreResult;
use crate::store::{IncidentFilter, IncidentRecord, TimelineEntry};

impl SqliteStore {
    pub(crate) async fn create_incident_impl(
        &self,
        actor: &str,
        new: &NewIncident,
        now: i64,
    ) -> CoreResult<IncidentRecord> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO incidents (title, summary, severity, phase, assignee, detected_at, reported_at, systems,
                personal_data, created_at, created_by, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&new.title)
        .bind(&new.summary)
        .bind(new.severity.as_str())
        .bind(Phase::DetectionAnalysis.as_str())
        .bind(&new.assignee)
        .bind(new.detected_at_ms)
        .bind(new.reported_at_ms)
        .bind(serde_json::to_string(&new.systems)?)
        .bind(new.personal_data)
        .bind(now)
        .bind(actor)
        .bind(now)
        .fetch_one(&mut *c)
        .await?;
        let rec = rows::get_incident(c, id).await?;
        let event = Event {
            actor,
            verb: "incident.create",
            object: format!("incident/{id}"),
            incident_id: Some(id),
            before: None,
            after: Some(serde_json::to_value(&rec)?),
            reason: None,
        };
        append_audit(c, event, now).await?;
        let msg = format!("incident opened: {} ({})", rec.title, rec.severity);
        add_timeline(c, id, now, actor, "created", &msg, None, None).await?;
        self.commit(w, None).await?;
        Ok(rec)
    }

    pub(crate) async fn list_incidents_impl(
        &self,
        f: &IncidentFilter,
    ) -> CoreResult<(Vec<IncidentRecord>, i64)> {
        let filter = |q: &mut QueryBuilder<'_, Sqlite>| {
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
        let mut q = QueryBuilder::new("SELECT COUNT(*) FROM incidents");
        filter(&mut q);
        let total: i64 = q.build_query_scalar().fetch_one(&self.pool).await?;
        let mut q = QueryBuilder::new("SELECT * FROM incidents");
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

    pub(crate) async fn update_incident_impl(
        &self,
        actor: &str,
        id: i64,
        change: &IncidentChange,
        now: i64,
    ) -> CoreResult<IncidentRecord> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let before = rows::get_incident(c, id).await?;
        let reason = change.reason.as_deref();
        let mut after = before.clone();
        let mut entries: Vec<(&str, String)> = Vec::new();
        if let Some(s) = change.severity.filter(|s| *s != before.severity) {
            after.severity = s;
            entries.push((
                "severity_changed",
                format!("severity {} → {}", before.severity, s),
            ));
        }
        if let Some(p) = change.phase.filter(|p| *p != before.phase) {
            check_phase_move(before.phase, p, reason)?;
            after.phase = p;
            after.closed_at = (p == Phase::Closed).then_some(now);
            entries.push((
                "phase_changed",
                format!("phase {} → {}", before.phase.as_str(), p.as_str()),
            ));
        }
        if let Some(a) = change.assignee.as_ref().filter(|a| **a != before.assignee) {
            after.assignee = a.clone();
            let show = |x: &Option<String>| x.clone().unwrap_or_else(|| "nobody".into());
            entries.push((
                "assignee_changed",
                format!("assignee {} → {}", show(&before.assignee), show(a)),
            ));
        }
        if entries.is_empty() {
            return Ok(before);
        }
        after.updated_at = now;
        sqlx::query("UPDATE incidents SET severity = ?, phase = ?, assignee = ?, closed_at = ?, updated_at = ? WHERE id = ?")
            .bind(after.severity.as_str())
            .bind(after.phase.as_str())
            .bind(&after.assignee)
            .bind(after.closed_at)
            .bind(now)
            .bind(id)
            .execute(&mut *c)
            .await?;
        for (kind, msg) in &entries {
            add_timeline(c, id, now, actor, kind, msg, reason, None).await?;
        }
        let event = Event {
            actor,
            verb: "incident.update",
            object: format!("incident/{id}"),
            incident_id: Some(id),
            before: Some(serde_json::to_value(&before)?),
            after: Some(serde_json::to_value(&after)?),
            reason,
        };
        append_audit(c, event, now).await?;
        self.commit(w, None).await?;
        Ok(after)
    }

    pub(crate) async fn timeline_impl(&self, incident_id: i64) -> CoreResult<Vec<TimelineEntry>> {
        let mut c = self.pool.acquire().await?;
        rows::get_incident(&mut c, incident_id).await?;
        let rows = sqlx::query("SELECT * FROM timeline WHERE incident_id = ? ORDER BY id")
            .bind(incident_id)
            .fetch_all(&mut *c)
            .await?;
        rows.iter().map(rows::timeline).collect()
    }
}
