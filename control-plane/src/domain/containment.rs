//! What creating, lifting and expiring a containment action does: the refusals, the row
//! values and what goes with them (timeline entries, audit events). Pure: the store loads
//! the incident and the candidate actions, bumps the policy version and writes what these
//! return, all in one transaction.

use serde_json::json;

use super::action::{check_conflicts, target_key, ActionKind, ActiveTarget, GuardRails, NewAction};
use super::audit::NewAuditEvent;
use super::effects::{NewTimelineEntry, Writes};
use super::incident::Phase;
use super::records::{ActionRecord, ActionStatus, IncidentRecord};
use super::{CoreError, CoreResult};
use crate::clock::rfc3339;

/// Actor name of changes the control plane makes by itself (expiry).
pub const SYSTEM_ACTOR: &str = "system";

/// One line naming an action for the timeline.
pub fn describe(a: &ActionRecord) -> String {
    let what = match a.kind {
        ActionKind::Isolate => format!(
            "isolate {} {} ({})",
            a.target.ty,
            a.target.value,
            a.isolation.map(|i| i.as_str()).unwrap_or("?")
        ),
        k => format!("{} {} {}", k.as_str(), a.target.ty, a.target.value),
    };
    let expiry = a
        .expires_at
        .map(|t| format!(", expires {}", rfc3339(t)))
        .unwrap_or_default();
    format!("action {}: {what} [{}]{expiry}", a.id, a.mode.as_str())
}

/// May `new` be created on `incident`? Refused on a closed incident, and by
/// [`check_conflicts`] against the actions of `candidates` still active at `now` (a store
/// may pass every action; passing only those with the same target key and the allows is
/// enough).
pub fn check_create(
    incident: &IncidentRecord,
    new: &NewAction,
    candidates: &[ActionRecord],
    rails: GuardRails,
    now: i64,
) -> CoreResult<()> {
    if incident.phase == Phase::Closed {
        return Err(CoreError::conflict(
            "incident",
            format!("incident {} is closed", incident.id),
        ));
    }
    let key = new.target_key();
    let live: Vec<ActiveTarget> = candidates
        .iter()
        .filter(|a| a.status(now) == ActionStatus::Active)
        .filter(|a| a.kind == ActionKind::Allow || target_key(a.kind, &a.target) == key)
        .map(|a| ActiveTarget {
            id: a.id,
            kind: a.kind,
            target: a.target.clone(),
        })
        .collect();
    check_conflicts(new, &live, rails)
}

/// What goes with the stored action `rec`, created from `new` in policy `version`.
pub fn created(rec: &ActionRecord, new: &NewAction, version: i64, actor: &str) -> Writes {
    let id = rec.id;
    let event = NewAuditEvent::new(
        actor,
        "action.create",
        format!("action/{id}"),
        Some(rec.incident_id),
    )
    .after(rec.audit_json())
    .reason(Some(&new.reason));
    let data = json!({"action_id": id, "policy_version": version, "forced": new.force, "warnings": new.warnings});
    let entry = NewTimelineEntry::new(
        rec.incident_id,
        rec.created_at,
        actor,
        "action_created",
        format!("created {}", describe(rec)),
    )
    .reason(Some(&new.reason))
    .data(data);
    Writes {
        timeline: vec![entry],
        audit: vec![event],
    }
}

/// May `before` be lifted at `now`? Only while active (not lifted, not past its expiry).
pub fn check_lift(before: &ActionRecord, now: i64) -> CoreResult<()> {
    let status = before.status(now);
    if status != ActionStatus::Active {
        return Err(CoreError::conflict(
            "status",
            format!("action {} is already {}", before.id, status.as_str()),
        ));
    }
    Ok(())
}

/// `before` lifted by `actor` in policy `version`: the row to write and what goes with it.
pub fn lifted(
    before: &ActionRecord,
    actor: &str,
    reason: &str,
    version: i64,
    now: i64,
) -> (ActionRecord, Writes) {
    let after = ActionRecord {
        state: ActionStatus::Lifted,
        ended_at: Some(now),
        ended_by: Some(actor.to_string()),
        end_reason: Some(reason.to_string()),
        ended_version: Some(version),
        ..before.clone()
    };
    let writes = ended(
        before,
        &after,
        actor,
        "lift",
        "lifted",
        Some(reason),
        version,
        now,
    );
    (after, writes)
}

