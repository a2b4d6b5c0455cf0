//! What opening and changing an incident does: the new row values, the timeline entries
//! and the audit event. Pure: the store loads the incident (and whether its post-mortem
//! exists), calls these and writes what they return in one transaction.

use serde_json::json;

use super::action::ActionKind;
use super::audit::NewAuditEvent;
use super::effects::{NewTimelineEntry, Writes};
use super::incident::{check_phase_move, IncidentChange, LiveContainment, Phase};
use super::records::{ActionRecord, IncidentRecord};
use super::{CoreError, CoreResult};

/// An accepted change: the row as it must be written, and what goes with it.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentUpdate {
    pub after: IncidentRecord,
    pub writes: Writes,
    /// Live actions to lift in the same transaction (closing with `lift_all`), with the
    /// change's reason.
    pub lift: Vec<ActionRecord>,
}

/// `a` as a responder reads it in a refusal: `action 7 (block cidr 203.0.113.7/32)`.
fn describe(a: &ActionRecord) -> String {
    let what = match a.kind {
        ActionKind::Isolate => a
            .isolation
            .map(|i| i.as_str().to_string())
            .unwrap_or_else(|| "isolate".into()),
        k => k.as_str().to_string(),
    };
    format!(
        "action {} ({what} {} {})",
        a.id, a.target.ty, a.target.value
    )
}

/// What goes with a newly stored incident `rec`.
pub fn opened(rec: &IncidentRecord, actor: &str, now: i64) -> CoreResult<Writes> {
    let id = rec.id;
    let event = NewAuditEvent::new(actor, "incident.create", format!("incident/{id}"), Some(id))
        .after(serde_json::to_value(rec)?);
    let msg = format!("incident opened: {} ({})", rec.title, rec.severity);
    Ok(Writes {
        timeline: vec![NewTimelineEntry::new(id, now, actor, "created", msg)],
        audit: vec![event],
    })
}

