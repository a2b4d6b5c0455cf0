//! The export of an incident's complete record (`GET /v1/incidents/{id}/export`): the
//! document, its audit part with the self-check, and its Markdown rendering. Pure: the
//! handler gathers the parts from the store.

use std::fmt::Write;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{DeadlineView, EvidenceView, NotificationView, PostMortemView};
use crate::api::views::{ActionView, IncidentView, TimelineView};
use crate::domain::audit::{AuditRecord, GENESIS_HASH, HASH_RULE};
use crate::store::{AuditLink, ChainReport};

/// The format identifier of the JSON export.
pub const EXPORT_FORMAT: &str = "edge-containment/incident-record/v1";

/// An audit event as hashed: `before`/`after` are the exact JSON texts.
pub type ExportedEvent = AuditRecord;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChainLink {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

impl From<AuditLink> for ChainLink {
    fn from(l: AuditLink) -> Self {
        ChainLink {
            seq: l.seq,
            prev_hash: l.prev_hash,
            hash: l.hash,
        }
    }
}

/// The incident's audit events and what verifying them needs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditExport {
    pub hash_rule: String,
    pub genesis_hash: String,
    /// Every audit event about this incident, in sequence order, with full content.
    pub events: Vec<ExportedEvent>,
    /// Every link of the global chain from the incident's first to its last event
    /// (other incidents' events appear here by hash only): proves no event of this
    /// incident was removed, inserted or reordered.
    pub links: Vec<ChainLink>,
    /// The chain's last event when exported: compare with a copy kept elsewhere.
    pub chain_head_seq: i64,
    pub chain_head_hash: String,
    /// The server's walk of the whole chain at export time.
    pub chain_verified: bool,
    /// This export checked against itself (every hash recomputed, every link followed).
    pub self_check: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Retention {
    /// Records are kept at least this long after the incident closed.
    pub keep_years: u32,
    /// The earliest a purge may remove the records (none while open).
    pub keep_until: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IncidentExport {
    pub format: String,
    pub generated_at: String,
    pub generated_by: String,
    pub incident: IncidentView,
    pub retention: Retention,
    pub deadlines: Vec<DeadlineView>,
    pub timeline: Vec<TimelineView>,
    pub actions: Vec<ActionView>,
    pub notifications: Vec<NotificationView>,
    pub postmortem: Option<PostMortemView>,
    /// Every stored access-log line, in log-time order.
    pub evidence: Vec<EvidenceView>,
    pub audit: AuditExport,
}

/// Check the exported chain against itself: recompute every event's hash, follow every
/// link, and find every event among the links. Returns the number of events checked.
pub fn verify_exported_chain(a: &AuditExport) -> Result<usize, String> {
    for e in &a.events {
        let h = e.expected_hash();
        if h != e.hash {
            return Err(format!("event {}: hash does not match its content", e.seq));
        }
    }
    for w in a.links.windows(2) {
        if w[1].seq != w[0].seq + 1 || w[1].prev_hash != w[0].hash {
            return Err(format!(
                "link {}: does not follow link {}",
                w[1].seq, w[0].seq
            ));
        }
    }
    if let Some(first) = a.links.first() {
        if first.seq == 1 && first.prev_hash != a.genesis_hash {
            return Err("link 1: does not start at the genesis hash".into());
        }
    }
    for e in &a.events {
        let found = a
            .links
            .iter()
            .any(|l| l.seq == e.seq && l.hash == e.hash && l.prev_hash == e.prev_hash);
        if !found {
            return Err(format!("event {}: not in the chain links", e.seq));
        }
    }
    Ok(a.events.len())
}

/// The audit part of an export: the incident's `events`, the chain `links` from its first
/// to its last event, the server's walk of the whole chain, and the self-check.
pub fn audit_export(
    events: Vec<AuditRecord>,
    links: Vec<AuditLink>,
    chain: ChainReport,
) -> AuditExport {
    let mut audit = AuditExport {
        hash_rule: HASH_RULE.into(),
        genesis_hash: GENESIS_HASH.into(),
        events,
        links: links.into_iter().map(ChainLink::from).collect(),
        chain_head_seq: chain.last_seq,
        chain_head_hash: chain.last_hash,
        chain_verified: chain.first_broken.is_none(),
        self_check: String::new(),
    };
    audit.self_check = match verify_exported_chain(&audit) {
        Ok(n) => format!("ok: {n} events, {} links", audit.links.len()),
        Err(e) => format!("broken: {e}"),
    };
    audit
}

/// Records are kept this many years after the incident closed.
pub const KEEP_YEARS: u32 = 5;

/// How long the records of an incident closed at `closed_at` (if it is) are kept.
pub fn retention(closed_at: Option<i64>) -> Retention {
    Retention {
        keep_years: KEEP_YEARS,
        keep_until: closed_at
            .map(|c| crate::clock::rfc3339(crate::cli::years_before(c, -(KEEP_YEARS as i32)))),
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "—"
    } else {
        s
    }
}

/// The export as a Markdown document.
pub fn to_markdown(x: &IncidentExport) -> String {
    let i = &x.incident;
    let f = &i.facts;
    let mut m = String::new();
    let _ = writeln!(m, "# Incident record #{}: {}\n", i.id, i.title);
    let _ = writeln!(
        m,
        "Exported {} by {} ({}).\n",
        x.generated_at, x.generated_by, x.format
    );
    let _ = writeln!(m, "## Facts\n\n| | |\n|---|---|");
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let rows = [
        ("Severity", i.severity.to_string()),
        ("Phase", i.phase.as_str().to_string()),
        ("Status", i.status.clone()),
        ("Assignee", opt(&i.assignee)),
        ("Detected", i.detected_at.clone()),
        ("Reported", i.reported_at.clone()),
        ("Aware of breach", opt(&i.aware_at)),
        ("Resolved", opt(&i.resolved_at)),
        ("Closed", opt(&i.closed_at)),
        (
            "Systems affected",
            or_dash(&i.systems_affected.join(", ")).to_string(),
        ),
        ("Personal data", i.personal_data.to_string()),
        ("Health data", i.health_data.to_string()),
        ("Impact", or_dash(&f.impact).to_string()),
        (
            "Nature of the breach",
            or_dash(&f.breach_nature).to_string(),
        ),
        (
            "Data categories",
            or_dash(&f.data_categories.join(", ")).to_string(),
        ),
        (
            "Data subjects (approx.)",
            f.data_subjects_approx
                .map(|n| n.to_string())
                .unwrap_or_else(|| "—".into()),
        ),
        (
            "Records (approx.)",
            f.records_approx
                .map(|n| n.to_string())
                .unwrap_or_else(|| "—".into()),
        ),
        (
            "Likely consequences",
            or_dash(&f.likely_consequences).to_string(),
        ),
        ("Measures taken", or_dash(&f.measures_taken).to_string()),
        ("Indicators", {
            let mut v: Vec<String> = f.indicators.cidrs.iter().map(|c| c.to_string()).collect();
            v.extend(f.indicators.user_agents.iter().map(|u| format!("UA “{u}”")));
            or_dash(&v.join(", ")).to_string()
        }),
        ("Keep until", opt(&x.retention.keep_until)),
    ];
    for (k, v) in rows {
        let _ = writeln!(m, "| {k} | {} |", v.replace('\n', " ").replace('|', "\\|"));
    }
    let _ = writeln!(m, "\n## Summary\n\n{}\n", or_dash(&i.summary));
    let _ = writeln!(
        m,
        "## Deadlines\n\n| deadline | due | met | status |\n|---|---|---|---|"
    );
    for d in &x.deadlines {
        let late = if d.late { " (late)" } else { "" };
        let _ = writeln!(
            m,
            "| {} | {} | {} | {}{late} |",
            d.kind,
            d.due_at,
            opt(&d.met_at),
            d.status.as_str()
        );
    }
    let _ = writeln!(m, "\n## Timeline\n");
    for t in &x.timeline {
        let reason = t
            .reason
            .as_ref()
            .map(|r| format!(" — {r}"))
            .unwrap_or_default();
        let _ = writeln!(
            m,
            "- `{}` **{}** ({}) {}{reason}",
            t.at, t.kind, t.actor, t.message
        );
    }
    let _ = writeln!(m, "\n## Containment actions\n");
    if x.actions.is_empty() {
        let _ = writeln!(m, "None.");
    }
    for a in &x.actions {
        let what = match (&a.target, &a.scope) {
            (Some(t), _) => serde_json::to_string(t).unwrap_or_default(),
            (None, Some(sc)) => serde_json::to_string(sc).unwrap_or_default(),
            _ => String::new(),
        };
        let _ = writeln!(
            m,
            "- action {} **{}** `{what}` — {} — {} (by {} at {}), {} hit(s)",
            a.id,
            a.kind.as_str(),
            a.reason,
            a.status.as_str(),
            a.created_by,
            a.created_at,
            a.hits.total
        );
    }
    let _ = writeln!(m, "\n## Notifications\n");
    if x.notifications.is_empty() {
        let _ = writeln!(m, "None.");
    }
    for n in &x.notifications {
        let r = n
            .reference
            .as_ref()
            .map(|r| format!(", ref {r}"))
            .unwrap_or_default();
        let _ = writeln!(
            m,
            "- {} — {:?} {:?} via {} by {}{r}",
            n.notified_at, n.audience, n.kind, n.channel, n.notified_by
        );
    }
    let _ = writeln!(m, "\n## Post-mortem\n");
    match &x.postmortem {
        None => {
            let _ = writeln!(m, "Not submitted.");
        }
        Some(p) => {
            let c = &p.content;
            let _ = writeln!(
                m,
                "Submitted {} by {} (last revised {}).\n",
                p.submitted_at, p.submitted_by, p.updated_at
            );
            let _ = writeln!(m, "**Root cause.** {}\n", c.root_cause);
            let _ = writeln!(m, "**Attack vectors.** {}\n", c.attack_vectors.join("; "));
            let _ = writeln!(m, "**Data impact.** {}\n", c.data_impact);
            let _ = writeln!(m, "**Lessons learned.** {}\n", c.lessons_learned);
            if !c.policy_changes.is_empty() {
                let _ = writeln!(m, "**Policy and system changes.** {}\n", c.policy_changes);
            }
            let _ = writeln!(m, "Follow-ups:\n");
            for fu in &c.follow_ups {
                let due = fu
                    .due
                    .as_ref()
                    .map(|d| format!(" (due {d})"))
                    .unwrap_or_default();
                let _ = writeln!(m, "- [ ] {} — owner: {}{due}", fu.item, fu.owner);
            }
        }
    }
    let _ = writeln!(
        m,
        "\n## Evidence from the edge ({} lines)\n",
        x.evidence.len()
    );
    if !x.evidence.is_empty() {
        let _ = writeln!(m, "| time | client | request | status | action | matched | sha256 |\n|---|---|---|---|---|---|---|");
    }
    for e in &x.evidence {
        let _ = writeln!(
            m,
            "| {} | {} | {} {}{} | {} | {} | {} | `{}` |",
            e.at,
            e.client_ip.as_deref().unwrap_or("—"),
            e.method.as_deref().unwrap_or(""),
            e.host.as_deref().unwrap_or(""),
            e.path.as_deref().unwrap_or(""),
            e.status.map(|s| s.to_string()).unwrap_or_default(),
            e.action_id
                .map(|a| a.to_string())
                .unwrap_or_else(|| "—".into()),
            e.matched.join("; ").replace('|', "\\|"),
            &e.line_hash[..16.min(e.line_hash.len())]
        );
    }
    let a = &x.audit;
    let _ = writeln!(m, "\n## Audit trail ({} events)\n", a.events.len());
    let _ = writeln!(
        m,
        "| seq | at | actor | verb | object | hash |\n|---|---|---|---|---|---|"
    );
    for e in &a.events {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | `{}` |",
            e.seq, e.at, e.actor, e.verb, e.object, e.hash
        );
    }
    let _ = writeln!(
        m,
        "\nChain: {} link(s) from the first to the last event; head at export: seq {} `{}`; server verification: {}; self-check: {}.\n\nHash rule: {}",
        a.links.len(),
        a.chain_head_seq,
        a.chain_head_hash,
        if a.chain_verified { "intact" } else { "BROKEN" },
        a.self_check,
        a.hash_rule
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::NewAuditEvent;

    fn chain() -> (Vec<AuditRecord>, Vec<AuditLink>, ChainReport) {
        let e = |n: i64| {
            NewAuditEvent::new("alice", "incident.update", format!("incident/{n}"), Some(1))
        };
        let a = AuditRecord::chained(None, "2026-01-01T00:00:00.000Z".into(), e(1));
        let b = AuditRecord::chained(
            Some((1, a.hash.clone())),
            "2026-01-01T00:00:01.000Z".into(),
            e(1),
        );
        let links = [&a, &b]
            .iter()
            .map(|r| AuditLink {
                seq: r.seq,
                prev_hash: r.prev_hash.clone(),
                hash: r.hash.clone(),
            })
            .collect();
        let report = ChainReport {
            checked: 2,
            last_seq: 2,
            last_hash: b.hash.clone(),
            first_broken: None,
        };
        (vec![a, b], links, report)
    }

    #[test]
    fn the_audit_part_checks_itself() {
        let (events, links, report) = chain();
        let a = audit_export(events, links, report);
        assert_eq!(a.self_check, "ok: 2 events, 2 links");
        assert!(a.chain_verified);
        assert_eq!(
            (a.hash_rule.as_str(), a.genesis_hash.as_str()),
            (HASH_RULE, GENESIS_HASH)
        );
        let (mut events, links, report) = chain();
        events[1].reason = Some("edited".into());
        let a = audit_export(events, links, report);
        assert_eq!(
            a.self_check,
            "broken: event 2: hash does not match its content"
        );
    }

    #[test]
    fn records_are_kept_five_years_after_closing() {
        assert_eq!(retention(None).keep_until, None);
        let closed = crate::clock::parse_rfc3339("2026-03-02T10:00:00Z").unwrap();
        let r = retention(Some(closed));
        assert_eq!(r.keep_years, 5);
        assert!(r.keep_until.unwrap().starts_with("2031-03-02"));
    }
}