/// Is `a` due to be recorded as expired at `now`?
pub fn is_due(a: &ActionRecord, now: i64) -> bool {
    a.state == ActionStatus::Active && a.expires_at.is_some_and(|t| t <= now)
}

/// `before` (due, see [`is_due`]) expired, recorded at `now` in policy `version`: it ended
/// at its expiry time.
pub fn expired(before: &ActionRecord, version: i64, now: i64) -> (ActionRecord, Writes) {
    let after = ActionRecord {
        state: ActionStatus::Expired,
        ended_at: Some(before.expires_at.unwrap_or(now)),
        ended_by: Some(SYSTEM_ACTOR.to_string()),
        end_reason: Some("expired".to_string()),
        ended_version: Some(version),
        ..before.clone()
    };
    let mut writes = ended(
        before,
        &after,
        SYSTEM_ACTOR,
        "expire",
        "expired",
        Some("expired"),
        version,
        now,
    );
    // The timeline entry of an expiry carries no reason (the audit event does).
    writes.timeline[0].reason = None;
    (after, writes)
}

#[allow(clippy::too_many_arguments)]
fn ended(
    before: &ActionRecord,
    after: &ActionRecord,
    actor: &str,
    verb: &str,
    done: &str,
    reason: Option<&str>,
    version: i64,
    now: i64,
) -> Writes {
    let event = NewAuditEvent::new(
        actor,
        &format!("action.{verb}"),
        format!("action/{}", after.id),
        Some(after.incident_id),
    )
    .before(before.audit_json())
    .after(after.audit_json())
    .reason(reason);
    let entry = NewTimelineEntry::new(
        after.incident_id,
        now,
        actor,
        &format!("action_{done}"),
        format!("{done} {}", describe(after)),
    )
    .reason(reason)
    .data(json!({"action_id": after.id, "policy_version": version}));
    Writes {
        timeline: vec![entry],
        audit: vec![event],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::action::StoredTarget;
    use edge_policy::Mode;

    const NOW: i64 = 1_700_000_000_000;

    fn incident(phase: Phase) -> IncidentRecord {
        IncidentRecord {
            phase,
            ..crate::domain::fixtures::incident(3)
        }
    }

    fn action(id: i64, kind: ActionKind, cidr: &str, expires_at: Option<i64>) -> ActionRecord {
        ActionRecord {
            kind,
            target: StoredTarget {
                ty: "cidr",
                value: cidr.into(),
            },
            expires_at,
            ..crate::domain::fixtures::action(id, 3)
        }
    }

    fn new_block(cidr: &str, force: bool) -> NewAction {
        NewAction {
            incident_id: 3,
            kind: ActionKind::Block,
            target: StoredTarget {
                ty: "cidr",
                value: cidr.into(),
            },
            isolation: None,
            mode: Mode::Enforce,
            reason: "stop it".into(),
            expires_at_ms: None,
            force,
            warnings: vec![],
        }
    }

    fn check(phase: Phase, new: &NewAction, live: &[ActionRecord]) -> CoreResult<()> {
        check_create(&incident(phase), new, live, GuardRails::default(), NOW)
    }

    #[test]
    fn a_closed_incident_takes_no_action() {
        match check(Phase::Closed, &new_block("10.0.0.0/24", false), &[]) {
            Err(CoreError::Conflict { field, message }) => {
                assert_eq!(field, "incident");
                assert_eq!(message, "incident 3 is closed");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(check(Phase::PostIncident, &new_block("10.0.0.0/24", false), &[]).is_ok());
    }

    #[test]
    fn a_live_duplicate_conflicts_an_ended_one_does_not() {
        let new = new_block("10.0.0.0/24", true);
        let dup = action(9, ActionKind::Block, "10.0.0.0/24", None);
        match check(Phase::Containment, &new, std::slice::from_ref(&dup)) {
            Err(CoreError::Conflict { field, message }) => {
                assert_eq!(field, "target.cidr");
                assert!(message.contains("action 9 already blocks"), "{message}");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        let lifted = ActionRecord {
            state: ActionStatus::Lifted,
            ..dup.clone()
        };
        let past_expiry = action(9, ActionKind::Block, "10.0.0.0/24", Some(NOW));
        let other_target = action(9, ActionKind::Block, "10.0.1.0/24", None);
        for a in [lifted, past_expiry, other_target] {
            assert!(check(Phase::Containment, &new, &[a]).is_ok());
        }
    }

    #[test]
    fn guard_rails_and_allow_overlap_unless_forced() {
        let wide = new_block("10.0.0.0/4", false);
        assert!(matches!(
            check(Phase::Containment, &wide, &[]),
            Err(CoreError::GuardRail { .. })
        ));
        assert!(check(Phase::Containment, &new_block("10.0.0.0/4", true), &[]).is_ok());
        let allow = action(5, ActionKind::Allow, "10.0.0.0/16", None);
        assert!(check(
            Phase::Containment,
            &new_block("10.0.0.0/24", false),
            std::slice::from_ref(&allow)
        )
        .is_err());
        assert!(check(
            Phase::Containment,
            &new_block("10.0.0.0/24", true),
            &[allow]
        )
        .is_ok());
    }

    #[test]
    fn creation_is_audited_and_on_the_timeline() {
        let rec = action(12, ActionKind::Block, "10.0.0.0/24", Some(NOW + 60_000));
        let w = created(&rec, &new_block("10.0.0.0/24", false), 8, "alice");
        assert_eq!(w.audit[0].verb, "action.create");
        assert_eq!(w.audit[0].object, "action/12");
        assert_eq!(w.audit[0].reason.as_deref(), Some("stop it"));
        assert_eq!(w.audit[0].after, Some(rec.audit_json()));
        let t = &w.timeline[0];
        assert_eq!(
            (t.kind.as_str(), t.at, t.incident_id),
            ("action_created", rec.created_at, 3)
        );
        assert!(t
            .message
            .starts_with("created action 12: block cidr 10.0.0.0/24 [enforce], expires "));
        assert_eq!(t.data.as_ref().unwrap()["policy_version"], 8);
    }

    #[test]
    fn lifting_an_active_action() {
        let before = action(12, ActionKind::Block, "10.0.0.0/24", None);
        check_lift(&before, NOW).unwrap();
        let (after, w) = lifted(&before, "bob", "done", 9, NOW);
        assert_eq!(after.state, ActionStatus::Lifted);
        assert_eq!(
            (
                after.ended_at,
                after.ended_by.as_deref(),
                after.end_reason.as_deref(),
                after.ended_version
            ),
            (Some(NOW), Some("bob"), Some("done"), Some(9))
        );
        assert_eq!(w.audit[0].verb, "action.lift");
        assert_eq!(w.audit[0].before, Some(before.audit_json()));
        assert_eq!(w.timeline[0].kind, "action_lifted");
        assert_eq!(w.timeline[0].reason.as_deref(), Some("done"));
        assert_eq!(
            w.timeline[0].message,
            "lifted action 12: block cidr 10.0.0.0/24 [enforce]"
        );
    }

    #[test]
    fn a_lifted_or_expired_action_cannot_be_lifted() {
        let (gone, _) = lifted(
            &action(12, ActionKind::Block, "10.0.0.0/24", None),
            "bob",
            "x",
            9,
            NOW,
        );
        match check_lift(&gone, NOW + 1) {
            Err(CoreError::Conflict { field, message }) => {
                assert_eq!(field, "status");
                assert_eq!(message, "action 12 is already lifted");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        let due = action(13, ActionKind::Block, "10.0.0.0/24", Some(NOW));
        let err = check_lift(&due, NOW).unwrap_err().to_string();
        assert!(err.contains("already expired"), "{err}");
    }

    #[test]
    fn expiry_ends_at_the_expiry_time() {
        let fresh = action(14, ActionKind::Block, "10.0.0.0/24", Some(NOW + 1));
        let forever = action(15, ActionKind::Block, "10.0.0.0/24", None);
        assert!(!is_due(&fresh, NOW) && !is_due(&forever, NOW));
        assert!(is_due(&fresh, NOW + 1));
        let (after, w) = expired(&fresh, 10, NOW + 500);
        assert_eq!(after.state, ActionStatus::Expired);
        assert_eq!(after.ended_at, Some(NOW + 1));
        assert_eq!(after.ended_by.as_deref(), Some(SYSTEM_ACTOR));
        assert_eq!(after.end_reason.as_deref(), Some("expired"));
        assert_eq!(w.audit[0].actor, SYSTEM_ACTOR);
        assert_eq!(w.audit[0].verb, "action.expire");
        assert_eq!(w.audit[0].reason.as_deref(), Some("expired"));
        let t = &w.timeline[0];
        assert_eq!(
            (t.kind.as_str(), t.at, t.reason.as_deref()),
            ("action_expired", NOW + 500, None)
        );
        assert!(!is_due(&after, NOW + 500));
    }
}
