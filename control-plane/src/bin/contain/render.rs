//! Human output: plain tables (`comfy-table`, no borders) of the API's views. Pure: every
//! function takes the time it renders at.

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, Table};
use control_plane::api::edge::EdgeView;
use control_plane::api::views::{
    ActionView, IncidentDetail, IncidentView, ScopeView, TargetView, TimelineView,
};
use control_plane::clock::parse_rfc3339;
use control_plane::record::{DeadlineView, NotificationView};
use serde::Serialize;

use crate::duration;

/// The wire name of an enum value (`detection_analysis`, `P1`, `pixel_kill`).
pub fn label<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_header(header.iter().map(|h| Cell::new(*h)));
    t
}

/// `2026-12-02 18:30:00Z (5m ago)`, or the text as given when it is not RFC 3339.
pub fn when(at: &str, now_ms: i64) -> String {
    match parse_rfc3339(at) {
        Some(ms) => format!("{} ({})", short_time(at), duration::relative(now_ms, ms)),
        None => at.to_string(),
    }
}

/// `2026-12-02T18:30:00.000Z` as `2026-12-02 18:30Z`.
pub fn short_time(at: &str) -> String {
    match (at.get(..10), at.get(11..16)) {
        (Some(d), Some(t)) if at.len() >= 16 => format!("{d} {t}Z"),
        _ => at.to_string(),
    }
}

/// `cidr 203.0.113.0/24`, `api_key sha256:1a2b3c4d…`, `pixel px-1 (pixel_kill)`.
pub fn target(a: &ActionView) -> String {
    let (ty, v) = match (&a.target, &a.scope) {
        (Some(TargetView::Cidr(v)), _) => ("cidr", v.clone()),
        (Some(TargetView::ApiKeySha256(v)), _) => {
            ("api_key", format!("sha256:{}…", v.get(..12).unwrap_or(v)))
        }
        (Some(TargetView::Account(v)), _) => ("account", v.clone()),
        (Some(TargetView::Pixel(v)), _) => ("pixel", v.clone()),
        (Some(TargetView::Host(v)), _) => ("host", v.clone()),
        (Some(TargetView::PathPrefix(v)), _) => ("path_prefix", v.clone()),
        (None, Some(ScopeView::Host(v))) => ("host", v.clone()),
        (None, Some(ScopeView::PathPrefix(v))) => ("path_prefix", v.clone()),
        (None, Some(ScopeView::Pixel(v))) => ("pixel", v.clone()),
        (None, None) => ("?", String::new()),
    };
    match &a.isolation {
        Some(i) => format!("{ty} {v} ({})", label(i)),
        None => format!("{ty} {v}"),
    }
}

/// When an action stops: `in 55m`, `never`, or when it ended.
fn expiry(a: &ActionView, now_ms: i64) -> String {
    if let Some(end) = &a.ended_at {
        return format!("ended {}", when(end, now_ms));
    }
    match a.expires_at.as_deref().map(|e| (e, parse_rfc3339(e))) {
        None => "never".into(),
        Some((_, Some(ms))) => duration::relative(now_ms, ms),
        Some((e, None)) => e.to_string(),
    }
}

pub fn actions<'a>(list: impl IntoIterator<Item = &'a ActionView>, now_ms: i64) -> String {
    let mut t = table(&[
        "ID", "INCIDENT", "KIND", "TARGET", "MODE", "STATUS", "HITS", "EXPIRES", "REASON",
    ]);
    for a in list {
        t.add_row(vec![
            a.id.to_string(),
            a.incident_id.to_string(),
            label(&a.kind),
            target(a),
            label(&a.mode),
            label(&a.status),
            a.hits.total.to_string(),
            expiry(a, now_ms),
            a.reason.clone(),
        ]);
    }
    t.to_string()
}

pub fn incidents(list: &[IncidentView], now_ms: i64) -> String {
    let mut t = table(&[
        "ID", "SEV", "PHASE", "STATUS", "ASSIGNEE", "DETECTED", "TITLE",
    ]);
    for i in list {
        t.add_row(vec![
            i.id.to_string(),
            label(&i.severity),
            label(&i.phase),
            i.status.clone(),
            i.assignee.clone().unwrap_or_else(|| "-".into()),
            when(&i.detected_at, now_ms),
            i.title.clone(),
        ]);
    }
    t.to_string()
}

