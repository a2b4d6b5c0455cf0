//! Evidence from the edge: Envoy JSON access-log lines, parsed one by one, and matched
//! against containment actions (active at the line's time) and incidents' indicators.

use std::net::IpAddr;

use edge_policy::facts::{parse_source_address, Extractor};
use edge_policy::model::normalize_host;
use edge_policy::naive::{scope_matches, target_matches};
use edge_policy::pixel::PixelRoute;
use edge_policy::request::{for_each_reading, Needs, RawRequest};
use edge_policy::{Facts, Rule, RuleKind};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::facts::Indicators;

/// Longest accepted line, in bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Most lines in one batch.
pub const MAX_LINES: usize = 20_000;

/// One parsed access-log line.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    /// 1-based line number in the batch.
    pub number: usize,
    /// The line as received, trimmed.
    pub raw: String,
    /// SHA-256 (hex) of `raw`: the idempotency key.
    pub hash: String,
    /// `start_time`.
    pub at: i64,
    /// `downstream_remote_address` (or `client_ip`), without the port.
    pub peer: Option<IpAddr>,
    /// Every address in `x_forwarded_for`.
    pub forwarded: Vec<IpAddr>,
    pub method: Option<String>,
    /// Normalised `authority`.
    pub host: Option<String>,
    /// Path and query as logged.
    pub path: Option<String>,
    pub status: Option<i64>,
    pub user_agent: Option<String>,
    /// `edge_containment_rule`: the rule (action) id the edge applied, when logged.
    pub rule_id: Option<i64>,
}

impl LogLine {
    /// Client addresses to match: the peer, then the forwarded-for chain.
    pub fn addresses(&self) -> impl Iterator<Item = (&'static str, IpAddr)> + '_ {
        self.peer
            .map(|p| ("downstream_remote_address", p))
            .into_iter()
            .chain(self.forwarded.iter().map(|a| ("x_forwarded_for", *a)))
    }
}

/// A field that Envoy left empty (`null`, `"-"`, `""`) counts as absent.
fn field<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    match o.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() || s == "-" => None,
        Some(v) => Some(v),
    }
}

fn string(o: &Map<String, Value>, name: &str, max: usize) -> Result<Option<String>, String> {
    match field(o, name) {
        None => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(format!("{name}: longer than {max} bytes")),
        Some(_) => Err(format!("{name}: expected a string")),
    }
}

fn integer(o: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    match field(o, name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{name}: expected an integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}: expected an integer")),
        Some(_) => Err(format!("{name}: expected an integer")),
    }
}

