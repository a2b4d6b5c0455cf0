//! What recording a notification and submitting a post-mortem do, the deadline inputs
//! gathered from what a store loaded, and retention (what a purge may remove, its audit
//! event). Pure: the store loads, calls these, writes.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::audit::NewAuditEvent;
use super::deadline::DeadlineFacts;
use super::effects::{NewTimelineEntry, Writes};
use super::incident::Phase;
use super::notification::{Audience, NewNotification, NotificationKind};
use super::postmortem::PostMortem;
use super::records::{IncidentDeadlines, IncidentRecord, NotificationRecord, PostMortemRecord};
use super::{CoreError, CoreResult};

/// Check `n` against `incident`: a breach notification is refused (listing every missing
/// fact) when the incident lacks the facts for it. Returns what the recipient is told (the
/// facts snapshot stored with a breach notification), `None` for other notifications.
pub fn check_notification(
    incident: &IncidentRecord,
    n: &NewNotification,
) -> CoreResult<Option<Value>> {
    let missing = n.missing(&incident.facts);
    if !missing.is_empty() {
        return Err(CoreError::MissingFacts(missing));
    }
    Ok(n.is_breach_notification().then(|| {
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
    }))
}

/// What goes with the stored notification `rec`.
pub fn notification_recorded(
    rec: &NotificationRecord,
    n: &NewNotification,
    actor: &str,
    now: i64,
) -> CoreResult<Writes> {
    let id = rec.id;
    let event = NewAuditEvent::new(
        actor,
        "notification.record",
        format!("notification/{id}"),
        Some(n.incident_id),
    )
    .after(serde_json::to_value(rec)?);
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
    let data =
        json!({"notification_id": id, "audience": n.audience.as_str(), "kind": n.kind.as_str()});
    let entry =
        NewTimelineEntry::new(n.incident_id, now, actor, "notification_recorded", msg).data(data);
    Ok(Writes {
        timeline: vec![entry],
        audit: vec![event],
    })
}

/// Does submitting `pm` change anything? Not when it repeats the stored post-mortem.
pub fn postmortem_changes(before: Option<&PostMortemRecord>, pm: &PostMortem) -> bool {
    before.is_none_or(|b| b.content != *pm)
}

/// What goes with the stored post-mortem `rec` (submitted first when `before` is `None`,
/// else revised).
pub fn postmortem_written(
    before: Option<&PostMortemRecord>,
    rec: &PostMortemRecord,
    actor: &str,
    now: i64,
) -> CoreResult<Writes> {
    let incident_id = rec.incident_id;
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
    let mut event = NewAuditEvent::new(
        actor,
        verb,
        format!("incident/{incident_id}/postmortem"),
        Some(incident_id),
    )
    .after(serde_json::to_value(rec)?);
    event.before = before.map(serde_json::to_value).transpose()?;
    let pm = &rec.content;
    let msg = format!(
        "{msg}: {} follow-up item(s); root cause: {}",
        pm.follow_ups.len(),
        pm.root_cause.lines().next().unwrap_or("")
    );
    Ok(Writes {
        timeline: vec![NewTimelineEntry::new(incident_id, now, actor, kind, msg)],
        audit: vec![event],
    })
}

/// The phase move a `phase_changed` timeline entry records: from its data, or (entries
/// written before the data was added) from its message `phase a → b`.
pub fn phase_move(data: Option<&str>, message: &str) -> Option<(Phase, Phase)> {
    if let Some(v) = data.and_then(|d| serde_json::from_str::<Value>(d).ok()) {
        let from = v["from"].as_str()?.parse().ok()?;
        let to = v["to"].as_str()?.parse().ok()?;
        return Some((from, to));
    }
    let rest = message.strip_prefix("phase ")?;
    let (from, to) = rest.split_once(" → ")?;
    Some((from.parse().ok()?, to.parse().ok()?))
}

/// What a store loads for the deadlines of some incidents.
#[derive(Clone, Debug, Default)]
pub struct DeadlineRows {
    pub incidents: Vec<IncidentRecord>,
    /// Every `phase_changed` timeline entry: `(incident, at, message, data)`, in time order.
    pub phase_entries: Vec<(i64, i64, String, Option<String>)>,
    /// The earliest notification per `(incident, audience, kind)`: `(incident, audience,
    /// kind, notified_at)`.
    pub first_notifications: Vec<(i64, String, String, i64)>,
    /// `(incident, submitted_at)` of every post-mortem.
    pub postmortems: Vec<(i64, i64)>,
}

