//! The contract, walked from the served document: for every operation, a request that
//! should succeed (the documented example body, admin token) and one per documented error
//! status; every answer's status must be one the document lists for the operation, and its
//! body must validate against the document's schema for that status (JSON Schema 2020-12,
//! formats checked). Then, per request-body property, a wrong-typed value must give 422
//! naming the field in JSON words, never a Rust type name.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{expect_status, parse_raw, read_until_closed, Api, Req, Resp, TestServer};

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// The operation `method path` of the document.
struct Op<'a> {
    method: &'a str,
    template: &'a str,
    spec: &'a Value,
}

impl Op<'_> {
    fn what(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.template)
    }
    fn secured(&self) -> bool {
        self.spec["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    }
    fn documents(&self, status: u16) -> bool {
        self.spec["responses"].get(status.to_string()).is_some()
    }
    fn statuses(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.spec["responses"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, _)| k.parse().ok())
            .collect();
        v.sort();
        v
    }
    fn query_params(&self) -> Vec<&Value> {
        self.spec["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .collect()
    }
    /// The request body's content type and example.
    fn body(&self) -> Option<(&str, &Value)> {
        let content = self.spec["requestBody"]["content"].as_object()?;
        let (ct, media) = content.iter().next()?;
        Some((ct.as_str(), &media["example"]))
    }
}

/// Resolve a response (or its `$ref`) and check `resp` against it.
fn check_answer(doc: &Value, op: &Op, resp: &Resp, what: &str) {
    let body = String::from_utf8_lossy(&resp.bytes);
    assert!(
        op.documents(resp.status),
        "{what}: status {} is not documented for {} (documented: {:?}); body {body}",
        resp.status,
        op.what(),
        op.statuses()
    );
    let mut spec = &op.spec["responses"][resp.status.to_string()];
    if let Some(r) = spec["$ref"].as_str() {
        spec = doc.pointer(&r[1..]).unwrap();
    }
    let Some(content) = spec["content"].as_object() else {
        assert!(resp.bytes.is_empty(), "{what}: undocumented body {body}");
        return;
    };
    let ct = resp.header("content-type").unwrap_or("");
    let Some((_, media)) = content.iter().find(|(k, _)| {
        ct.starts_with(k.as_str()) || (k.as_str() == "application/json" && ct.contains("json"))
    }) else {
        panic!(
            "{what}: content type {ct:?} not among {:?}",
            content.keys().collect::<Vec<_>>()
        );
    };
    if !ct.contains("json") {
        return;
    }
    let schema = &media["schema"];
    let mut root = doc.clone();
    root["$defs"] = json!({"answer": schema});
    root["$ref"] = json!("#/$defs/answer");
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{what}: schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&resp.json)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {} answer does not match its documented schema:\n{}\nbody: {body}",
        resp.status,
        errors.join("\n")
    );
}

