//! The stored shapes of incidents, their timelines, containment actions, notifications and
//! post-mortems, tokens: what a store loads and what the decisions of this module take and return.

use edge_policy::{Isolation, Mode, Rule};
use serde::Serialize;
use serde_json::{json, Value};

use super::action::{self, ActionKind, StoredTarget};
use super::deadline::DeadlineFacts;
use super::facts::IncidentFacts;
use super::incident::{Phase, Severity};
use super::notification::{Audience, NotificationKind};
use super::postmortem::PostMortem;
use super::token::Role;
use super::CoreResult;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncidentRecord {
    pub id: i64,
    pub title: String,
    pub summary: String,
    pub severity: Severity,
    pub phase: Phase,
    pub assignee: Option<String>,
    pub detected_at: i64,
    pub reported_at: i64,
    pub systems: Vec<String>,
    pub personal_data: bool,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    pub health_data: bool,
    /// When the company became aware of the personal-data breach.
    pub aware_at: Option<i64>,
    /// When the incident entered post-incident activity (or closed, if it skipped it).
    pub resolved_at: Option<i64>,
    pub next_update_at: Option<i64>,
    pub facts: IncidentFacts,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TimelineEntry {
    pub id: i64,
    pub incident_id: i64,
    pub at: i64,
    pub actor: String,
    pub kind: String,
    pub message: String,
    pub reason: Option<String>,
    pub data: Option<Value>,
}

/// Stored state of an action. `Active` actions whose expiry has passed are reported as
/// expired (see [`ActionRecord::status`]) until the expiry sweep records them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    Active,
    Lifted,
    Expired,
}

impl ActionStatus {
    pub const ALL: [ActionStatus; 3] = [
        ActionStatus::Active,
        ActionStatus::Lifted,
        ActionStatus::Expired,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Active => "active",
            ActionStatus::Lifted => "lifted",
            ActionStatus::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ActionRecord {
    pub id: i64,
    pub incident_id: i64,
    pub kind: ActionKind,
    pub target: StoredTarget,
    pub isolation: Option<Isolation>,
    pub mode: Mode,
    pub reason: String,
    pub forced: bool,
    pub created_at: i64,
    pub created_by: String,
    pub created_version: i64,
    pub expires_at: Option<i64>,
    pub state: ActionStatus,
    pub ended_at: Option<i64>,
    pub ended_by: Option<String>,
    pub end_reason: Option<String>,
    pub ended_version: Option<i64>,
}

impl ActionRecord {
    /// Status at `now_ms`: an active action past its expiry is `expired`.
    pub fn status(&self, now_ms: i64) -> ActionStatus {
        match (self.state, self.expires_at) {
            (ActionStatus::Active, Some(t)) if t <= now_ms => ActionStatus::Expired,
            (s, _) => s,
        }
    }

    pub fn rule(&self) -> CoreResult<Rule> {
        action::to_rule(
            self.id,
            self.incident_id,
            self.kind,
            &self.target,
            self.isolation,
            self.mode,
            self.expires_at,
        )
    }

    /// The JSON recorded in the audit log.
    pub fn audit_json(&self) -> Value {
        json!({
            "id": self.id,
            "incident_id": self.incident_id,
            "kind": self.kind.as_str(),
            "target_type": self.target.ty,
            "target_value": self.target.value,
            "isolation": self.isolation.map(Isolation::as_str),
            "mode": self.mode.as_str(),
            "reason": self.reason,
            "forced": self.forced,
            "expires_at": self.expires_at,
            "state": self.state.as_str(),
            "created_version": self.created_version,
            "ended_version": self.ended_version,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NotificationRecord {
    pub id: i64,
    pub incident_id: i64,
    pub audience: Audience,
    pub kind: NotificationKind,
    pub notified_at: i64,
    pub notified_by: String,
    pub channel: String,
    pub reference: Option<String>,
    pub note: Option<String>,
    /// What the recipient was told (breach notifications only).
    pub facts: Option<Value>,
    pub recorded_at: i64,
    pub recorded_by: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PostMortemRecord {
    pub incident_id: i64,
    #[serde(flatten)]
    pub content: PostMortem,
    pub submitted_at: i64,
    pub submitted_by: String,
    pub updated_at: i64,
    pub updated_by: String,
}

/// An incident and what its deadlines depend on.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentDeadlines {
    pub incident: IncidentRecord,
    pub facts: DeadlineFacts,
}

/// A token as listed (never its hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: i64,
    pub created_by: String,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
}
