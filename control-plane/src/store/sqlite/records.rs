//! Notifications, post-mortems and the inputs of the policy clock.

use std::collections::HashMap;

use serde_json::json;
use sqlx::QueryBuilder;

use super::{add_timeline, append_audit, rows, SqliteStore};
use crate::domain::audit::NewAuditEvent;
use crate::domain::deadline::DeadlineFacts;
use crate::domain::incident::Phase;
use crate::domain::notification::{Audience, NewNotification, NotificationKind};
use crate::domain::postmortem::PostMortem;
use crate::domain::{CoreError, CoreResult};
use crate::store::{IncidentDeadlines, NotificationRecord, PostMortemRecord};

/// The phase move a `phase_changed` timeline entry records: from its data, or (entries
/// written before the data was added) from its message `phase a → b`.
fn phase_move(data: Option<&str>, message: &str) -> Option<(Phase, Phase)> {
    if let Some(v) = data.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()) {
        let from = v["from"].as_str()?.parse().ok()?;
        let to = v["to"].as_str()?.parse().ok()?;
        return Some((from, to));
    }
    let rest = message.strip_prefix("phase ")?;
    let (from, to) = rest.split_once(" → ")?;
    Some((from.parse().ok()?, to.parse().ok()?))
}

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
        let missing = n.missing(&incident.facts);
        if !missing.is_empty() {
            return Err(CoreError::MissingFacts(missing));
        }
        let facts = n.is_breach_notification().then(|| {
            let f = &incident.facts;
            json!({
                "breach_nature": f.breach_nature,
                "data_categories": f.data_categories,
                "data_subjects_approx": f.data_subjects_approx,
                "records_approx": f.records_approx,
                "dpo_contact": n.dpo_contact,
                "likely_consequences": f.likely_consequences,
                "measures_taken": f.measures_taken,
            })
        });
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
        let event = NewAuditEvent {
            actor: actor.to_string(),
            verb: "notification.record".to_string(),
            object: format!("notification/{id}"),
            incident_id: Some(n.incident_id),
            before: None,
            after: Some(serde_json::to_value(&rec)?),
            reason: None,
        };
        append_audit(c, event, now).await?;
        let what = match n.kind {
            NotificationKind::Notification => "notified".to_string(),
            k => format!("sent the {}", k.as_str().replace('_', " ")),
        };
        let reference = n
            .reference
            .as_ref()
            .map(|r| format!(", ref {r}"))
            .unwrap_or_default();
        let msg = format!(
            "{} {what} via {} by {} at {}{reference}",
            n.audience.as_str(),
            n.channel,
            n.notified_by,
            crate::clock::rfc3339(n.notified_at)
        );
        let data = json!({"notification_id": id, "audience": n.audience.as_str(), "kind": n.kind.as_str()});
        add_timeline(
            c,
            n.incident_id,
            now,
            actor,
            "notification_recorded",
            &msg,
            None,
            Some(data),
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
        if before.as_ref().is_some_and(|b| b.content == *pm) {
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
        let (verb, kind, msg) = match before {
            None => (
                "postmortem.submit",
                "postmortem_submitted",
                "post-mortem submitted",
            ),
            Some(_) => (
                "postmortem.update",
                "postmortem_updated",
                "post-mortem revised",
            ),
        };
        let event = NewAuditEvent {
            actor: actor.to_string(),
            verb: verb.to_string(),
            object: format!("incident/{incident_id}/postmortem"),
            incident_id: Some(incident_id),
            before: before.map(|b| serde_json::to_value(&b)).transpose()?,
            after: Some(serde_json::to_value(&rec)?),
            reason: None,
        };
        append_audit(c, event, now).await?;
        let msg = format!(
            "{msg}: {} follow-up item(s); root cause: {}",
            pm.follow_ups.len(),
            pm.root_cause.lines().next().unwrap_or("")
        );
        add_timeline(c, incident_id, now, actor, kind, &msg, None, None).await?;
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
        let moves: Vec<(i64, i64, String, Option<String>)> =
            q.build_query_as().fetch_all(&mut *tx).await?;
        let mut q = scoped(
            "SELECT incident_id, audience, kind, MIN(notified_at) FROM notifications WHERE 1 = 1",
        );
        q.push(" GROUP BY incident_id, audience, kind");
        let notes: Vec<(i64, String, String, i64)> = q.build_query_as().fetch_all(&mut *tx).await?;
        let mut q = scoped("SELECT incident_id, submitted_at FROM postmortems WHERE 1 = 1");
        let pms: Vec<(i64, i64)> = q.build_query_as().fetch_all(&mut *tx).await?;
        tx.commit().await?;

        let mut by_id: HashMap<i64, DeadlineFacts> = incidents
            .iter()
            .map(|i| {
                (
                    i.id,
                    DeadlineFacts {
                        phase: i.phase,
                        detected_at: i.detected_at,
                        reported_at: i.reported_at,
                        personal_data: i.personal_data,
                        health_data: i.health_data,
                        aware_at: i.aware_at,
                        resolved_at: i.resolved_at,
                        phase_moves: Vec::new(),
                        preliminary_report_at: None,
                        authority_notified_at: None,
                        hipaa_notice_at: None,
                        postmortem_at: None,
                    },
                )
            })
            .collect();
        for (id, at, message, data) in moves {
            if let (Some(f), Some((from, to))) =
                (by_id.get_mut(&id), phase_move(data.as_deref(), &message))
            {
                f.phase_moves.push((at, from, to));
            }
        }
        let earliest = |slot: &mut Option<i64>, at: i64| {
            *slot = Some(slot.map_or(at, |s| s.min(at)));
        };
        for (id, audience, kind, at) in notes {
            let Some(f) = by_id.get_mut(&id) else {
                continue;
            };
            match (NotificationKind::parse(&kind), Audience::parse(&audience)) {
                (Some(NotificationKind::PreliminaryReport), _) => {
                    earliest(&mut f.preliminary_report_at, at)
                }
                (Some(NotificationKind::HipaaNotice), _) => earliest(&mut f.hipaa_notice_at, at),
                (Some(NotificationKind::Notification), Some(Audience::Authority)) => {
                    earliest(&mut f.authority_notified_at, at)
                }
                _ => {}
            }
        }
        for (id, at) in pms {
            if let Some(f) = by_id.get_mut(&id) {
                f.postmortem_at = Some(at);
            }
        }
        Ok(incidents
            .into_iter()
            .filter_map(|i| {
                let facts = by_id.remove(&i.id)?;
                Some(IncidentDeadlines { incident: i, facts })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_moves_from_data_or_message() {
        assert_eq!(
            phase_move(Some(r#"{"from":"containment","to":"closed"}"#), "x"),
            Some((Phase::Containment, Phase::Closed))
        );
        assert_eq!(
            phase_move(None, "phase detection_analysis → containment"),
            Some((Phase::DetectionAnalysis, Phase::Containment))
        );
        assert_eq!(phase_move(None, "severity P1 → P0"), None);
    }
}