/// The deadline inputs of each incident of `rows`, in the incidents' order.
pub fn deadline_inputs(rows: DeadlineRows) -> Vec<IncidentDeadlines> {
    let mut by_id: HashMap<i64, DeadlineFacts> = rows
        .incidents
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
    for (id, at, message, data) in rows.phase_entries {
        if let (Some(f), Some((from, to))) =
            (by_id.get_mut(&id), phase_move(data.as_deref(), &message))
        {
            f.phase_moves.push((at, from, to));
        }
    }
    let earliest = |slot: &mut Option<i64>, at: i64| {
        *slot = Some(slot.map_or(at, |s| s.min(at)));
    };
    for (id, audience, kind, at) in rows.first_notifications {
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
    for (id, at) in rows.postmortems {
        if let Some(f) = by_id.get_mut(&id) {
            f.postmortem_at = Some(at);
        }
    }
    rows.incidents
        .into_iter()
        .filter_map(|i| {
            let facts = by_id.remove(&i.id)?;
            Some(IncidentDeadlines { incident: i, facts })
        })
        .collect()
}

/// Records are kept at least this many years after an incident closed.
pub const MIN_RETENTION_YEARS: u32 = 5;

/// A purge of records older than `older_than_years` is refused below the minimum.
pub fn check_purge(older_than_years: u32) -> CoreResult<()> {
    if older_than_years < MIN_RETENTION_YEARS {
        return Err(CoreError::invalid(
            "older_than_years",
            "records are kept at least 5 years",
        ));
    }
    Ok(())
}

/// The audit event of a purge (`after`: what was removed).
pub fn purged(actor: &str, older_than_years: u32, after: Value) -> NewAuditEvent {
    let reason =
        format!("retention: records of incidents closed more than {older_than_years} years ago");
    NewAuditEvent::new(actor, "retention.purge", "retention/purge".into(), None)
        .after(after)
        .reason(Some(&reason))
}

/// May the records of an incident be purged at `cutoff`? Only once closed before it, and
/// while no containment action of it is still stored as active.
pub fn purge_eligible(
    phase: Phase,
    closed_at: Option<i64>,
    has_active_action: bool,
    cutoff: i64,
) -> bool {
    phase == Phase::Closed && closed_at.is_some_and(|t| t < cutoff) && !has_active_action
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::facts::IncidentFacts;
    use crate::domain::incident::Severity;

    const NOW: i64 = 1_700_000_000_000;

    fn incident(facts: IncidentFacts) -> IncidentRecord {
        IncidentRecord {
            id: 4,
            title: "t".into(),
            summary: String::new(),
            severity: Severity::P1,
            phase: Phase::Containment,
            assignee: None,
            detected_at: NOW - 100,
            reported_at: NOW - 90,
            systems: vec![],
            personal_data: true,
            created_at: NOW - 90,
            created_by: "alice".into(),
            updated_at: NOW - 90,
            closed_at: None,
            health_data: false,
            aware_at: Some(NOW - 80),
            resolved_at: None,
            next_update_at: None,
            facts,
        }
    }

    fn notification(audience: Audience, kind: NotificationKind) -> NewNotification {
        NewNotification {
            incident_id: 4,
            audience,
            kind,
            notified_at: NOW - 5,
            notified_by: "dpo".into(),
            channel: "portal".into(),
            reference: Some("R-1".into()),
            note: None,
            dpo_contact: Some("dpo@example.com".into()),
        }
    }

    fn postmortem(root: &str) -> PostMortem {
        PostMortem {
            lessons_learned: "l".into(),
            root_cause: root.into(),
            attack_vectors: vec!["phishing".into()],
            data_impact: "none".into(),
            follow_ups: vec![],
            policy_changes: String::new(),
        }
    }

    fn pm_record(root: &str) -> PostMortemRecord {
        PostMortemRecord {
            incident_id: 4,
            content: postmortem(root),
            submitted_at: NOW - 10,
            submitted_by: "alice".into(),
            updated_at: NOW,
            updated_by: "bob".into(),
        }
    }

    #[test]
    fn a_breach_notification_needs_the_facts() {
        let n = notification(Audience::Authority, NotificationKind::Notification);
        match check_notification(&incident(IncidentFacts::default()), &n) {
            Err(CoreError::MissingFacts(m)) => assert!(!m.is_empty()),
            other => panic!("expected missing facts, got {other:?}"),
        }
        // Staff are not told breach facts: nothing is needed, nothing is kept.
        let staff = notification(Audience::Staff, NotificationKind::InternalAlert);
        assert_eq!(
            check_notification(&incident(IncidentFacts::default()), &staff).unwrap(),
            None
        );
    }

    #[test]
    fn a_recorded_notification_is_audited_and_on_the_timeline() {
        let n = notification(Audience::Authority, NotificationKind::HipaaNotice);
        let rec = NotificationRecord {
            id: 2,
            incident_id: 4,
            audience: n.audience,
            kind: n.kind,
            notified_at: n.notified_at,
            notified_by: n.notified_by.clone(),
            channel: n.channel.clone(),
            reference: n.reference.clone(),
            note: None,
            facts: None,
            recorded_at: NOW,
            recorded_by: "alice".into(),
        };
        let w = notification_recorded(&rec, &n, "alice", NOW).unwrap();
        assert_eq!(w.audit[0].verb, "notification.record");
        assert_eq!(w.audit[0].object, "notification/2");
        let t = &w.timeline[0];
        assert_eq!(t.kind, "notification_recorded");
        assert!(
            t.message
                .starts_with("authority sent the hipaa notice via portal by dpo at "),
            "{}",
            t.message
        );
        assert!(t.message.ends_with(", ref R-1"));
    }

    #[test]
    fn a_postmortem_is_submitted_then_revised() {
        let pm = postmortem("phished\nmore");
        assert!(postmortem_changes(None, &pm));
        let first = pm_record("phished\nmore");
        assert!(!postmortem_changes(Some(&first), &pm));
        assert!(postmortem_changes(Some(&first), &postmortem("other")));
        let w = postmortem_written(None, &first, "alice", NOW).unwrap();
        assert_eq!(w.audit[0].verb, "postmortem.submit");
        assert!(w.audit[0].before.is_none());
        assert_eq!(w.timeline[0].kind, "postmortem_submitted");
        assert_eq!(
            w.timeline[0].message,
            "post-mortem submitted: 0 follow-up item(s); root cause: phished"
        );
        let w = postmortem_written(Some(&first), &pm_record("other"), "bob", NOW).unwrap();
        assert_eq!(w.audit[0].verb, "postmortem.update");
        assert!(w.audit[0].before.is_some());
        assert_eq!(w.timeline[0].kind, "postmortem_updated");
    }

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

    #[test]
    fn deadline_inputs_take_the_earliest_notification() {
        let rows = DeadlineRows {
            incidents: vec![incident(IncidentFacts::default())],
            phase_entries: vec![
                (4, NOW - 50, "phase containment → closed".into(), None),
                (9, NOW, "x".into(), None),
            ],
            first_notifications: vec![
                (4, "authority".into(), "notification".into(), NOW - 20),
                (4, "staff".into(), "preliminary_report".into(), NOW - 30),
                (4, "customers".into(), "notification".into(), NOW - 40),
            ],
            postmortems: vec![(4, NOW - 1)],
        };
        let out = deadline_inputs(rows);
        assert_eq!(out.len(), 1);
        let f = &out[0].facts;
        assert_eq!(
            f.phase_moves,
            vec![(NOW - 50, Phase::Containment, Phase::Closed)]
        );
        assert_eq!(f.authority_notified_at, Some(NOW - 20));
        assert_eq!(f.preliminary_report_at, Some(NOW - 30));
        assert_eq!(f.hipaa_notice_at, None);
        assert_eq!(f.postmortem_at, Some(NOW - 1));
    }

    #[test]
    fn purges_keep_five_years() {
        assert!(check_purge(4).is_err());
        assert!(check_purge(5).is_ok());
        let e = purged("ops", 7, json!({"incidents": []}));
        assert_eq!(e.verb, "retention.purge");
        assert_eq!(
            e.reason.as_deref(),
            Some("retention: records of incidents closed more than 7 years ago")
        );
    }

    #[test]
    fn only_incidents_closed_before_the_cutoff_without_live_actions_are_purged() {
        assert!(purge_eligible(Phase::Closed, Some(NOW - 1), false, NOW));
        assert!(!purge_eligible(Phase::Closed, Some(NOW), false, NOW));
        assert!(!purge_eligible(Phase::Closed, None, false, NOW));
        assert!(!purge_eligible(Phase::Closed, Some(NOW - 1), true, NOW));
        assert!(!purge_eligible(
            Phase::PostIncident,
            Some(NOW - 1),
            false,
            NOW
        ));
    }
}