/// Apply `change` to `before`. `None` when nothing changes (nothing is written).
///
/// Refused: a phase move [`check_phase_move`] refuses, and closing an incident with
/// personal or health data before its post-mortem is submitted (`has_postmortem`).
/// Entering post-incident activity (or closing) from an earlier phase sets `resolved_at`;
/// moving back before it clears it. Turning personal or health data on for an incident
/// never aware of a breach makes it aware from `now`.
pub fn update(
    before: &IncidentRecord,
    change: &IncidentChange,
    has_postmortem: bool,
    live: &[ActionRecord],
    actor: &str,
    now: i64,
) -> CoreResult<Option<IncidentUpdate>> {
    let reason = change.reason.as_deref();
    let mut after = before.clone();
    let mut entries: Vec<(&str, String, Option<serde_json::Value>)> = Vec::new();
    let mut lift = Vec::new();
    let closing = change.phase == Some(Phase::Closed) && before.phase != Phase::Closed;
    if closing && !live.is_empty() {
        let ids: Vec<i64> = live.iter().map(|a| a.id).collect();
        let named = live.iter().map(describe).collect::<Vec<_>>().join(", ");
        match change.live_containment {
            None => {
                return Err(CoreError::conflict(
                    "phase",
                    format!(
                        "containment is still live: {named}; lift it first, or close with \
                         lift_all (lifts them now) or keep_containment (keeps them enforced), \
                         each with a reason"
                    ),
                ))
            }
            Some(LiveContainment::Keep) => entries.push((
                "containment_kept",
                format!("closed with containment kept on purpose: {named}"),
                Some(json!({"actions": ids})),
            )),
            Some(LiveContainment::LiftAll) => lift = live.to_vec(),
        }
    }
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
    if after.phase == Phase::Closed && before.phase != Phase::Closed && sensitive && !has_postmortem
    {
        return Err(CoreError::conflict(
            "postmortem",
            "an incident with personal or health data cannot be closed before its post-mortem is submitted (PUT /v1/incidents/{id}/postmortem)",
        ));
    }
    if entries.is_empty() {
        return Ok(None);
    }
    after.updated_at = now;
    let id = before.id;
    let timeline = entries
        .into_iter()
        .map(|(kind, msg, data)| {
            let e = NewTimelineEntry::new(id, now, actor, kind, msg).reason(reason);
            match data {
                Some(d) => e.data(d),
                None => e,
            }
        })
        .collect();
    let event = NewAuditEvent::new(actor, "incident.update", format!("incident/{id}"), Some(id))
        .before(serde_json::to_value(before)?)
        .after(serde_json::to_value(&after)?)
        .reason(reason);
    Ok(Some(IncidentUpdate {
        lift,
        after,
        writes: Writes {
            timeline,
            audit: vec![event],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::incident::Severity;

    const NOW: i64 = 1_700_000_000_000;

    fn incident() -> IncidentRecord {
        IncidentRecord {
            title: "leak".into(),
            summary: "s".into(),
            severity: Severity::P2,
            phase: Phase::Containment,
            detected_at: NOW - 10_000,
            reported_at: NOW - 9_000,
            created_at: NOW - 9_000,
            updated_at: NOW - 9_000,
            ..crate::domain::fixtures::incident(7)
        }
    }

    fn apply(
        before: &IncidentRecord,
        change: IncidentChange,
        pm: bool,
    ) -> CoreResult<Option<IncidentUpdate>> {
        update(before, &change, pm, &[], "bob", NOW)
    }

    fn kinds(u: &IncidentUpdate) -> Vec<&str> {
        u.writes.timeline.iter().map(|t| t.kind.as_str()).collect()
    }

    #[test]
    fn opening_records_audit_and_timeline() {
        let w = opened(&incident(), "alice", NOW).unwrap();
        assert_eq!(w.audit.len(), 1);
        assert_eq!(w.audit[0].verb, "incident.create");
        assert_eq!(w.audit[0].object, "incident/7");
        assert!(w.audit[0].before.is_none() && w.audit[0].after.is_some());
        assert_eq!(w.timeline[0].kind, "created");
        assert_eq!(w.timeline[0].message, "incident opened: leak (P2)");
    }

    #[test]
    fn no_change_writes_nothing() {
        let same = IncidentChange {
            severity: Some(Severity::P2),
            phase: Some(Phase::Containment),
            ..IncidentChange::default()
        };
        assert_eq!(apply(&incident(), same, false).unwrap(), None);
    }

    #[test]
    fn severity_change_is_audited_with_before_and_after() {
        let c = IncidentChange {
            severity: Some(Severity::P0),
            reason: Some("worse".into()),
            ..IncidentChange::default()
        };
        let u = apply(&incident(), c, false).unwrap().unwrap();
        assert_eq!(u.after.severity, Severity::P0);
        assert_eq!(u.after.updated_at, NOW);
        assert_eq!(kinds(&u), ["severity_changed"]);
        assert_eq!(u.writes.timeline[0].message, "severity P2 → P0");
        assert_eq!(u.writes.timeline[0].reason.as_deref(), Some("worse"));
        let e = &u.writes.audit[0];
        assert_eq!(
            (e.verb.as_str(), e.reason.as_deref()),
            ("incident.update", Some("worse"))
        );
        assert_eq!(e.before.as_ref().unwrap()["severity"], "P2");
        assert_eq!(e.after.as_ref().unwrap()["severity"], "P0");
    }

    #[test]
    fn resolving_sets_and_reopening_clears_resolved_at() {
        let c = IncidentChange {
            phase: Some(Phase::PostIncident),
            ..IncidentChange::default()
        };
        let u = apply(&incident(), c, false).unwrap().unwrap();
        assert_eq!(u.after.resolved_at, Some(NOW));
        assert_eq!(u.after.closed_at, None);
        assert_eq!(kinds(&u), ["phase_changed"]);
        assert_eq!(
            u.writes.timeline[0].data,
            Some(json!({"from": "containment", "to": "post_incident"}))
        );
        // Closing a resolved incident keeps when it was resolved.
        let mut resolved = u.after.clone();
        resolved.resolved_at = Some(NOW - 5);
        let c = IncidentChange {
            phase: Some(Phase::Closed),
            ..IncidentChange::default()
        };
        let closed = apply(&resolved, c, false).unwrap().unwrap().after;
        assert_eq!(
            (closed.closed_at, closed.resolved_at),
            (Some(NOW), Some(NOW - 5))
        );
        // Moving back needs a reason, and clears both.
        let back = IncidentChange {
            phase: Some(Phase::Containment),
            ..IncidentChange::default()
        };
        assert!(matches!(
            apply(&closed, back.clone(), false),
            Err(CoreError::Invalid { .. })
        ));
        let back = IncidentChange {
            reason: Some("not over".into()),
            ..back
        };
        let reopened = apply(&closed, back, false).unwrap().unwrap().after;
        assert_eq!((reopened.closed_at, reopened.resolved_at), (None, None));
    }

    #[test]
    fn closing_from_an_early_phase_resolves_too() {
        let c = IncidentChange {
            phase: Some(Phase::Closed),
            ..IncidentChange::default()
        };
        let u = apply(&incident(), c, false).unwrap().unwrap();
        assert_eq!(
            (u.after.closed_at, u.after.resolved_at),
            (Some(NOW), Some(NOW))
        );
    }

    #[test]
    fn personal_data_makes_the_incident_aware_once() {
        let c = IncidentChange {
            personal_data: Some(true),
            ..IncidentChange::default()
        };
        let u = apply(&incident(), c.clone(), false).unwrap().unwrap();
        assert_eq!(u.after.aware_at, Some(NOW));
        assert_eq!(kinds(&u), ["data_flags_changed", "aware_at_changed"]);
        assert_eq!(
            u.writes.timeline[0].message,
            "personal data involved: no → yes"
        );
        // Already aware: the earlier time stays.
        let mut aware = incident();
        aware.aware_at = Some(NOW - 100);
        let u = apply(&aware, c, false).unwrap().unwrap();
        assert_eq!(u.after.aware_at, Some(NOW - 100));
        assert_eq!(kinds(&u), ["data_flags_changed"]);
        // A time given wins.
        let c = IncidentChange {
            health_data: Some(true),
            aware_at_ms: Some(NOW - 50),
            ..IncidentChange::default()
        };
        let u = apply(&incident(), c, false).unwrap().unwrap();
        assert_eq!(u.after.aware_at, Some(NOW - 50));
        assert_eq!(kinds(&u), ["data_flags_changed", "aware_at_changed"]);
    }

    #[test]
    fn closing_with_personal_data_needs_the_postmortem() {
        let mut sensitive = incident();
        sensitive.personal_data = true;
        sensitive.aware_at = Some(NOW - 1);
        let close = IncidentChange {
            phase: Some(Phase::Closed),
            ..IncidentChange::default()
        };
        match apply(&sensitive, close.clone(), false) {
            Err(CoreError::Conflict { field, .. }) => assert_eq!(field, "postmortem"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(apply(&sensitive, close.clone(), true).unwrap().is_some());
        // Health data counts too; without either, no post-mortem is needed.
        let mut health = incident();
        health.health_data = true;
        health.aware_at = Some(NOW - 1);
        assert!(apply(&health, close.clone(), false).is_err());
        assert!(apply(&incident(), close, false).unwrap().is_some());
    }

    #[test]
    fn facts_and_assignee_changes_are_listed() {
        let c = IncidentChange {
            assignee: Some(Some("carol".into())),
            summary: Some("new".into()),
            next_update_at_ms: Some(NOW + 1),
            ..IncidentChange::default()
        };
        let u = apply(&incident(), c, false).unwrap().unwrap();
        assert_eq!(kinds(&u), ["assignee_changed", "facts_changed"]);
        assert_eq!(u.writes.timeline[0].message, "assignee nobody → carol");
        assert_eq!(
            u.writes.timeline[1].message,
            "facts updated: summary, next_update_at"
        );
        assert_eq!(u.after.assignee.as_deref(), Some("carol"));
    }

    fn live_block(id: i64, cidr: &str) -> ActionRecord {
        ActionRecord {
            target: crate::domain::action::StoredTarget {
                ty: "cidr",
                value: cidr.into(),
            },
            ..crate::domain::fixtures::action(id, 7)
        }
    }

    fn close(live: Option<LiveContainment>, reason: Option<&str>) -> IncidentChange {
        IncidentChange {
            phase: Some(Phase::Closed),
            reason: reason.map(str::to_string),
            live_containment: live,
            ..IncidentChange::default()
        }
    }

    #[test]
    fn closing_with_live_containment_is_refused_naming_every_action() {
        let live = [
            live_block(3, "203.0.113.7/32"),
            live_block(5, "198.51.100.0/24"),
        ];
        let e = update(&incident(), &close(None, None), false, &live, "bob", NOW).unwrap_err();
        let CoreError::Conflict { field, message } = e else {
            panic!("{e:?}")
        };
        assert_eq!(field, "phase");
        assert!(
            message.contains("action 3 (block cidr 203.0.113.7/32)"),
            "{message}"
        );
        assert!(
            message.contains("action 5 (block cidr 198.51.100.0/24)"),
            "{message}"
        );
        // Without live containment, closing needs nothing more.
        let u = update(&incident(), &close(None, None), false, &[], "bob", NOW).unwrap();
        assert!(u.unwrap().lift.is_empty());
    }

    #[test]
    fn closing_keeping_containment_records_it_and_lift_all_lifts_it() {
        let live = [live_block(3, "203.0.113.7/32")];
        let keep = close(Some(LiveContainment::Keep), Some("still under attack"));
        let u = update(&incident(), &keep, false, &live, "bob", NOW)
            .unwrap()
            .unwrap();
        assert!(u.lift.is_empty());
        assert_eq!(kinds(&u), ["containment_kept", "phase_changed"]);
        let kept = &u.writes.timeline[0];
        assert_eq!(kept.reason.as_deref(), Some("still under attack"));
        assert_eq!(kept.data, Some(json!({"actions": [3]})));
        let lift = close(Some(LiveContainment::LiftAll), Some("over"));
        let u = update(&incident(), &lift, false, &live, "bob", NOW)
            .unwrap()
            .unwrap();
        assert_eq!(u.lift, live.to_vec());
        assert_eq!(u.after.phase, Phase::Closed);
    }
}
