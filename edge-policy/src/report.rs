//! What an edge reports to the control plane (`POST /v1/edge/reports`, JSON).

use serde::{Deserialize, Serialize};

use crate::model::{RuleId, Version};

/// One report: the hits counted since the previous report of the same edge process.
///
/// Counts are increments, not totals. `(edge_id, boot_id, seq)` identifies a report, so the
/// control plane ignores a retried report it already counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeReport {
    /// The edge's configured id (e.g. `envoy-ams-1`).
    pub edge_id: String,
    /// Random per start of the edge process (or VM), so `seq` may restart from 1.
    pub boot_id: String,
    /// 1 for the first report after a start, then +1 per report.
    pub seq: u64,
    /// The policy version the edge enforces now (0: none yet).
    pub policy_version: Version,
    /// Hits per rule since the previous report. Rules with no hits are left out.
    #[serde(default)]
    pub hits: Vec<RuleHits>,
    /// Seconds between this edge's reports (its `report_interval_s`): hit counts shown by
    /// the control plane lag by up to this much. Absent from edges older than the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<u32>,
}

/// Requests one rule decided (or, for a simulate rule, would have decided).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleHits {
    pub rule_id: RuleId,
    pub count: u64,
}
