//! Containment: `block`, `allow`, `isolate`, `lift`, and `lookup` (is this contained?).

use control_plane::api::views::ActionView;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::args::{ActArgs, Common, IsolateArgs, Isolation, LookupArgs, TargetArgs};
use crate::client::{typed, with_query, Failure, EXIT_NOT_CONTAINED};
use crate::render::{self, label};
use crate::{client, duration, Ctx};

/// A raw API key from the flag, or from standard input for `-`.
fn api_key(v: &str) -> Result<String, Failure> {
    if v == "-" {
        crate::stdin_secret("--api-key")
    } else {
        Ok(v.to_string())
    }
}

fn target(t: &TargetArgs) -> Result<Value, Failure> {
    let pairs = [
        ("cidr", &t.ip),
        ("account", &t.account),
        ("pixel", &t.pixel),
        ("host", &t.host),
        ("path_prefix", &t.path_prefix),
    ];
    if let Some(k) = &t.api_key {
        return Ok(json!({"api_key": api_key(k)?}));
    }
    pairs
        .iter()
        .find_map(|(k, v)| {
            let v = v.as_ref()?;
            Some(Value::Object(Map::from_iter([(k.to_string(), json!(v))])))
        })
        .ok_or_else(|| {
            Failure::Usage(
                "give one target: --ip, --api-key, --account, --pixel, --host or --path-prefix"
                    .into(),
            )
        })
}

/// The fields every action takes: reason, expiry, mode, force.
fn common(b: &mut Map<String, Value>, c: &Common) -> Result<(), Failure> {
    b.insert("reason".into(), json!(c.reason));
    if let Some(e) = &c.expires_in {
        let secs = duration::parse(e).map_err(|m| Failure::Usage(format!("--expires-in: {m}")))?;
        b.insert("expires_in".into(), json!(secs));
    }
    if let Some(e) = &c.expires_at {
        b.insert("expires_at".into(), json!(e));
    }
    if c.simulate {
        b.insert("mode".into(), json!("simulate"));
    }
    if c.force {
        b.insert("force".into(), json!(true));
    }
    Ok(())
}

fn create(ctx: &Ctx, incident: i64, body: Map<String, Value>) -> Result<u8, Failure> {
    let path = format!("/v1/incidents/{incident}/actions");
    let v = match client()?.post(&path, &Value::Object(body)) {
        Err(Failure::Api(mut e)) if e.code == "guard_rail" => {
            e.detail = Some("add --force to insist (the reason is recorded)".into());
            return Err(Failure::Api(e));
        }
        other => other?,
    };
    let a: ActionView = typed(&v)?;
    for w in &a.warnings {
        eprintln!("warning: {w}");
    }
    ctx.out(&v, || Ok(render::action_line(&a, ctx.now_ms)))?;
    Ok(0)
}

pub fn block_or_allow(ctx: &Ctx, kind: &str, a: &ActArgs) -> Result<u8, Failure> {
    let mut b = Map::new();
    b.insert("kind".into(), json!(kind));
    b.insert("target".into(), target(&a.target)?);
    common(&mut b, &a.common)?;
    create(ctx, a.common.incident, b)
}

pub fn isolate(ctx: &Ctx, a: &IsolateArgs) -> Result<u8, Failure> {
    let s = &a.scope;
    let (scope, default) = match (&s.host, &s.path_prefix, &s.pixel) {
        (Some(h), _, _) => (json!({"host": h}), Isolation::Block),
        (_, Some(p), _) => (json!({"path_prefix": p}), Isolation::Block),
        (_, _, Some(p)) => (json!({"pixel": p}), Isolation::PixelKill),
        _ => {
            return Err(Failure::Usage(
                "give one scope: --host, --path-prefix or --pixel".into(),
            ))
        }
    };
    let isolation = match a.isolation.unwrap_or(default) {
        Isolation::Block => "block",
        Isolation::ReadOnly => "read_only",
        Isolation::PixelKill => "pixel_kill",
    };
    let mut b = Map::new();
    b.insert("kind".into(), json!("isolate"));
    b.insert("scope".into(), scope);
    b.insert("isolation".into(), json!(isolation));
    common(&mut b, &a.common)?;
    create(ctx, a.common.incident, b)
}

pub fn lift(ctx: &Ctx, action: i64, reason: &str) -> Result<u8, Failure> {
    let path = format!("/v1/actions/{action}/lift");
    let v = client()?.post(&path, &json!({ "reason": reason }))?;
    ctx.out(&v, || Ok(render::action_line(&typed(&v)?, ctx.now_ms)))?;
    Ok(0)
}

/// `GET /v1/lookup`'s answer.
#[derive(Debug, Deserialize)]
pub struct Lookup {
    pub kind: String,
    pub value: String,
    pub contained: bool,
    pub matches: Vec<LookupMatch>,
}

#[derive(Debug, Deserialize)]
pub struct LookupMatch {
    pub action: ActionView,
    pub matched: String,
}

/// The lookup's human answer: a verdict line, then the matching actions.
pub fn lookup_text(l: &Lookup, now_ms: i64) -> String {
    let verdict = if l.contained {
        "CONTAINED"
    } else {
        "not contained"
    };
    let mut out = format!("{} {}: {verdict}", l.kind, l.value);
    if l.matches.is_empty() {
        out.push_str(" (no active action matches)");
        return out;
    }
    out.push_str(&format!(
        "\n{}",
        render::actions(l.matches.iter().map(|m| &m.action), now_ms)
    ));
    for m in &l.matches {
        out.push_str(&format!(
            "\n#{} ({} {}) matched {}",
            m.action.id,
            label(&m.action.kind),
            label(&m.action.mode),
            m.matched
        ));
    }
    out
}

/// Exit 0 when contained, 1 when not: `contain lookup --ip X && echo contained`.
pub fn lookup(ctx: &Ctx, a: &LookupArgs) -> Result<u8, Failure> {
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(k) = &a.api_key {
        q.push(("api_key", api_key(k)?));
    }
    for (k, v) in [
        ("ip", &a.ip),
        ("account", &a.account),
        ("pixel", &a.pixel),
        ("host", &a.host),
        ("path", &a.path),
    ] {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    if q.is_empty() {
        return Err(Failure::Usage(
            "give one of --ip, --api-key, --account, --pixel, --host (with or without --path), or --path".into(),
        ));
    }
    let v = client()?.get(&with_query("/v1/lookup", &q))?;
    let l: Lookup = typed(&v)?;
    ctx.out(&v, || Ok(lookup_text(&l, ctx.now_ms)))?;
    Ok(if l.contained { 0 } else { EXIT_NOT_CONTAINED })
}
