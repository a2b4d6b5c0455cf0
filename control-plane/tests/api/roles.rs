//! The role table: every endpoint × every kind of caller → expected status.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{Req, TestServer};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Setup {
    None,
    /// `{action}` is a fresh active action.
    FreshAction,
    /// `{token}` is a fresh unrevoked token.
    FreshToken,
}

struct Row {
    method: Method,
    path: &'static str,
    body: Option<fn(usize) -> Value>,
    /// Roles allowed besides admin; `None`: public (no token needed).
    allowed: Option<&'static [&'static str]>,
    ok: u16,
    setup: Setup,
}

const READ: Option<&[&str]> = Some(&["responder", "viewer"]);
const WRITE: Option<&[&str]> = Some(&["responder"]);
const EDGE: Option<&[&str]> = Some(&["edge"]);
const ADMIN: Option<&[&str]> = Some(&[]);
const INGEST: Option<&[&str]> = Some(&["edge", "responder"]);
const INTAKE: Option<&[&str]> = Some(&["intake"]);

fn pm(_: usize) -> Value {
    json!({"lessons_learned": "l", "root_cause": "r", "attack_vectors": ["v"], "data_impact": "none",
        "follow_ups": [{"item": "i", "owner": "o"}]})
}

fn rows() -> Vec<Row> {
    use Method as M;
    let r = |method, path, body, allowed, ok, setup| Row {
        method,
        path,
        body,
        allowed,
        ok,
        setup,
    };
    vec![
        r(
            M::POST,
            "/v1/incidents",
            Some((|n| json!({"title": format!("i{n}"), "severity": "low"})) as fn(usize) -> Value),
            WRITE,
            201,
            Setup::None,
        ),
        r(M::GET, "/v1/incidents", None, READ, 200, Setup::None),
        r(
            M::GET,
            "/v1/incidents/{incident}",
            None,
            READ,
            200,
            Setup::None,
        ),
        r(
            M::PATCH,
            "/v1/incidents/{incident}",
            Some(|n| json!({"assignee": format!("a{n}")})),
            WRITE,
            200,
            Setup::None,
        ),
        r(
            M::GET,
            "/v1/incidents/{incident}/timeline",
            None,
            READ,
            200,
            Setup::None,
        ),
        r(
            M::POST,
            "/v1/incidents/{incident}/actions",
            Some(
                |n| json!({"kind": "block", "target": {"host": format!("h{n}.example")}, "reason": "r"}),
            ),
            WRITE,
            201,
            Setup::None,
        ),
        r(M::GET, "/v1/actions", None, READ, 200, Setup::None),
        r(M::GET, "/v1/actions/{action}", None, READ, 200, Setup::None),
        r(
            M::POST,
            "/v1/actions/{action}/lift",
            Some(|_| json!({"reason": "done"})),
            WRITE,
            200,
            Setup::FreshAction,
        ),
        r(M::GET, "/v1/audit", None, READ, 200, Setup::None),
        r(M::GET, "/v1/audit/verify", None, READ, 200, Setup::None),
        r(M::GET, "/v1/edge/policy", None, EDGE, 200, Setup::None),
        r(
            M::POST,
            "/v1/edge/reports",
            Some(
                |n| json!({"edge_id": "e1", "boot_id": "b1", "seq": n, "policy_version": 1, "hits": []}),
            ),
            EDGE,
            204,
            Setup::None,
        ),
        r(M::GET, "/v1/edges", None, READ, 200, Setup::None),
        r(
            M::POST,
            "/v1/tokens",
            Some(|n| json!({"name": format!("t{n}"), "role": "viewer"})),
            ADMIN,
            201,
            Setup::None,
        ),
        r(M::GET, "/v1/tokens", None, ADMIN, 200, Setup::None),
        r(
            M::DELETE,
            "/v1/tokens/{token}",
            None,
            ADMIN,
            200,
            Setup::FreshToken,
        ),
        r(
            M::POST,
            "/v1/incidents/{incident}/notifications",
            Some(|_| json!({"audience": "staff", "channel": "email"})),
            WRITE,
            201,
            Setup::None,
        ),
        r(
            M::GET,
            "/v1/incidents/{incident}/notifications",
            None,
            READ,
            200,
            Setup::None,
        ),
        r(
            M::PUT,
            "/v1/incidents/{incident}/postmortem",
            Some(pm),
            WRITE,
            200,
            Setup::None,
        ),
        r(
            M::GET,
            "/v1/incidents/{incident}/postmortem",
            None,
            READ,
            200,
            Setup::None,
        ),
        r(
            M::GET,
            "/v1/incidents/{incident}/deadlines",
            None,
            READ,
            200,
            Setup::None,
        ),
        r(
            M::GET,
            "/v1/deadlines?status=overdue",
            None,
            READ,
            200,
            Setup::None,
        ),
        r(
            M::GET,
            "/v1/incidents/{incident}/documents/internal_alert",
            None,
            READ,
            200,
            Setup::None,
        ),
        r(
            M::GET,
            "/v1/incidents/{incident}/export",
            None,
            READ,
            200,
            Setup::None,
        ),
        r(
            M::GET,
            "/v1/incidents/{incident}/evidence",
            None,
            READ,
            200,
            Setup::None,
        ),
        r(
            M::POST,
            "/v1/evidence/access-logs",
            // A JSON string body is sent as NDJSON text.
            Some(|n| {
                Value::String(format!(
                    "{{\"start_time\": \"2026-01-01T00:00:{:02}Z\", \"downstream_remote_address\": \"192.0.2.1\"}}",
                    n % 60
                ))
            }),
            INGEST,
            200,
            Setup::None,
        ),
        r(M::GET, "/v1/settings", None, READ, 200, Setup::None),
        r(
            M::POST,
            "/v1/intake/alertmanager",
            Some(|n| {
                json!({"version": "4", "groupKey": format!("roles-{n}"), "status": "firing",
                    "alerts": [{"status": "firing", "labels": {"alertname": "RoleCheck"}}]})
            }),
            INTAKE,
            200,
            Setup::None,
        ),
        r(
            M::PATCH,
            "/v1/settings",
            Some(|n| json!({"company_name": format!("Example Shop {n}")})),
            ADMIN,
            200,
            Setup::None,
        ),
        r(
            M::GET,
            "/v1/lookup?ip=198.51.100.7",
            None,
            READ,
            200,
            Setup::None,
        ),
        r(M::GET, "/healthz", None, None, 200, Setup::None),
        r(M::GET, "/metrics", None, None, 200, Setup::None),
        r(M::GET, "/openapi.json", None, None, 200, Setup::None),
    ]
}

