//! How edge hits and access-log evidence enter an incident's record: which actions a line
//! is attributed to, the per-minute timeline summaries and the audit events of an ingest.
//! Pure: a store loads the actions and open incidents, inserts the evidence rows (their
//! idempotency is the store's), and writes what these return.

use std::collections::{BTreeMap, HashMap};

use edge_policy::report::RuleHits;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::audit::NewAuditEvent;
use super::evidence::{ActionWindow, IncidentIndicators};
use super::facts::IncidentFacts;
use super::records::ActionRecord;
use super::{CoreError, CoreResult};
use crate::clock::rfc3339;

/// Edge hits go on the incident's timeline as one entry per minute (of receipt), summed
/// over reports and edges.
pub const HIT_BUCKET_MS: i64 = 60_000;
/// Evidence goes on the timeline as one entry per incident and minute (of the lines' time).
pub const EVIDENCE_BUCKET_MS: i64 = 60_000;

/// Start of the bucket of `size` ms that holds `at`.
pub fn bucket_of(at: i64, size: i64) -> i64 {
    at - at.rem_euclid(size)
}

/// The time during which `a` may have matched a line: from its creation to its end (or its
/// expiry while active).
pub fn action_window(a: &ActionRecord) -> CoreResult<ActionWindow> {
    Ok(ActionWindow {
        rule: a.rule()?,
        incident_id: a.incident_id,
        from: a.created_at,
        until: a.ended_at.or(a.expires_at),
    })
}

/// The indicators of the open incidents that have any.
pub fn open_indicators(open: Vec<(i64, IncidentFacts)>) -> Vec<IncidentIndicators> {
    open.into_iter()
        .filter(|(_, f)| !f.indicators.is_empty())
        .map(|(incident_id, f)| IncidentIndicators {
            incident_id,
            indicators: f.indicators,
        })
        .collect()
}

/// Add `hits` (`(action id, count)`) reported by `edge_id` to the hits entry of the minute
/// from `bucket` (its data so far `old`): the entry's new message and data.
pub fn merge_hits(
    old: Option<&Value>,
    bucket: i64,
    edge_id: &str,
    hits: &[(i64, i64)],
) -> (String, Value) {
    let mut data = old.cloned().unwrap_or_else(
        || json!({"bucket": rfc3339(bucket), "total": 0, "by_action": {}, "by_edge": {}}),
    );
    let add = |v: &mut Value, key: &str, n: i64| {
        let cur = v.get(key).and_then(Value::as_i64).unwrap_or(0);
        v[key] = json!(cur + n);
    };
    for (action, n) in hits {
        add(&mut data["by_action"], &action.to_string(), *n);
        add(&mut data["by_edge"], edge_id, *n);
        add(&mut data, "total", *n);
    }
    let by_action = data["by_action"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("action {k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let edges = data["by_edge"].as_object().map(|m| m.len()).unwrap_or(0);
    let message = format!(
        "edge hits in the minute from {}: {} ({by_action}) from {edges} edge(s)",
        rfc3339(bucket),
        data["total"]
    );
    (message, data)
}

/// The action ids a report's hits name, checked to fit (the handler has checked them:
/// 1..=i64::MAX, count <= 2^40).
pub fn hit_action_ids(hits: &[RuleHits]) -> CoreResult<Vec<i64>> {
    hits.iter()
        .map(
            |h| match (i64::try_from(h.rule_id), i64::try_from(h.count)) {
                (Ok(id), Ok(_)) => Ok(id),
                _ => Err(CoreError::invalid("hits", "rule_id or count out of range")),
            },
        )
        .collect()
}

/// A report's hits sorted out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportHits {
    /// `(action id, count)` to add to the action's total for the edge, in report order.
    pub counts: Vec<(i64, i64)>,
    /// The same, per incident, for the timeline.
    pub per_incident: BTreeMap<i64, Vec<(i64, i64)>>,
    /// Rule ids no action ever had, in report order: their hits are added to no total.
    pub unknown_rule_ids: Vec<u64>,
}

/// Sort `hits` out given `incident_of` (action id → its incident, for every action that
/// exists). Zero counts add nothing.
pub fn report_hits(hits: &[RuleHits], incident_of: &HashMap<i64, i64>) -> CoreResult<ReportHits> {
    let ids = hit_action_ids(hits)?;
    let mut out = ReportHits::default();
    for (h, id) in hits.iter().zip(ids) {
        let Some(incident) = incident_of.get(&id) else {
            out.unknown_rule_ids.push(h.rule_id);
            continue;
        };
        if h.count == 0 {
            continue;
        }
        let count = h.count as i64;
        out.counts.push((id, count));
        out.per_incident
            .entry(*incident)
            .or_default()
            .push((id, count));
    }
    Ok(out)
}

/// One minute of new evidence of one incident.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvidenceMinute {
    /// Earliest line time.
    pub first: i64,
    pub lines: i64,
    /// Lines per match reason key.
    pub keys: BTreeMap<String, i64>,
}

