//! `incident open|list|show|set|close`, `notify`, `export`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use control_plane::api::views::{ActionList, IncidentDetail, IncidentList, IncidentView};
use control_plane::record::NotificationView;
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::args::{CloseArgs, IncidentCmd, NotifyArgs, OpenArgs, SetArgs};
use crate::client::{typed, with_query, Failure};
use crate::render::{self, label};
use crate::{client, Ctx};

/// Set `k` when `v` is given.
pub fn put<T: serde::Serialize>(m: &mut Map<String, Value>, k: &str, v: Option<T>) {
    if let Some(v) = v {
        m.insert(k.to_string(), json!(v));
    }
}

pub fn run(ctx: &Ctx, cmd: IncidentCmd) -> Result<u8, Failure> {
    match cmd {
        IncidentCmd::Open(a) => open(ctx, &a),
        IncidentCmd::List {
            status,
            phase,
            severity,
            limit,
            offset,
        } => {
            let mut q = vec![("status", status)];
            q.extend(phase.map(|p| ("phase", p)));
            q.extend(severity.map(|s| ("severity", s)));
            q.push(("limit", limit.to_string()));
            q.push(("offset", offset.to_string()));
            let v = client()?.get(&with_query("/v1/incidents", &q))?;
            ctx.out(&v, || {
                let l: IncidentList = typed(&v)?;
                if l.items.is_empty() {
                    return Ok(format!("no incidents ({} in all)", l.total));
                }
                let shown = l.items.len() as i64;
                Ok(format!(
                    "{}\n{shown} of {} (offset {})",
                    render::incidents(&l.items, ctx.now_ms),
                    l.total,
                    l.offset
                ))
            })?;
            Ok(0)
        }
        IncidentCmd::Show { id, timeline } => {
            let v = client()?.get(&format!("/v1/incidents/{id}"))?;
            ctx.out(&v, || {
                let d: IncidentDetail = typed(&v)?;
                Ok(render::detail(&d, ctx.now_ms, timeline))
            })?;
            Ok(0)
        }
        IncidentCmd::Set(a) => set(ctx, &a),
        IncidentCmd::Close(a) => close(ctx, &a),
    }
}

fn open(ctx: &Ctx, a: &OpenArgs) -> Result<u8, Failure> {
    let mut b = Map::new();
    b.insert("title".into(), json!(a.title));
    b.insert("severity".into(), json!(a.severity));
    put(&mut b, "summary", a.summary.as_ref());
    if !a.systems.is_empty() {
        b.insert("systems_affected".into(), json!(a.systems));
    }
    put(&mut b, "personal_data", a.personal_data.then_some(true));
    put(&mut b, "health_data", a.health_data.then_some(true));
    put(&mut b, "assignee", a.assignee.as_ref());
    put(&mut b, "detected_at", a.detected_at.as_ref());
    put(&mut b, "impact", a.impact.as_ref());
    put(&mut b, "next_update_at", a.next_update_at.as_ref());
    put(&mut b, "customer_title", a.customer_title.as_ref());
    put(&mut b, "customer_summary", a.customer_summary.as_ref());
    let v = client()?.post("/v1/incidents", &Value::Object(b))?;
    ctx.out(&v, || {
        let i: IncidentView = typed(&v)?;
        Ok(format!(
            "opened incident #{} ({}, {}): {}",
            i.id,
            label(&i.severity),
            label(&i.phase),
            i.title
        ))
    })?;
    Ok(0)
}

fn changed(i: &IncidentView) -> String {
    format!(
        "incident #{}: {} {} {}, assignee {}",
        i.id,
        label(&i.severity),
        label(&i.phase),
        i.status,
        i.assignee.as_deref().unwrap_or("-")
    )
}

