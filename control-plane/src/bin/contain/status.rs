//! `now`, `edges`, `deadlines`: where things stand across incidents.

use control_plane::api::edge::EdgeView;
use control_plane::api::views::ActionView;
use control_plane::clock::parse_rfc3339;
use control_plane::record::DeadlineView;
use serde_json::{json, Value};

use crate::client::{typed, with_query, Failure};
use crate::{client, duration, render, Ctx};

/// What `now` shows, split from the answers (pure).
pub struct Now {
    pub actions: Vec<Value>,
    pub overdue: Vec<Value>,
    pub due_soon: Vec<Value>,
    pub edges_behind: Vec<Value>,
    pub edges_total: usize,
}

/// Pending deadlines due within `within_secs` of `now_ms`, and edges behind.
pub fn split(
    actions: Vec<Value>,
    overdue: Vec<Value>,
    pending: Vec<Value>,
    edges: Vec<Value>,
    now_ms: i64,
    within_secs: u64,
) -> Now {
    let horizon = now_ms.saturating_add((within_secs as i64).saturating_mul(1000));
    let due_soon = pending
        .into_iter()
        .filter(|d| {
            d["due_at"]
                .as_str()
                .and_then(parse_rfc3339)
                .is_some_and(|due| due <= horizon)
        })
        .collect();
    let edges_total = edges.len();
    Now {
        actions,
        overdue,
        due_soon,
        edges_behind: edges.into_iter().filter(|e| e["behind"] == true).collect(),
        edges_total,
    }
}

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        _ => Vec::new(),
    }
}

pub fn now_text(n: &Now, within: &str, now_ms: i64) -> Result<String, Failure> {
    let actions: Vec<ActionView> = typed(&Value::Array(n.actions.clone()))?;
    let mut out = format!("ACTIVE CONTAINMENT ({})\n", actions.len());
    out.push_str(&if actions.is_empty() {
        "none".into()
    } else {
        render::actions(&actions, now_ms)
    });
    let mut ds: Vec<DeadlineView> = typed(&Value::Array(n.overdue.clone()))?;
    ds.extend(typed::<Vec<DeadlineView>>(&Value::Array(
        n.due_soon.clone(),
    ))?);
    out.push_str(&format!(
        "\n\nDEADLINES: {} overdue, {} due within {within}\n",
        n.overdue.len(),
        n.due_soon.len()
    ));
    out.push_str(&if ds.is_empty() {
        "none".into()
    } else {
        render::deadlines(&ds, now_ms)
    });
    let behind: Vec<EdgeView> = typed(&Value::Array(n.edges_behind.clone()))?;
    out.push_str(&format!(
        "\n\nEDGES: {} reporting, {} behind",
        n.edges_total,
        behind.len()
    ));
    if !behind.is_empty() {
        out.push('\n');
        out.push_str(&render::edges(&behind, now_ms));
    }
    Ok(out)
}

pub fn now(ctx: &Ctx, within: &str) -> Result<u8, Failure> {
    let within_secs =
        duration::parse(within).map_err(|m| Failure::Usage(format!("--within: {m}")))?;
    let c = client()?;
    let actions = c.get_all("/v1/actions", &[("status", "active".into())])?;
    let overdue = array(c.get("/v1/deadlines?status=overdue")?);
    let pending = array(c.get("/v1/deadlines?status=pending")?);
    let edges = array(c.get("/v1/edges")?);
    let n = split(actions, overdue, pending, edges, ctx.now_ms, within_secs);
    let v = json!({
        "actions": n.actions,
        "deadlines_overdue": n.overdue,
        "deadlines_due_soon": n.due_soon,
        "due_soon_within_secs": within_secs,
        "edges_behind": n.edges_behind,
        "edges_total": n.edges_total,
    });
    ctx.out(&v, || now_text(&n, within, ctx.now_ms))?;
    Ok(0)
}

pub fn edges(ctx: &Ctx) -> Result<u8, Failure> {
    let v = client()?.get("/v1/edges")?;
    ctx.out(&v, || {
        let list: Vec<EdgeView> = typed(&v)?;
        Ok(if list.is_empty() {
            "no edge has reported yet".into()
        } else {
            render::edges(&list, ctx.now_ms)
        })
    })?;
    Ok(0)
}

pub fn deadlines(ctx: &Ctx, incident: Option<i64>, status: Option<String>) -> Result<u8, Failure> {
    let mut q = Vec::new();
    q.extend(incident.map(|i| ("incident", i.to_string())));
    q.extend(status.map(|s| ("status", s)));
    let v = client()?.get(&with_query("/v1/deadlines", &q))?;
    ctx.out(&v, || {
        let list: Vec<DeadlineView> = typed(&v)?;
        Ok(if list.is_empty() {
            "no deadlines".into()
        } else {
            render::deadlines(&list, ctx.now_ms)
        })
    })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_soon_is_pending_within_the_window_and_behind_edges_are_picked() {
        let now = parse_rfc3339("2026-12-02T18:00:00Z").unwrap();
        let d = |due: &str| json!({"due_at": due});
        let n = split(
            vec![],
            vec![d("2026-12-02T17:00:00.000Z")],
            vec![d("2026-12-02T19:00:00.000Z"), d("2026-12-02T23:00:00.000Z")],
            vec![json!({"behind": true}), json!({"behind": false})],
            now,
            4 * 3600,
        );
        assert_eq!(n.overdue.len(), 1);
        assert_eq!(n.due_soon, vec![d("2026-12-02T19:00:00.000Z")]);
        assert_eq!(n.edges_behind.len(), 1);
        assert_eq!(n.edges_total, 2);
    }
}