#[tokio::test]
async fn role_table() {
    let s = TestServer::start().await;
    let api = &s.api;
    let admin = s.admin.clone();
    let (_, responder) = api.new_token(&admin, "resp", "responder").await;
    let (_, viewer) = api.new_token(&admin, "view", "viewer").await;
    let (_, edge) = api.new_token(&admin, "edge", "edge").await;
    let (_, intake) = api.new_token(&admin, "intake", "intake").await;
    let (revoked_id, revoked) = api.new_token(&admin, "gone", "responder").await;
    let r = api
        .send(
            Method::DELETE,
            &format!("/v1/tokens/{revoked_id}"),
            Req::token(&admin),
        )
        .await;
    assert_eq!(r.status, 200);
    let incident = api.new_incident(&admin, "fixture").await;
    let action = api.block_host(&admin, incident, "fixture.example").await["id"]
        .as_i64()
        .unwrap();
    let facts = json!({"impact": "fixture", "next_update_at": "2026-01-01T00:00:00Z"});
    let r = api
        .patch(&format!("/v1/incidents/{incident}"), &admin, facts)
        .await;
    assert_eq!(r.status, 200);
    let r = api
        .send(
            Method::PUT,
            &format!("/v1/incidents/{incident}/postmortem"),
            Req::token(&admin).json(pm(0)),
        )
        .await;
    assert_eq!(r.status, 200);

    // (caller name, Authorization token, role or the status every protected endpoint gives)
    let callers: Vec<(&str, Option<String>, Result<&str, u16>)> = vec![
        ("none", None, Err(401)),
        (
            "invalid",
            Some("ecp_0000000000000000000000000000000000000000000000000000000000000000".into()),
            Err(401),
        ),
        ("empty", Some(String::new()), Err(401)),
        ("revoked", Some(revoked), Err(401)),
        ("admin", Some(admin.clone()), Ok("admin")),
        ("responder", Some(responder), Ok("responder")),
        ("viewer", Some(viewer), Ok("viewer")),
        ("edge", Some(edge), Ok("edge")),
        ("intake", Some(intake), Ok("intake")),
    ];
    let mut n = 0;
    let mut checked = 0;
    for row in rows() {
        for (caller, token, role) in &callers {
            n += 1;
            let mut path = row
                .path
                .replace("{incident}", &incident.to_string())
                .replace("{action}", &action.to_string());
            match row.setup {
                Setup::None => {}
                Setup::FreshAction => {
                    let id = api
                        .block_host(&admin, incident, &format!("lift{n}.example"))
                        .await["id"]
                        .as_i64()
                        .unwrap();
                    path = row.path.replace("{action}", &id.to_string());
                }
                Setup::FreshToken => {
                    let (id, _) = api.new_token(&admin, &format!("victim{n}"), "viewer").await;
                    path = row.path.replace("{token}", &id.to_string());
                }
            }
            let mut req = Req {
                token: token.clone(),
                ..Req::default()
            };
            if let Some(body) = row.body {
                req = match body(n) {
                    Value::String(text) => req.raw(text, "application/x-ndjson"),
                    v => req.json(v),
                };
            }
            let expected = match (row.allowed, role) {
                (None, _) => row.ok,
                (Some(_), Err(status)) => *status,
                (Some(_), Ok("admin")) => row.ok,
                (Some(allowed), Ok(r)) if allowed.contains(r) => row.ok,
                (Some(_), Ok(_)) => 403,
            };
            let resp = api.send(row.method.clone(), &path, req).await;
            assert_eq!(
                resp.status,
                expected,
                "{} {} as {caller}: body {}",
                row.method,
                row.path,
                String::from_utf8_lossy(&resp.bytes)
            );
            if expected == 401 {
                assert_eq!(resp.json["error"]["code"], "unauthenticated");
                assert_eq!(resp.header("www-authenticate"), Some("Bearer"));
            }
            if expected == 403 {
                assert_eq!(resp.json["error"]["code"], "forbidden");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, rows().len() * callers.len());
    // Denied writes wrote nothing: the chain is intact and every actor is a token name.
    let v = api.verify(&admin).await;
    assert_eq!(v["ok"], true, "{v}");
}
