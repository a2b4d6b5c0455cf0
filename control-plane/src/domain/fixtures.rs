//! Records for the domain's unit tests.

use edge_policy::Mode;

use super::action::{ActionKind, StoredTarget};
use super::facts::IncidentFacts;
use super::incident::{Phase, Severity};
use super::records::{ActionRecord, ActionStatus, IncidentRecord};

pub const NOW: i64 = 1_700_000_000_000;

/// An open incident `id` (phase `detection_analysis`).
pub fn incident(id: i64) -> IncidentRecord {
    IncidentRecord {
        id,
        title: "t".into(),
        summary: String::new(),
        severity: Severity::P1,
        phase: Phase::DetectionAnalysis,
        assignee: None,
        detected_at: NOW,
        reported_at: NOW,
        systems: vec![],
        personal_data: false,
        created_at: NOW,
        created_by: "alice".into(),
        updated_at: NOW,
        closed_at: None,
        health_data: false,
        aware_at: None,
        resolved_at: None,
        next_update_at: None,
        facts: IncidentFacts::default(),
    }
}

/// An active, enforced block of `203.0.113.0/24`, without expiry, filed under `incident_id`.
pub fn action(id: i64, incident_id: i64) -> ActionRecord {
    ActionRecord {
        id,
        incident_id,
        kind: ActionKind::Block,
        target: StoredTarget {
            ty: "cidr",
            value: "203.0.113.0/24".into(),
        },
        isolation: None,
        mode: Mode::Enforce,
        reason: "r".into(),
        forced: false,
        created_at: NOW - 1000,
        created_by: "alice".into(),
        created_version: 4,
        expires_at: None,
        state: ActionStatus::Active,
        ended_at: None,
        ended_by: None,
        end_reason: None,
        ended_version: None,
    }
}
