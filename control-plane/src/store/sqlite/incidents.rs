//! Incidents and their timelines.

use sqlx::{QueryBuilder, Sqlite};

use super::{add_timeline, append_audit, rows, SqliteStore};
use crate::domain::audit::NewAuditEvent;
use crate::domain::incident::{check_phase_move, IncidentChange, NewIncident, Phase};
use crate::domain::{CoreError, CoreResult};
use crate::store::{IncidentFilter, IncidentRecord, TimelineEntry};
use serde_json::json;

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
                personal_data, created_at, created_by, updated_at, health_data, aware_at, next_update_at, facts)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        .bind(new.health_data)
        .bind(new.aware_at_ms)
        .bind(new.next_update_at_ms)
        .bind(serde_json::to_string(&new.facts)?)
        .fetch_one(&mut *c)
        .await?;
        let rec = rows::get_incident(c, id).await?;
        let event = NewAuditEvent {
            actor: actor.to_string(),
            verb: "incident.create".to_string(),
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
        let mut entries: Vec<(&str, String, Option<serde_json::Value>)> = Vec::new();
        if let Some(s) = change.severity.filter(|s| *s != before.severity) {
            after.severity = s;
            entries.push((
                "severity_changed",
                format!("severity {} → {}", before.severity, s),
                None,
            ));
        }
        if let Some(p) = change.phase.filter(|p| *p != before.phase) {
            check_phase_move(before.phase, p, reason)?;
            after.phase = p;
            after.closed_at = (p == Phase::Closed).then_some(now);
            if before.phase < Phase::PostIncident && p >= Phase::PostIncident {
                after.resolved_at = Some(now);
            } else if p < Phase::PostIncident {
                after.resolved_at = None;
            }
            entries.push((
                "phase_changed",
                format!("phase {} → {}", before.phase.as_str(), p.as_str()),
                Some(json!({"from": before.phase.as_str(), "to": p.as_str()})),
            ));
        }
        if let Some(a) = change.assignee.as_ref().filter(|a| **a != before.assignee) {
            after.assignee = a.clone();
            let show = |x: &Option<String>| x.clone().unwrap_or_else(|| "nobody".into());
            entries.push((
                "assignee_changed",
                format!("assignee {} → {}", show(&before.assignee), show(a)),
                None,
            ));
        }
        let mut changed: Vec<&str> = Vec::new();
        if let Some(sm) = change.summary.as_ref().filter(|s| **s != before.summary) {
            after.summary = sm.clone();
            changed.push("summary");
        }
        if let Some(t) = change
            .next_update_at_ms
            .filter(|t| Some(*t) != before.next_update_at)
        {
            after.next_update_at = Some(t);
            changed.push("next_update_at");
        }
        changed.extend(change.facts.apply(&mut after.facts));
        if !changed.is_empty() {
            entries.push((
                "facts_changed",
                format!("facts updated: {}", changed.join(", ")),
                Some(json!({"fields": changed})),
            ));
        }
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        for (name, new, old, slot) in [
            (
                "personal data",
                change.personal_data,
                before.personal_data,
                &mut after.personal_data,
            ),
            (
                "health data",
                change.health_data,
                before.health_data,
                &mut after.health_data,
            ),
        ] {
            if let Some(v) = new.filter(|v| *v != old) {
                *slot = v;
                entries.push((
                    "data_flags_changed",
                    format!("{name} involved: {} → {}", yes_no(old), yes_no(v)),
                    None,
                ));
            }
        }
        let sensitive = after.personal_data || after.health_data;
        let aware = match change.aware_at_ms {
            Some(t) => Some(t),
            // Turned on now, never aware before: aware from now on.
            None if sensitive && before.aware_at.is_none() => Some(now),
            None => before.aware_at,
        };
        if aware != before.aware_at {
            after.aware_at = aware;
            let show = aware
                .map(crate::clock::rfc3339)
                .unwrap_or_else(|| "unset".into());
            entries.push((
                "aware_at_changed",
                format!("aware of the personal-data breach at {show}"),
                None,
            ));
        }
        if after.phase == Phase::Closed && before.phase != Phase::Closed && sensitive {
            let has_pm: Option<i64> =
                sqlx::query_scalar("SELECT incident_id FROM postmortems WHERE incident_id = ?")
                    .bind(id)
                    .fetch_optional(&mut *c)
                    .await?;
            if has_pm.is_none() {
                return Err(CoreError::conflict(
                    "postmortem",
                    "an incident with personal or health data cannot be closed before its post-mortem is submitted (PUT /v1/incidents/{id}/postmortem)",
                ));
            }
        }
        if entries.is_empty() {
            return Ok(before);
        }
        after.updated_at = now;
        sqlx::query(
            "UPDATE incidents SET severity = ?, phase = ?, assignee = ?, closed_at = ?, updated_at = ?, summary = ?,
                personal_data = ?, health_data = ?, aware_at = ?, resolved_at = ?, next_update_at = ?, facts = ?
             WHERE id = ?",
        )
        .bind(after.severity.as_str())
        .bind(after.phase.as_str())
        .bind(&after.assignee)
        .bind(after.closed_at)
        .bind(now)
        .bind(&after.summary)
        .bind(after.personal_data)
        .bind(after.health_data)
        .bind(after.aware_at)
        .bind(after.resolved_at)
        .bind(after.next_update_at)
        .bind(serde_json::to_string(&after.facts)?)
        .bind(id)
        .execute(&mut *c)
        .await?;
        for (kind, msg, data) in &entries {
            add_timeline(c, id, now, actor, kind, msg, reason, data.clone()).await?;
        }
        let event = NewAuditEvent {
            actor: actor.to_string(),
            verb: "incident.update".to_string(),
            object: format!("incident/{id}"),
            incident_id: Some(id),
            before: Some(serde_json::to_value(&before)?),
            after: Some(serde_json::to_value(&after)?),
            reason: reason.map(str::to_string),
        };
        append_audit(c, event, now).await?;
        self.commit(w, None).await?;
        Ok(after)
    }

    pub(crate) async fn timeline_impl(&self, incident_id: i64) -> CoreResult<Vec<TimelineEntry>> {
        let mut c = self.pool.acquire().await?;
        rows::get_incident(&mut c, incident_id).await?;
        let rows = sqlx::query("SELECT * FROM timeline WHERE incident_id = ? ORDER BY at, id")
            .bind(incident_id)
            .fetch_all(&mut *c)
            .await?;
        rows.iter().map(rows::timeline).collect()
    }
}