fn set(ctx: &Ctx, a: &SetArgs) -> Result<u8, Failure> {
    let mut b = Map::new();
    put(&mut b, "severity", a.severity.as_ref());
    put(&mut b, "phase", a.phase.as_ref());
    put(&mut b, "assignee", a.assignee.as_ref());
    put(&mut b, "summary", a.summary.as_ref());
    put(&mut b, "personal_data", a.personal_data);
    put(&mut b, "health_data", a.health_data);
    put(&mut b, "aware_at", a.aware_at.as_ref());
    put(&mut b, "next_update_at", a.next_update_at.as_ref());
    put(&mut b, "impact", a.impact.as_ref());
    put(&mut b, "breach_nature", a.breach_nature.as_ref());
    if !a.data_categories.is_empty() {
        b.insert("data_categories".into(), json!(a.data_categories));
    }
    put(&mut b, "data_subjects_approx", a.data_subjects_approx);
    put(&mut b, "records_approx", a.records_approx);
    put(
        &mut b,
        "likely_consequences",
        a.likely_consequences.as_ref(),
    );
    put(&mut b, "measures_taken", a.measures_taken.as_ref());
    put(&mut b, "customer_title", a.customer_title.as_ref());
    put(&mut b, "customer_summary", a.customer_summary.as_ref());
    if b.is_empty() {
        return Err(Failure::Usage(
            "nothing to change: give at least one of --severity, --phase, --assignee, ... \
             (see `contain incident set --help`)"
                .into(),
        ));
    }
    put(&mut b, "reason", a.reason.as_ref());
    let v = client()?.patch(&format!("/v1/incidents/{}", a.id), &Value::Object(b))?;
    ctx.out(&v, || Ok(changed(&typed(&v)?)))?;
    Ok(0)
}

fn close(ctx: &Ctx, a: &CloseArgs) -> Result<u8, Failure> {
    let mut b = Map::new();
    b.insert("phase".into(), json!("closed"));
    if let Some(r) = &a.lift_all {
        b.insert("lift_all".into(), json!(true));
        b.insert("reason".into(), json!(r));
    }
    if let Some(r) = &a.keep_containment {
        b.insert("keep_containment".into(), json!(true));
        b.insert("reason".into(), json!(r));
    }
    let c = client()?;
    let v = match c.patch(&format!("/v1/incidents/{}", a.id), &Value::Object(b)) {
        Ok(v) => v,
        Err(Failure::Api(mut e)) if e.status == 409 && e.field.as_deref() == Some("phase") => {
            // Closing with live containment: show what is live and the two ways out.
            let q = [
                ("incident", a.id.to_string()),
                ("status", "active".to_string()),
            ];
            if let Ok(l) = c.get(&with_query("/v1/actions", &q)) {
                if let Ok(l) = typed::<ActionList>(&l) {
                    if !l.items.is_empty() {
                        e.detail = Some(format!(
                            "live containment of incident {}:\n{}\nclose with --lift-all REASON \
                             (lifts them now) or --keep-containment REASON (keeps them enforced)",
                            a.id,
                            render::actions(&l.items, ctx.now_ms)
                        ));
                    }
                }
            }
            return Err(Failure::Api(e));
        }
        Err(e) => return Err(e),
    };
    ctx.out(&v, || {
        let i: IncidentView = typed(&v)?;
        let how = match (&a.lift_all, &a.keep_containment) {
            (Some(_), _) => " (live containment lifted)",
            (_, Some(_)) => " (live containment kept)",
            _ => "",
        };
        Ok(format!("{}{how}", changed(&i)))
    })?;
    Ok(0)
}

pub fn notify(ctx: &Ctx, a: &NotifyArgs) -> Result<u8, Failure> {
    let mut b = Map::new();
    b.insert("audience".into(), json!(a.audience));
    b.insert("channel".into(), json!(a.channel));
    put(&mut b, "kind", a.kind.as_ref());
    put(&mut b, "reference", a.reference.as_ref());
    put(&mut b, "note", a.note.as_ref());
    put(&mut b, "notified_at", a.notified_at.as_ref());
    put(&mut b, "notified_by", a.notified_by.as_ref());
    let path = format!("/v1/incidents/{}/notifications", a.incident);
    let v = client()?.post(&path, &Value::Object(b))?;
    ctx.out(&v, || {
        Ok(render::notification(&typed::<NotificationView>(&v)?))
    })?;
    Ok(0)
}

/// The record as the API gives it, to `out` (created 0600: it names people and addresses)
/// or standard output.
pub fn export(incident: i64, out: Option<&Path>, markdown: bool) -> Result<u8, Failure> {
    let (q, accept) = if markdown {
        ("?format=markdown", "text/markdown")
    } else {
        ("", "application/json")
    };
    let path = format!("/v1/incidents/{incident}/export{q}");
    let ans = client()?.send(Method::GET, &path, None, accept)?;
    match out {
        None => std::io::stdout()
            .write_all(&ans.bytes)
            .map_err(|e| Failure::Local(format!("standard output: {e}")))?,
        Some(p) => {
            let io = |e: std::io::Error| Failure::Local(format!("{}: {e}", p.display()));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(p)
                .map_err(io)?;
            f.write_all(&ans.bytes)
                .and_then(|()| f.sync_all())
                .map_err(io)?;
            println!(
                "wrote the record of incident {incident} to {} ({} bytes)",
                p.display(),
                ans.bytes.len()
            );
        }
    }
    Ok(0)
}
