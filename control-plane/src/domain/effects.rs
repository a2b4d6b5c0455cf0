//! What a decision asks the store to write besides its rows: timeline entries and audit
//! events. A store writes them, in order, inside the transaction of the change.

use serde_json::Value;

use super::audit::NewAuditEvent;

/// A timeline entry to add.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTimelineEntry {
    pub incident_id: i64,
    pub at: i64,
    pub actor: String,
    pub kind: String,
    pub message: String,
    pub reason: Option<String>,
    pub data: Option<Value>,
}

impl NewTimelineEntry {
    pub fn new(incident_id: i64, at: i64, actor: &str, kind: &str, message: String) -> Self {
        NewTimelineEntry {
            incident_id,
            at,
            actor: actor.to_string(),
            kind: kind.to_string(),
            message,
            reason: None,
            data: None,
        }
    }
    pub fn reason(mut self, r: Option<&str>) -> Self {
        self.reason = r.map(str::to_string);
        self
    }
    pub fn data(mut self, d: Value) -> Self {
        self.data = Some(d);
        self
    }
}

/// Timeline entries and audit events, in the order they are written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Writes {
    pub timeline: Vec<NewTimelineEntry>,
    pub audit: Vec<NewAuditEvent>,
}

impl Writes {
    pub fn extend(&mut self, other: Writes) {
        self.timeline.extend(other.timeline);
        self.audit.extend(other.audit);
    }
}