struct Fixture {
    admin: String,
    tokens: Vec<(&'static str, String)>,
    incident: i64,
    /// Personal data, no facts, no post-mortem: closing it is 409, documents are 422.
    bare: i64,
    action: i64,
    token_id: i64,
}

async fn fixture(s: &TestServer) -> Fixture {
    let api = &s.api;
    let a = &s.admin;
    let mut tokens = Vec::new();
    for role in ["viewer", "edge", "responder"] {
        tokens.push((role, api.new_token(a, &format!("c-{role}"), role).await.1));
    }
    let r = api
        .post(
            "/v1/incidents",
            a,
            json!({"title": "contract", "severity": "P2", "summary": "s", "impact": "i",
                "systems_affected": ["web"], "next_update_at": "2031-01-01T00:00:00Z"}),
        )
        .await;
    let incident = expect_status(&r, 201)["id"].as_i64().unwrap();
    let r = api
        .post(
            "/v1/incidents",
            a,
            json!({"title": "bare", "severity": "P3", "personal_data": true}),
        )
        .await;
    let bare = expect_status(&r, 201)["id"].as_i64().unwrap();
    let action = api.block_host(a, incident, "contract.example").await["id"]
        .as_i64()
        .unwrap();
    let pm = json!({"lessons_learned": "l", "root_cause": "r", "attack_vectors": ["v"],
        "data_impact": "none", "follow_ups": []});
    let r = api
        .send(
            Method::PUT,
            &format!("/v1/incidents/{incident}/postmortem"),
            Req::token(a).json(pm),
        )
        .await;
    expect_status(&r, 200);
    let token_id = api.new_token(a, "to-revoke", "viewer").await.0;
    Fixture {
        admin: a.clone(),
        tokens,
        incident,
        bare,
        action,
        token_id,
    }
}

fn path_for(template: &str, f: &Fixture, id: &str) -> String {
    if template == "/v1/lookup" {
        return "/v1/lookup?ip=203.0.113.7".into();
    }
    let id = match id {
        "" if template.starts_with("/v1/actions/") => f.action.to_string(),
        "" if template.starts_with("/v1/tokens/") => f.token_id.to_string(),
        "" => f.incident.to_string(),
        other => other.to_string(),
    };
    template
        .replace("{id}", &id)
        .replace("{kind}", "internal_alert")
}

fn request(token: Option<&str>, body: Option<(&str, &Value)>) -> Req {
    let mut req = match token {
        Some(t) => Req::token(t),
        None => Req::default(),
    };
    if let Some((ct, example)) = body {
        let text = match example {
            Value::String(s) if !ct.contains("json") => s.clone(),
            v => v.to_string(),
        };
        req = req.raw(
            text,
            if ct.contains("ndjson") {
                "application/x-ndjson"
            } else {
                "application/json"
            },
        );
    }
    req
}

async fn send(api: &Api, op: &Op<'_>, path: &str, req: Req) -> Resp {
    let method: Method = op.method.to_uppercase().parse().unwrap();
    api.send(method, path, req).await
}

#[tokio::test]
async fn every_operation_answers_as_documented() {
    let mut settings = TestServer::settings();
    settings.max_body_bytes = 64 * 1024;
    settings.max_evidence_bytes = 64 * 1024;
    settings.conn.body_read_timeout = Duration::from_millis(500);
    let s = TestServer::start_with(settings).await;
    let api = &s.api;
    let doc = expect_status(
        &api.send(Method::GET, "/openapi.json", Req::default()).await,
        200,
    )
    .clone();
    let f = fixture(&s).await;
    let mut checked = 0;
    let mut statuses_seen = std::collections::BTreeSet::new();
    let paths = doc["paths"].as_object().unwrap();
    for (template, item) in paths {
        for method in METHODS {
            let Some(spec) = item.get(method) else {
                continue;
            };
            let op = Op {
                method,
                template,
                spec,
            };
            // Moving or linking needs another incident than the action's own.
            let refile;
            let body = match op.body() {
                Some((ct, v)) if template.ends_with("/move") || template.ends_with("/link") => {
                    let mut v = v.clone();
                    v["incident_id"] = json!(f.bare);
                    refile = v;
                    Some((ct, &refile))
                }
                b => b,
            };
            let token = op.secured().then_some(f.admin.as_str());
            let mut check = |resp: &Resp, what: &str| {
                check_answer(&doc, &op, resp, &format!("{} {what}", op.what()));
                statuses_seen.insert(resp.status);
                checked += 1;
            };
            // Success.
            let path = path_for(template, &f, "");
            let ok = send(api, &op, &path, request(token, body)).await;
            assert!(
                (200..300).contains(&ok.status),
                "{}: the documented example failed: {} {}",
                op.what(),
                ok.status,
                String::from_utf8_lossy(&ok.bytes)
            );
            check(&ok, "success");
            for status in op.statuses().into_iter().filter(|s| *s >= 300) {
                let resp = match status {
                    304 => {
                        let v = ok.header("x-policy-version").unwrap().to_string();
                        send(api, &op, &format!("{path}?since={v}"), request(token, None)).await
                    }
                    401 => send(api, &op, &path, request(None, body)).await,
                    403 => {
                        let mut got = None;
                        for (_, t) in &f.tokens {
                            let r = send(api, &op, &path, request(Some(t), body)).await;
                            if r.status == 403 {
                                got = Some(r);
                                break;
                            }
                        }
                        got.unwrap_or_else(|| {
                            panic!("{}: no role gets the documented 403", op.what())
                        })
                    }
                    400 => {
                        if template.contains("{id}") {
                            send(
                                api,
                                &op,
                                &path_for(template, &f, "abc"),
                                request(token, body),
                            )
                            .await
                        } else if !op.query_params().is_empty() {
                            // Every query is strict: an unknown parameter is refused.
                            send(api, &op, &format!("{path}?bogus=1"), request(token, body)).await
                        } else {
                            let bad = Req::token(&f.admin).raw("{", "application/json");
                            send(api, &op, &path, bad).await
                        }
                    }
                    404 => {
                        let p = if template.contains("{id}") {
                            path_for(template, &f, "999999")
                        } else {
                            // An unknown incident named in the query (`/v1/deadlines`).
                            format!("{path}?incident=999999")
                        };
                        send(api, &op, &p, request(token, body)).await
                    }
                    408 => {
                        let Some((ct, _)) = body else { continue };
                        let head = format!(
                            "{} {path} HTTP/1.1\r\nHost: cp\r\nAuthorization: Bearer {}\r\nContent-Type: {ct}\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{",
                            op.method.to_uppercase(),
                            f.admin
                        );
                        let mut c = tokio::net::TcpStream::connect(api.addr).await.unwrap();
                        tokio::io::AsyncWriteExt::write_all(&mut c, head.as_bytes())
                            .await
                            .unwrap();
                        let (got, _) = read_until_closed(&mut c, Duration::from_secs(20)).await;
                        let (status, json) = parse_raw(&got);
                        let text = String::from_utf8_lossy(&got).to_string();
                        let ct = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-type: ")
                                    .map(str::to_string)
                            })
                            .unwrap_or_default();
                        let mut headers = reqwest::header::HeaderMap::new();
                        headers.insert("content-type", ct.parse().unwrap());
                        let bytes = text
                            .split_once("\r\n\r\n")
                            .map(|(_, b)| b.as_bytes().to_vec())
                            .unwrap_or_default();
                        Resp {
                            status,
                            headers,
                            bytes,
                            json,
                        }
                    }
                    413 => {
                        let Some((ct, _)) = body else { continue };
                        let big = format!("\"{}\"", "x".repeat(128 * 1024));
                        let ct = if ct.contains("ndjson") {
                            "application/x-ndjson"
                        } else {
                            "application/json"
                        };
                        send(api, &op, &path, Req::token(&f.admin).raw(big, ct)).await
                    }
                    415 => send(api, &op, &path, Req::token(&f.admin).raw("a,b", "text/csv")).await,
                    422 => match body {
                        Some((ct, _)) if ct.contains("ndjson") => {
                            send(
                                api,
                                &op,
                                &path,
                                Req::token(&f.admin).raw("\n", "application/x-ndjson"),
                            )
                            .await
                        }
                        Some(_) => {
                            let r = Req::token(&f.admin).json(json!({"bogus": 1}));
                            send(api, &op, &path, r).await
                        }
                        None => {
                            let p = path_for(template, &f, &f.bare.to_string());
                            send(api, &op, &p, request(token, None)).await
                        }
                    },
                    409 => {
                        let (p, b) = match template.as_str() {
                            "/v1/incidents/{id}" => (
                                path_for(template, &f, &f.bare.to_string()),
                                Some(json!({"phase": "closed"})),
                            ),
                            _ => (path.clone(), body.map(|b| b.1.clone())),
                        };
                        let mut r = Req::token(&f.admin);
                        if let Some(b) = b {
                            r = r.json(b);
                        }
                        send(api, &op, &p, r).await
                    }
                    // 500 and /healthz's 503 cannot be caused from outside.
                    500 | 503 => continue,
                    other => panic!("{}: no test for documented status {other}", op.what()),
                };
                assert_eq!(
                    resp.status,
                    status,
                    "{}: expected the documented {status}: {}",
                    op.what(),
                    String::from_utf8_lossy(&resp.bytes)
                );
                check(&resp, &format!("{status}"));
            }
        }
    }
    assert!(checked > 150, "only {checked} answers checked");
    for s in [
        200, 201, 204, 304, 400, 401, 403, 404, 408, 409, 413, 415, 422,
    ] {
        assert!(statuses_seen.contains(&s), "no {s} was checked");
    }
}