/// Add `m` to the evidence entry of the minute from `bucket` (its data so far `old`): the
/// entry's new message and data.
pub fn merge_evidence(old: Option<&Value>, bucket: i64, m: &EvidenceMinute) -> (String, Value) {
    let mut data = old
        .cloned()
        .unwrap_or_else(|| json!({"bucket": rfc3339(bucket), "lines": 0, "matched": {}}));
    let cur = data["lines"].as_i64().unwrap_or(0);
    data["lines"] = json!(cur + m.lines);
    for (k, n) in &m.keys {
        let cur = data["matched"].get(k).and_then(|v| v.as_i64()).unwrap_or(0);
        data["matched"][k] = json!(cur + n);
    }
    let matched = data["matched"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{}: {v}", k.replace(':', " ")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let message = format!(
        "access-log evidence in the minute from {}: {} line(s) ({matched})",
        rfc3339(bucket),
        data["lines"]
    );
    (message, data)
}

/// The new evidence of one incident in one batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IncidentEvidence {
    pub ids: Vec<i64>,
    pub hashes: Vec<String>,
    /// Bucket start → that minute.
    pub minutes: BTreeMap<i64, EvidenceMinute>,
}

impl IncidentEvidence {
    /// Count a newly stored row `id` for the line `hash` logged `at`, matched for `keys`.
    pub fn add(&mut self, id: i64, hash: &str, at: i64, keys: Vec<String>) {
        self.ids.push(id);
        self.hashes.push(hash.to_string());
        let m = self
            .minutes
            .entry(bucket_of(at, EVIDENCE_BUCKET_MS))
            .or_insert(EvidenceMinute {
                first: at,
                ..EvidenceMinute::default()
            });
        m.first = m.first.min(at);
        m.lines += 1;
        for k in keys {
            *m.keys.entry(k).or_default() += 1;
        }
    }

    /// The audit event of this ingest for `incident`: the rows stored and a digest of their
    /// lines.
    pub fn event(
        &self,
        actor: &str,
        incident: i64,
        batch_id: &str,
        edge_id: Option<&str>,
    ) -> NewAuditEvent {
        let mut hashes = self.hashes.clone();
        hashes.sort();
        let digest = hex::encode(Sha256::digest(hashes.join("\n").as_bytes()));
        NewAuditEvent::new(
            actor,
            "evidence.ingest",
            format!("incident/{incident}/evidence"),
            Some(incident),
        )
        .after(json!({
            "batch_id": batch_id,
            "edge_id": edge_id,
            "stored": self.ids.len(),
            "evidence_ids": self.ids,
            "line_hashes_sha256": digest,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 1_700_000_040_000; // a minute boundary

    #[test]
    fn buckets_are_minutes() {
        assert_eq!(bucket_of(MIN, 60_000), MIN);
        assert_eq!(bucket_of(MIN + 59_999, 60_000), MIN);
        assert_eq!(bucket_of(MIN - 1, 60_000), MIN - 60_000);
    }

    #[test]
    fn hits_add_up_per_action_and_edge() {
        let (_, data) = merge_hits(None, MIN, "edge-a", &[(1, 2), (2, 3)]);
        let (msg, data) = merge_hits(Some(&data), MIN, "edge-b", &[(1, 5)]);
        assert_eq!(data["total"], 10);
        assert_eq!(data["by_action"]["1"], 7);
        assert_eq!(data["by_edge"]["edge-a"], 5);
        assert!(
            msg.ends_with(": 10 (action 1: 7, action 2: 3) from 2 edge(s)"),
            "{msg}"
        );
    }

    #[test]
    fn evidence_is_summed_per_minute_and_audited_per_incident() {
        let mut e = IncidentEvidence::default();
        e.add(10, "bb", MIN + 30_000, vec!["action:1".into()]);
        e.add(
            11,
            "aa",
            MIN + 10_000,
            vec!["action:1".into(), "indicator".into()],
        );
        e.add(12, "cc", MIN + 70_000, vec!["indicator".into()]);
        assert_eq!(e.minutes.len(), 2);
        let m = &e.minutes[&MIN];
        assert_eq!((m.first, m.lines, m.keys["action:1"]), (MIN + 10_000, 2, 2));
        let (msg, data) = merge_evidence(None, MIN, m);
        let (msg2, data) = merge_evidence(Some(&data), MIN, m);
        assert_eq!(data["lines"], 4);
        assert!(
            msg.contains("2 line(s) (action 1: 2, indicator: 1)"),
            "{msg}"
        );
        assert!(msg2.contains("4 line(s)"), "{msg2}");
        let ev = e.event("edge", 3, "b-1", None);
        assert_eq!(ev.verb, "evidence.ingest");
        assert_eq!(ev.object, "incident/3/evidence");
        let after = ev.after.unwrap();
        assert_eq!(after["stored"], 3);
        assert_eq!(after["evidence_ids"], json!([10, 11, 12]));
        // The digest covers the sorted line hashes.
        let want = hex::encode(Sha256::digest(b"aa\nbb\ncc"));
        assert_eq!(after["line_hashes_sha256"], want);
    }

    #[test]
    fn report_hits_skip_zero_counts_and_name_unknown_rules() {
        let h = |rule_id: u64, count: u64| RuleHits { rule_id, count };
        let incidents = HashMap::from([(1, 10), (2, 20)]);
        let r = report_hits(&[h(1, 3), h(9, 4), h(2, 0), h(2, 5), h(1, 1)], &incidents).unwrap();
        assert_eq!(r.counts, vec![(1, 3), (2, 5), (1, 1)]);
        assert_eq!(r.per_incident[&10], vec![(1, 3), (1, 1)]);
        assert_eq!(r.per_incident[&20], vec![(2, 5)]);
        assert_eq!(r.unknown_rule_ids, vec![9]);
        assert!(report_hits(&[h(u64::MAX, 1)], &incidents).is_err());
    }
}
