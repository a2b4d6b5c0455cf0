//! Filing an action under the right incident without lifting it: **move** (the action now
//! belongs to another incident) or **link** (it also shows on another incident). Either is
//! recorded on both incidents' timelines and in the audit log; neither ends containment.

use serde_json::json;

use super::audit::NewAuditEvent;
use super::containment::describe;
use super::effects::{NewTimelineEntry, Writes};
use super::incident::Phase;
use super::records::{ActionRecord, IncidentRecord};
use super::{CoreError, CoreResult};

/// May `action` be moved or linked to `to`? `links` are the incidents it is linked to now.
pub fn check(
    action: &ActionRecord,
    to: &IncidentRecord,
    links: &[i64],
    link: bool,
) -> CoreResult<()> {
    if to.phase == Phase::Closed {
        return Err(CoreError::conflict(
            "incident_id",
            format!(
                "incident {} is closed; reopen it or choose an open incident",
                to.id
            ),
        ));
    }
    if to.id == action.incident_id {
        return Err(CoreError::conflict(
            "incident_id",
            format!(
                "action {} is already filed under incident {}",
                action.id, to.id
            ),
        ));
    }
    if link && links.contains(&to.id) {
        return Err(CoreError::conflict(
            "incident_id",
            format!(
                "action {} is already linked to incident {}",
                action.id, to.id
            ),
        ));
    }
    Ok(())
}

/// `before` moved to incident `to` by `actor`: the row to write and what goes with it. A
/// link to `to`, if any, is dropped by the store (the action now belongs there).
pub fn moved(
    before: &ActionRecord,
    to: i64,
    actor: &str,
    reason: &str,
    now: i64,
) -> (ActionRecord, Writes) {
    let from = before.incident_id;
    let after = ActionRecord {
        incident_id: to,
        ..before.clone()
    };
    let data = json!({"action_id": before.id, "from_incident": from, "to_incident": to});
    let out = NewTimelineEntry::new(
        from,
        now,
        actor,
        "action_moved",
        format!("moved {} to incident {to}", describe(before)),
    )
    .reason(Some(reason))
    .data(data.clone());
    let inn = NewTimelineEntry::new(
        to,
        now,
        actor,
        "action_moved",
        format!("moved {} here from incident {from}", describe(&after)),
    )
    .reason(Some(reason))
    .data(data);
    let event = NewAuditEvent::new(
        actor,
        "action.move",
        format!("action/{}", before.id),
        Some(to),
    )
    .before(before.audit_json())
    .after(after.audit_json())
    .reason(Some(reason));
    (
        after,
        Writes {
            timeline: vec![out, inn],
            audit: vec![event],
        },
    )
}

/// `action` linked to incident `to` by `actor`.
pub fn linked(action: &ActionRecord, to: i64, actor: &str, reason: &str, now: i64) -> Writes {
    let owner = action.incident_id;
    let data = json!({"action_id": action.id, "incident": owner, "linked_incident": to});
    let on_owner = NewTimelineEntry::new(
        owner,
        now,
        actor,
        "action_linked",
        format!("linked {} to incident {to}", describe(action)),
    )
    .reason(Some(reason))
    .data(data.clone());
    let on_linked = NewTimelineEntry::new(
        to,
        now,
        actor,
        "action_linked",
        format!(
            "linked {} (of incident {owner}) to this incident",
            describe(action)
        ),
    )
    .reason(Some(reason))
    .data(data.clone());
    let event = NewAuditEvent::new(
        actor,
        "action.link",
        format!("action/{}", action.id),
        Some(to),
    )
    .after(data)
    .reason(Some(reason));
    Writes {
        timeline: vec![on_owner, on_linked],
        audit: vec![event],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::{action, incident};

    #[test]
    fn refusals_name_the_incident_field() {
        let a = action(1, 10);
        let mut closed = incident(20);
        closed.phase = Phase::Closed;
        for (to, links, link) in [
            (closed, vec![], false),
            (incident(10), vec![], false),
            (incident(20), vec![20], true),
        ] {
            match check(&a, &to, &links, link) {
                Err(CoreError::Conflict { field, .. }) => assert_eq!(field, "incident_id"),
                other => panic!("{other:?}"),
            }
        }
        assert!(check(&a, &incident(20), &[30], true).is_ok());
        assert!(check(&a, &incident(20), &[20], false).is_ok());
    }

    #[test]
    fn a_move_is_on_both_timelines_and_audited_with_before_and_after() {
        let a = action(1, 10);
        let (after, w) = moved(&a, 20, "alice", "wrong incident", 5);
        assert_eq!(after.incident_id, 20);
        assert_eq!(after.state, a.state);
        let on: Vec<i64> = w.timeline.iter().map(|t| t.incident_id).collect();
        assert_eq!(on, [10, 20]);
        assert_eq!(w.audit[0].verb, "action.move");
        assert_eq!(w.audit[0].before.as_ref().unwrap()["incident_id"], 10);
        assert_eq!(w.audit[0].after.as_ref().unwrap()["incident_id"], 20);
        let w = linked(&a, 30, "alice", "same source", 6);
        let on: Vec<i64> = w.timeline.iter().map(|t| t.incident_id).collect();
        assert_eq!(on, [10, 30]);
        assert_eq!(w.audit[0].verb, "action.link");
    }
}
