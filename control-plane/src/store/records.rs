//! Records of the incident record (issue #6): notifications, post-mortems, evidence,
//! purges, and the inputs of the policy clock.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::domain::deadline::DeadlineFacts;
use crate::domain::evidence::LogLine;
use crate::domain::notification::{Audience, NotificationKind};
use crate::domain::postmortem::PostMortem;

use super::IncidentRecord;

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

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvidenceRecord {
    pub id: i64,
    pub incident_id: i64,
    pub action_id: Option<i64>,
    pub matched: Vec<String>,
    pub line_hash: String,
    pub batch_id: String,
    pub edge_id: Option<String>,
    pub at: i64,
    pub client_ip: Option<String>,
    pub method: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub status: Option<i64>,
    pub user_agent: Option<String>,
    pub line: String,
    pub ingested_at: i64,
    pub ingested_by: String,
}

/// A batch of parsed access-log lines to match and store.
#[derive(Clone, Debug)]
pub struct EvidenceBatch {
    pub batch_id: String,
    pub edge_id: Option<String>,
    pub lines: Vec<LogLine>,
}

/// What an ingest stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// New evidence rows (a line evidence of two incidents counts twice).
    pub stored: u64,
    /// Rows that were already stored (a retried batch).
    pub duplicates: u64,
    /// Lines that matched no action and no indicator.
    pub unmatched: u64,
    /// Incidents that got new evidence.
    pub incidents: Vec<i64>,
}

/// The result of a purge (or of a dry run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    pub dry_run: bool,
    pub older_than_years: u32,
    /// Incidents closed before this time were eligible.
    pub cutoff: i64,
    pub incidents: Vec<i64>,
    /// Rows deleted per table (would be deleted, for a dry run).
    pub rows: BTreeMap<String, u64>,
    /// The audit event that records the purge (none for a dry run).
    pub audit_seq: Option<i64>,
}

/// One link of the audit chain (content left out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditLink {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// An incident and what its deadlines depend on.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentDeadlines {
    pub incident: IncidentRecord,
    pub facts: DeadlineFacts,
}