/// A value of the wrong JSON type for a property of this schema.
fn wrong_type(schema: &Value) -> Value {
    let ty = schema["type"].clone();
    let types: Vec<&str> = match &ty {
        Value::String(t) => vec![t.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if types.contains(&"boolean") || types.contains(&"integer") || types.contains(&"number") {
        json!({"not": "this"})
    } else if types.contains(&"string") {
        json!([1])
    } else {
        json!(true)
    }
}

#[tokio::test]
async fn wrong_types_anywhere_are_422_naming_the_field_in_json_words() {
    let s = TestServer::start().await;
    let api = &s.api;
    let doc = expect_status(
        &api.send(Method::GET, "/openapi.json", Req::default()).await,
        200,
    )
    .clone();
    let f = fixture(&s).await;
    let rust_words = [
        "u8", "u16", "u32", "u64", "usize", "i32", "i64", "isize", "f64", "struct", "enum",
        "Option", "Vec<", "::", "sequence", "untagged",
    ];
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(spec) = item.get(method) else {
                continue;
            };
            let op = Op {
                method,
                template,
                spec,
            };
            let Some((ct, example)) = op.body() else {
                continue;
            };
            if !ct.contains("json") || ct.contains("ndjson") {
                continue;
            }
            let mut schema = &spec["requestBody"]["content"][ct]["schema"];
            if let Some(r) = schema["$ref"].as_str() {
                schema = doc.pointer(&r[1..]).unwrap();
            }
            let before = s.counts().await;
            for (name, prop) in schema["properties"].as_object().unwrap() {
                let mut prop = prop;
                if let Some(r) = prop["$ref"].as_str() {
                    prop = doc.pointer(&r[1..]).unwrap();
                }
                let mut body = example.clone();
                body[name] = wrong_type(prop);
                let path = path_for(template, &f, &f.bare.to_string());
                let r = send(api, &op, &path, Req::token(&f.admin).json(body.clone())).await;
                let what = format!("{} with {body}", op.what());
                let got = String::from_utf8_lossy(&r.bytes);
                assert_eq!(r.status, 422, "{what}: {got}");
                check_answer(&doc, &op, &r, &what);
                let err = &r.json["error"];
                let field = err["field"].as_str().unwrap_or("");
                assert!(
                    field == name.as_str()
                        || field.starts_with(&format!("{name}."))
                        || field.starts_with(&format!("{name}[")),
                    "{what}: field {field}"
                );
                let msg = err["message"].as_str().unwrap();
                for w in rust_words {
                    assert!(!msg.contains(w), "{what}: {msg:?} names a Rust type ({w})");
                }
                checked += 1;
            }
            assert_eq!(before, s.counts().await, "{} wrote something", op.what());
        }
    }
    assert!(checked > 40, "only {checked} fields checked");
}