/// Parse one non-blank line. The error names the field at fault.
pub fn parse_line(number: usize, line: &str) -> Result<LogLine, String> {
    let raw = line.trim();
    if raw.len() > MAX_LINE_BYTES {
        return Err(format!("line longer than {MAX_LINE_BYTES} bytes"));
    }
    // Read like every API body: a key given twice is refused, not "last value wins".
    let v: Value = crate::json::parse_value(raw.as_bytes()).map_err(|e| {
        if e.syntax {
            format!("not JSON: {}", e.message)
        } else {
            format!("{}: {}", e.field, e.message)
        }
    })?;
    let Value::Object(o) = v else {
        return Err("not a JSON object".into());
    };
    let start = string(&o, "start_time", 64)?.ok_or("start_time: missing")?;
    let at = crate::clock::parse_rfc3339(&start)
        .ok_or_else(|| "start_time: expected an RFC 3339 time".to_string())?;
    let peer = match string(&o, "downstream_remote_address", 128)?.or(string(&o, "client_ip", 128)?)
    {
        None => None,
        Some(a) => Some(parse_source_address(&a).ok_or_else(|| {
            "downstream_remote_address: expected an IP address (with or without port)".to_string()
        })?),
    };
    let forwarded = match string(&o, "x_forwarded_for", 2048)? {
        None => Vec::new(),
        Some(x) => x
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                parse_source_address(e)
                    .ok_or_else(|| format!("x_forwarded_for: {e:?} is not an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let method = string(&o, "method", 32)?.map(|m| m.to_ascii_uppercase());
    let host =
        string(&o, "authority", 300)?.map(|h| normalize_host(&h.to_ascii_lowercase()).to_string());
    let path = string(&o, "path", 8192)?;
    let status = integer(&o, "response_code")?;
    let user_agent = string(&o, "user_agent", 2048)?;
    let rule_id = integer(&o, "edge_containment_rule")?;
    Ok(LogLine {
        number,
        hash: hex::encode(Sha256::digest(raw.as_bytes())),
        raw: raw.to_string(),
        at,
        peer,
        forwarded,
        method,
        host,
        path,
        status,
        user_agent,
        rule_id,
    })
}

/// Split an NDJSON body into parsed lines and per-line errors (1-based line numbers).
/// Blank lines are skipped.
pub fn parse_batch(body: &str) -> (Vec<LogLine>, Vec<(usize, String)>) {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in body.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(i + 1, line) {
            Ok(l) => ok.push(l),
            Err(e) => errors.push((i + 1, e)),
        }
    }
    (ok, errors)
}

/// A containment action as evidence matching needs it.
#[derive(Clone, Debug)]
pub struct ActionWindow {
    pub rule: Rule,
    pub incident_id: i64,
    pub from: i64,
    /// When it stopped (lifted, expired), if it did.
    pub until: Option<i64>,
}

impl ActionWindow {
    fn live_at(&self, t: i64) -> bool {
        self.from <= t && self.until.is_none_or(|u| t < u)
    }
}

/// An open incident's indicators.
#[derive(Clone, Debug)]
pub struct IncidentIndicators {
    pub incident_id: i64,
    pub indicators: Indicators,
}

/// Why a line is evidence of an incident.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub incident_id: i64,
    /// The lowest matching action id, if an action matched.
    pub action_id: Option<i64>,
    /// Every reason, e.g. `action 3 (block cidr 203.0.113.0/24)`, `indicator cidr ...`.
    pub reasons: Vec<String>,
    /// Machine-readable reasons: `{"action_id": 3}` / `{"indicator": "cidr:..."}`.
    pub keys: Vec<String>,
}

/// The pixel routes an edge uses when its configuration names none (`/p/{pixel}.gif`,
/// `/px/{pixel}.js`, `?pid=`; `edge_policy::pixel::default_routes`).
pub fn default_pixel_routes() -> Vec<PixelRoute> {
    edge_policy::pixel::default_routes()
}

/// Whether an action's rule applies to these facts (an allow-list entry never counts as
/// evidence).
fn covers(r: &Rule, f: &Facts<'_>) -> bool {
    match &r.kind {
        RuleKind::Block(t) => target_matches(t, f),
        RuleKind::Isolate { scope, .. } => scope_matches(scope, f),
        RuleKind::Allow(_) => false,
    }
}

fn describe(r: &Rule) -> String {
    match &r.kind {
        RuleKind::Block(t) => format!("block {t:?}"),
        RuleKind::Allow(t) => format!("allow {t:?}"),
        RuleKind::Isolate { scope, action } => format!("isolate {scope:?} {}", action.as_str()),
    }
}

/// Which incidents a line is evidence of, and why.
pub fn match_line(
    line: &LogLine,
    actions: &[ActionWindow],
    indicators: &[IncidentIndicators],
    pixel_routes: &[PixelRoute],
) -> Vec<Match> {
    let mut out: Vec<Match> = Vec::new();
    let mut add = |incident_id: i64, action: Option<i64>, reason: String, key: String| {
        let m = match out.iter_mut().find(|m| m.incident_id == incident_id) {
            Some(m) => m,
            None => {
                out.push(Match {
                    incident_id,
                    action_id: None,
                    reasons: Vec::new(),
                    keys: Vec::new(),
                });
                out.last_mut().expect("just pushed")
            }
        };
        if let Some(a) = action {
            m.action_id = Some(m.action_id.map_or(a, |x| x.min(a)));
        }
        if !m.keys.contains(&key) {
            m.reasons.push(reason);
            m.keys.push(key);
        }
    };
    // Read the line as an edge reads a request (`edge_policy::request`): every path
    // reading, every pixel id of every route, with each route's case handling.
    let ex = Extractor::for_logs(pixel_routes);
    let req = RawRequest {
        method: line.method.as_deref().unwrap_or(""),
        host: line.host.as_deref().unwrap_or(""),
        path_and_query: line.path.as_deref().unwrap_or(""),
        ..RawRequest::default()
    };
    let addresses: Vec<(&str, Option<IpAddr>)> = if line.peer.is_none() && line.forwarded.is_empty()
    {
        vec![("", None)]
    } else {
        line.addresses().map(|(f, a)| (f, Some(a))).collect()
    };
    let needs = Needs {
        paths: true,
        pixels: true,
        api_keys: false,
    };
    // For each action, the address field through which it first matched.
    let mut hit: Vec<Option<&str>> = vec![None; actions.len()];
    let _ = for_each_reading(needs, &ex, &req, &mut |reading| {
        for (field, ip) in &addresses {
            let facts = Facts {
                client_ip: *ip,
                ..*reading
            };
            for (a, h) in actions.iter().zip(hit.iter_mut()) {
                if h.is_none() && a.live_at(line.at) && covers(&a.rule, &facts) {
                    *h = Some(field);
                }
            }
        }
    });
    for (a, h) in actions.iter().zip(&hit) {
        let id = a.rule.id as i64;
        if line.rule_id == Some(id) {
            add(
                a.incident_id,
                Some(id),
                format!("action {id}: logged as edge_containment_rule"),
                format!("action:{id}"),
            );
        } else if let Some(field) = h {
            let via = if field.is_empty() {
                String::new()
            } else {
                format!(" via {field}")
            };
            add(
                a.incident_id,
                Some(id),
                format!("action {id} ({}){via}", describe(&a.rule)),
                format!("action:{id}"),
            );
        }
    }
    for inc in indicators {
        for (field, ip) in line.addresses() {
            if let Some(net) = inc.indicators.cidrs.iter().find(|n| n.contains(&ip)) {
                add(
                    inc.incident_id,
                    None,
                    format!("indicator cidr {net}: {field} {ip}"),
                    format!("cidr:{net}"),
                );
            }
        }
        if let Some(ua) = &line.user_agent {
            let lower = ua.to_lowercase();
            for needle in &inc.indicators.user_agents {
                if lower.contains(&needle.to_lowercase()) {
                    add(
                        inc.incident_id,
                        None,
                        format!("indicator user_agent {needle:?}"),
                        format!("user_agent:{needle}"),
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_policy::{Isolation, Mode, Scope, Target};

    const LINE: &str = r#"{"start_time":"2026-03-02T10:00:00.123Z","method":"GET","path":"/px/px-4711.js?v=2","protocol":"HTTP/1.1","response_code":200,"authority":"cdn.example.com:443","downstream_remote_address":"203.0.113.7:51234","x_forwarded_for":"-","user_agent":"Mozilla/5.0 EvilBot"}"#;

    #[test]
    fn parses_envoy_lines_and_names_bad_fields() {
        let l = parse_line(1, LINE).unwrap();
        assert_eq!(l.peer, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(l.host.as_deref(), Some("cdn.example.com"));
        assert_eq!(l.status, Some(200));
        assert!(l.forwarded.is_empty());
        for (bad, want) in [
            ("{", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"method":"GET"}"#, "start_time: missing"),
            (r#"{"start_time":"yesterday"}"#, "start_time"),
            (
                r#"{"start_time":"2026-03-02T10:00:00Z","downstream_remote_address":"nope"}"#,
                "downstream_remote_address",
            ),
            (
                r#"{"start_time":"2026-03-02T10:00:00Z","response_code":"abc"}"#,
                "response_code",
            ),
            (
                r#"{"start_time":"2026-03-02T10:00:00Z","x_forwarded_for":"1.2.3.4, x"}"#,
                "x_forwarded_for",
            ),
            // A key given twice is refused (as in every API body), whichever value is good.
            (
                r#"{"start_time":"2026-03-02T10:00:00Z","path":"/a","path":"/b"}"#,
                "path: duplicate key",
            ),
            (
                r#"{"start_time":"2026-03-02T10:00:00Z","start_time":"2026-03-02T10:00:00Z"}"#,
                "start_time: duplicate key",
            ),
        ] {
            let e = parse_line(1, bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        let (ok, errors) = parse_batch(&format!("{LINE}\n\n{{\n{LINE}\n"));
        assert_eq!(ok.len(), 2);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 3);
        assert_eq!(ok[0].hash, ok[1].hash);
    }

    fn window(
        id: u64,
        incident: i64,
        kind: RuleKind,
        from: i64,
        until: Option<i64>,
    ) -> ActionWindow {
        ActionWindow {
            rule: Rule {
                id,
                incident: Some(incident as u64),
                mode: Mode::Enforce,
                expires_at_ms: None,
                kind,
            },
            incident_id: incident,
            from,
            until,
        }
    }

    #[test]
    fn matches_actions_live_at_the_line_time_and_indicators() {
        let l = parse_line(1, LINE).unwrap();
        let t = l.at;
        let actions = vec![
            window(
                1,
                7,
                RuleKind::Block(Target::Ip("203.0.113.0/24".parse().unwrap())),
                t - 1000,
                None,
            ),
            window(
                2,
                7,
                RuleKind::Isolate {
                    scope: Scope::Pixel("px-4711".into()),
                    action: Isolation::PixelKill,
                },
                t - 1000,
                None,
            ),
            window(
                3,
                8,
                RuleKind::Block(Target::Host("cdn.example.com".into())),
                t + 1,
                None,
            ),
            window(
                4,
                8,
                RuleKind::Block(Target::Host("cdn.example.com".into())),
                t - 10,
                Some(t),
            ),
        ];
        let ind = vec![IncidentIndicators {
            incident_id: 9,
            indicators: Indicators {
                cidrs: vec![],
                user_agents: vec!["evilbot".into()],
            },
        }];
        let m = match_line(&l, &actions, &ind, &default_pixel_routes());
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[0].incident_id, 7);
        assert_eq!(m[0].action_id, Some(1));
        assert_eq!(m[0].keys, ["action:1", "action:2"]);
        assert_eq!(m[1].incident_id, 9);
        assert_eq!(m[1].action_id, None);
        assert_eq!(m[1].keys, ["user_agent:evilbot"]);
    }

    #[test]
    fn a_line_is_attributed_as_the_edge_read_the_request() {
        let actions = vec![
            window(
                1,
                7,
                RuleKind::Block(Target::PathPrefix("/admin".into())),
                0,
                None,
            ),
            window(
                2,
                7,
                RuleKind::Isolate {
                    scope: Scope::Pixel("Px-Evil".into()),
                    action: Isolation::PixelKill,
                },
                0,
                None,
            ),
        ];
        let matched = |path: &str, routes: &[PixelRoute]| {
            let line = format!(
                r#"{{"start_time":"2026-03-02T10:00:00Z","method":"GET","path":{path:?},"downstream_remote_address":"198.51.100.1:1"}}"#
            );
            let l = parse_line(1, &line).unwrap();
            let m = match_line(&l, &actions, &[], routes);
            m.first().map(|m| m.keys.clone()).unwrap_or_default()
        };
        let routes = default_pixel_routes();
        for (path, key) in [
            ("//admin/users", "action:1"),
            ("/x/../admin", "action:1"),
            ("/%61dmin", "action:1"),
            ("/x/..%2Fadmin", "action:1"),
            ("/admin;v=1/users", "action:1"),
            ("/p/px-evil.gif", "action:2"),
            ("/p/PX%2DEVIL.gif", "action:2"),
            ("/./px/Px-Evil.js", "action:2"),
            ("/collect?pid=ok&pid=px-evil", "action:2"),
        ] {
            assert_eq!(matched(path, &routes), [key], "{path}");
        }
        for path in ["/administrator", "/p/px-evil2.gif", "/collect?pix=px-evil"] {
            assert_eq!(matched(path, &routes), Vec::<String>::new(), "{path}");
        }
        // A case-sensitive route attributes only the exact id, as the edge enforces it.
        let exact: Vec<PixelRoute> =
            serde_json::from_str(r#"[{"pattern": "/p/{pixel}.gif", "case": "sensitive"}]"#)
                .unwrap();
        assert_eq!(matched("/p/Px-Evil.gif", &exact), ["action:2"]);
        assert_eq!(matched("/p/px-evil.gif", &exact), Vec::<String>::new());
    }
}
