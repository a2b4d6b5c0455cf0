//! What the edge sync endpoint answers for `since`: a delta or a snapshot, built from the
//! actions a store loaded. Pure: the store reads the version, its delta floor and the
//! actions in one read transaction.

use edge_policy::{Delta, Snapshot, Version};

use super::records::{ActionRecord, ActionStatus};
use super::CoreResult;

/// May the answer to an edge at `since` be a delta to `current`? Only when `0 < since <
/// current` and `since` is not before `floor` (the version of the last purge: deltas from
/// before it could miss removals).
pub fn answers_with_delta(since: Version, current: Version, floor: Version) -> bool {
    since > 0 && since < current && since >= floor
}

/// The delta from `since` to `current`, from every action a version after `since` changed:
/// active ones are upserted, the others removed.
pub fn delta(since: Version, current: Version, changed: &[ActionRecord]) -> CoreResult<Delta> {
    let mut d = Delta {
        since,
        version: current,
        upserts: Vec::new(),
        removed: Vec::new(),
    };
    for a in changed {
        if a.state == ActionStatus::Active {
            d.upserts.push(a.rule()?);
        } else {
            d.removed.push(a.id as u64);
        }
    }
    Ok(d)
}

/// The whole policy at `current`: the rules of the actions stored as active (the edge stops
/// matching a rule at its expiry by itself).
pub fn snapshot(current: Version, active: &[ActionRecord]) -> CoreResult<Snapshot> {
    Ok(Snapshot {
        version: current,
        rules: active
            .iter()
            .map(ActionRecord::rule)
            .collect::<CoreResult<_>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::action::{ActionKind, StoredTarget};
    use edge_policy::Mode;

    fn action(id: i64, state: ActionStatus) -> ActionRecord {
        ActionRecord {
            id,
            incident_id: 1,
            kind: ActionKind::Block,
            target: StoredTarget {
                ty: "cidr",
                value: "10.0.0.0/24".into(),
            },
            isolation: None,
            mode: Mode::Enforce,
            reason: "r".into(),
            forced: false,
            created_at: 0,
            created_by: "a".into(),
            created_version: 1,
            expires_at: None,
            state,
            ended_at: None,
            ended_by: None,
            end_reason: None,
            ended_version: None,
        }
    }

    #[test]
    fn deltas_only_between_the_floor_and_the_current_version() {
        assert!(answers_with_delta(3, 5, 0));
        assert!(answers_with_delta(3, 5, 3));
        assert!(!answers_with_delta(0, 5, 0), "nothing held yet");
        assert!(!answers_with_delta(5, 5, 0), "current");
        assert!(!answers_with_delta(6, 5, 0), "ahead");
        assert!(!answers_with_delta(2, 5, 3), "before a purge");
    }

    #[test]
    fn active_actions_are_upserted_ended_ones_removed() {
        let changed = [
            action(1, ActionStatus::Active),
            action(2, ActionStatus::Lifted),
            action(3, ActionStatus::Expired),
        ];
        let d = delta(3, 5, &changed).unwrap();
        assert_eq!((d.since, d.version), (3, 5));
        assert_eq!(d.upserts.len(), 1);
        assert_eq!(d.upserts[0].id, 1);
        assert_eq!(d.removed, vec![2, 3]);
        let s = snapshot(5, &changed[..1]).unwrap();
        assert_eq!((s.version, s.rules.len()), (5, 1));
    }
}
