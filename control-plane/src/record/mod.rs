//! The incident record as documents and exports: views of the policy clock,
//! notifications, post-mortem and evidence; rendered documents; the export.

pub mod documents;
pub mod export;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::domain::deadline::{compute, Deadline, DeadlineKind, DeadlineStatus, Holidays};
use crate::domain::notification::{Audience, NotificationKind};
use crate::domain::postmortem::PostMortem;
use crate::store::{
    ActionRecord, EvidenceRecord, IncidentDeadlines, NotificationRecord, PostMortemRecord,
};

/// One deadline of one incident.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadlineView {
    pub incident_id: i64,
    pub incident_title: String,
    pub kind: DeadlineKind,
    /// RFC 3339 UTC.
    pub due_at: String,
    pub met_at: Option<String>,
    pub status: DeadlineStatus,
    /// Met, but after it was due.
    pub late: bool,
    /// How `due_at` was computed.
    pub rule: String,
}

impl DeadlineView {
    pub fn new(incident_id: i64, title: &str, d: &Deadline) -> DeadlineView {
        DeadlineView {
            incident_id,
            incident_title: title.to_string(),
            kind: d.kind,
            due_at: rfc3339(d.due_at),
            met_at: d.met_at.map(rfc3339),
            status: d.status,
            late: d.late,
            rule: d.rule.clone(),
        }
    }
}

/// Every deadline of the given incidents at `now`, in due order.
pub fn deadlines(
    inputs: &[IncidentDeadlines],
    holidays: &Holidays,
    now: i64,
) -> Vec<(i64, String, Deadline)> {
    let mut out: Vec<(i64, String, Deadline)> = inputs
        .iter()
        .flat_map(|i| {
            compute(&i.facts, holidays, now)
                .into_iter()
                .map(|d| (i.incident.id, i.incident.title.clone(), d))
        })
        .collect();
    out.sort_by_key(|(id, _, d)| (d.due_at, *id, d.kind));
    out
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotificationView {
    pub id: i64,
    pub incident_id: i64,
    pub audience: Audience,
    pub kind: NotificationKind,
    pub notified_at: String,
    pub notified_by: String,
    pub channel: String,
    pub reference: Option<String>,
    pub note: Option<String>,
    /// What the recipient was told (breach notifications): the GDPR facts at the time.
    #[schema(value_type = Option<Object>)]
    pub facts: Option<Value>,
    pub recorded_at: String,
    pub recorded_by: String,
}

impl From<&NotificationRecord> for NotificationView {
    fn from(n: &NotificationRecord) -> Self {
        NotificationView {
            id: n.id,
            incident_id: n.incident_id,
            audience: n.audience,
            kind: n.kind,
            notified_at: rfc3339(n.notified_at),
            notified_by: n.notified_by.clone(),
            channel: n.channel.clone(),
            reference: n.reference.clone(),
            note: n.note.clone(),
            facts: n.facts.clone(),
            recorded_at: rfc3339(n.recorded_at),
            recorded_by: n.recorded_by.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PostMortemView {
    pub incident_id: i64,
    #[serde(flatten)]
    pub content: PostMortem,
    /// First submission (meets the post-mortem deadline).
    pub submitted_at: String,
    pub submitted_by: String,
    pub updated_at: String,
    pub updated_by: String,
}

impl From<&PostMortemRecord> for PostMortemView {
    fn from(p: &PostMortemRecord) -> Self {
        PostMortemView {
            incident_id: p.incident_id,
            content: p.content.clone(),
            submitted_at: rfc3339(p.submitted_at),
            submitted_by: p.submitted_by.clone(),
            updated_at: rfc3339(p.updated_at),
            updated_by: p.updated_by.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EvidenceView {
    pub id: i64,
    pub incident_id: i64,
    /// The containment action the line is attributed to, if any.
    pub action_id: Option<i64>,
    /// Why the line is evidence of this incident.
    pub matched: Vec<String>,
    /// SHA-256 of `line`.
    pub line_hash: String,
    pub batch_id: String,
    pub edge_id: Option<String>,
    /// The line's `start_time`.
    pub at: String,
    pub client_ip: Option<String>,
    pub method: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub status: Option<i64>,
    pub user_agent: Option<String>,
    /// The access-log line exactly as received (trimmed).
    pub line: String,
    pub ingested_at: String,
    pub ingested_by: String,
}

impl From<&EvidenceRecord> for EvidenceView {
    fn from(e: &EvidenceRecord) -> Self {
        EvidenceView {
            id: e.id,
            incident_id: e.incident_id,
            action_id: e.action_id,
            matched: e.matched.clone(),
            line_hash: e.line_hash.clone(),
            batch_id: e.batch_id.clone(),
            edge_id: e.edge_id.clone(),
            at: rfc3339(e.at),
            client_ip: e.client_ip.clone(),
            method: e.method.clone(),
            host: e.host.clone(),
            path: e.path.clone(),
            status: e.status,
            user_agent: e.user_agent.clone(),
            line: e.line.clone(),
            ingested_at: rfc3339(e.ingested_at),
            ingested_by: e.ingested_by.clone(),
        }
    }
}

/// One line describing a containment action (documents, exports).
pub fn describe_action(a: &ActionRecord, now: i64) -> String {
    let what = match a.isolation {
        Some(i) => format!(
            "isolate {} {} ({})",
            a.target.ty,
            a.target.value,
            i.as_str()
        ),
        None => format!("{} {} {}", a.kind.as_str(), a.target.ty, a.target.value),
    };
    let status = a.status(now);
    let end = match (a.ended_at, a.expires_at) {
        (Some(t), _) => format!(", {} {}", status.as_str(), rfc3339(t)),
        (None, Some(t)) => format!(", expires {}", rfc3339(t)),
        _ => String::new(),
    };
    format!(
        "action {}: {what} [{}] since {}{end} — {}",
        a.id,
        a.mode.as_str(),
        rfc3339(a.created_at),
        a.reason
    )
}
