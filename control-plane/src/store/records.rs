//! Records of the incident record: evidence, purges and audit links (notifications,
//! post-mortems and the deadline inputs are in `domain::records`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::evidence::LogLine;

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