pub fn deadlines(list: &[DeadlineView], now_ms: i64) -> String {
    let mut t = table(&["INCIDENT", "KIND", "DUE", "STATUS", "MET"]);
    for d in list {
        // `OVERDUE` stands out in a column of `pending` and `met`.
        let status = match (label(&d.status).as_str(), d.late) {
            ("met", true) => "met late".to_string(),
            ("overdue", _) => "OVERDUE".to_string(),
            (s, _) => s.to_string(),
        };
        t.add_row(vec![
            format!("{} {}", d.incident_id, d.incident_title),
            label(&d.kind),
            when(&d.due_at, now_ms),
            status,
            d.met_at
                .as_deref()
                .map(short_time)
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    t.to_string()
}

pub fn edges(list: &[EdgeView], now_ms: i64) -> String {
    let mut t = table(&[
        "EDGE",
        "VERSION",
        "CURRENT",
        "BEHIND",
        "LAST SEEN",
        "REPORTS",
    ]);
    for e in list {
        t.add_row(vec![
            e.edge_id.clone(),
            e.policy_version.to_string(),
            e.current_version.to_string(),
            if e.behind { "BEHIND" } else { "no" }.to_string(),
            when(&e.last_seen, now_ms),
            e.reports.to_string(),
        ]);
    }
    t.to_string()
}

pub fn timeline(list: &[TimelineView]) -> String {
    let mut t = table(&["AT", "ACTOR", "KIND", "WHAT"]);
    for e in list {
        let what = match &e.reason {
            Some(r) => format!("{} (reason: {r})", e.message),
            None => e.message.clone(),
        };
        t.add_row(vec![
            short_time(&e.at),
            e.actor.clone(),
            e.kind.clone(),
            what,
        ]);
    }
    t.to_string()
}

/// One incident's header lines.
pub fn incident(i: &IncidentView, now_ms: i64) -> String {
    let mut t = Table::new();
    t.load_preset(NOTHING);
    let mut row = |k: &str, v: String| {
        t.add_row(vec![format!("{k}:"), v]);
    };
    row("incident", format!("#{} {}", i.id, i.title));
    row(
        "severity",
        format!(
            "{}   phase: {}   status: {}",
            label(&i.severity),
            label(&i.phase),
            i.status
        ),
    );
    row("assignee", i.assignee.clone().unwrap_or_else(|| "-".into()));
    row("detected", when(&i.detected_at, now_ms));
    row("reported", when(&i.reported_at, now_ms));
    if let Some(c) = &i.closed_at {
        row("closed", when(c, now_ms));
    }
    if !i.summary.is_empty() {
        row("summary", i.summary.clone());
    }
    if !i.systems_affected.is_empty() {
        row("systems", i.systems_affected.join(", "));
    }
    row(
        "data",
        format!(
            "personal: {}   health: {}",
            yes_no(i.personal_data),
            yes_no(i.health_data)
        ),
    );
    t.to_string()
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `incident show`: header, actions, deadlines, the last `last` timeline entries.
pub fn detail(d: &IncidentDetail, now_ms: i64, last: Option<usize>) -> String {
    let mut out = incident(&d.incident, now_ms);
    out.push_str(&format!(
        "\n\nACTIONS ({}, {} hits)\n",
        d.actions.len(),
        d.hits_total
    ));
    out.push_str(&if d.actions.is_empty() {
        "none".to_string()
    } else {
        actions(&d.actions, now_ms)
    });
    out.push_str("\n\nDEADLINES\n");
    out.push_str(&deadlines(&d.deadlines, now_ms));
    let n = last.unwrap_or(d.timeline.len()).min(d.timeline.len());
    if n > 0 {
        out.push_str(&format!(
            "\n\nTIMELINE (last {n} of {})\n",
            d.timeline.len()
        ));
        out.push_str(&timeline(&d.timeline[d.timeline.len() - n..]));
    }
    out
}

pub fn notification(n: &NotificationView) -> String {
    let reference = n
        .reference
        .as_deref()
        .map(|r| format!(" (ref {r})"))
        .unwrap_or_default();
    format!(
        "notification #{} recorded on incident {}: {} {} via {}{reference} at {} by {}",
        n.id,
        n.incident_id,
        label(&n.audience),
        label(&n.kind),
        n.channel,
        short_time(&n.notified_at),
        n.notified_by
    )
}

/// One line about a created or lifted action.
pub fn action_line(a: &ActionView, now_ms: i64) -> String {
    let policy = match a.ended_version {
        Some(v) => format!("removed in policy version {v}"),
        None => format!("policy version {}", a.created_version),
    };
    format!(
        "{} #{} {}: {} on incident {} ({}, {}; expires {})",
        label(&a.kind),
        a.id,
        label(&a.status),
        target(a),
        a.incident_id,
        label(&a.mode),
        policy,
        expiry(a, now_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: &str = "2026-12-02T18:00:00.000Z";

    fn now() -> i64 {
        parse_rfc3339(NOW).unwrap()
    }

    fn action(id: i64, extra: serde_json::Value) -> ActionView {
        let mut v = json!({"id": id, "incident_id": 7, "kind": "block",
            "target": {"cidr": "203.0.113.0/24"}, "scope": null, "isolation": null,
            "mode": "enforce", "status": "active", "reason": "stuffing", "forced": false,
            "created_at": NOW, "created_by": "alice", "created_version": 3,
            "expires_at": "2026-12-02T19:30:00.000Z", "ended_at": null, "ended_by": null,
            "end_reason": null, "ended_version": null, "linked_incident_ids": [],
            "hits": {"total": 42, "by_edge": {"e1": 42}, "last_report_at": null, "report_interval_secs": null}});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_actions_table_has_target_hits_and_expiry() {
        let a = action(1, json!({}));
        let kill = action(
            2,
            json!({"kind": "isolate", "target": null, "scope": {"pixel": "px-9"},
                "isolation": "pixel_kill", "mode": "simulate", "expires_at": null, "hits": {"total": 0, "by_edge": {}}}),
        );
        let out = actions(&[a, kill], now());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        for h in ["ID", "TARGET", "HITS", "EXPIRES"] {
            assert!(lines[0].contains(h), "{out}");
        }
        assert!(
            lines[1].contains("cidr 203.0.113.0/24") && lines[1].contains("42"),
            "{out}"
        );
        assert!(lines[1].contains("in 1h30m"), "{out}");
        assert!(lines[2].contains("pixel px-9 (pixel_kill)"), "{out}");
        assert!(
            lines[2].contains("simulate") && lines[2].contains("never"),
            "{out}"
        );
        // Columns line up: the TARGET column starts at one offset on every line.
        let col = lines[0].find("TARGET").unwrap();
        assert_eq!(lines[1].find("cidr"), Some(col), "{out}");
        assert_eq!(lines[2].find("pixel px-9"), Some(col), "{out}");
    }

    #[test]
    fn an_api_key_shows_as_a_short_hash_and_an_ended_action_when_it_ended() {
        let a = action(
            3,
            json!({"target": {"api_key_sha256": "ab".repeat(32)}, "status": "lifted",
                "ended_at": "2026-12-02T17:55:00.000Z", "ended_version": 4}),
        );
        assert_eq!(target(&a), "api_key sha256:abababababab…");
        let line = action_line(&a, now());
        assert!(
            line.contains("lifted") && line.contains("removed in policy version 4"),
            "{line}"
        );
        assert!(line.contains("ended 2026-12-02 17:55Z (5m ago)"), "{line}");
    }

    #[test]
    fn deadlines_shout_when_overdue() {
        let d: DeadlineView =
            serde_json::from_value(json!({"incident_id": 7, "incident_title": "t",
            "kind": "preliminary_report", "due_at": "2026-12-02T17:00:00.000Z", "met_at": null,
            "status": "overdue", "late": false, "rule": "r"}))
            .unwrap();
        let out = deadlines(&[d], now());
        assert!(out.contains("OVERDUE") && out.contains("1h ago"), "{out}");
        assert!(out.contains("preliminary_report"), "{out}");
    }

    #[test]
    fn times_are_shortened_and_made_relative() {
        assert_eq!(short_time("2026-12-02T18:30:00.000Z"), "2026-12-02 18:30Z");
        assert_eq!(short_time("soon"), "soon");
        assert_eq!(
            when("2026-12-02T18:30:00.000Z", now()),
            "2026-12-02 18:30Z (in 30m)"
        );
    }
}
