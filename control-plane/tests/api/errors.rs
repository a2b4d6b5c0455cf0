//! One error shape on every path, the cases the outside testers found: router 404/405,
//! wrong JSON types on enum and target fields, out-of-range numbers, `expires_in` wording
//! and integral floats, the bearer scheme's case, unknown and revoked tokens, edge report
//! numbers and unknown rule ids, duplicate keys in bodies and in evidence lines.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{expect_error, expect_status, Req, TestServer};

/// Words of Rust, not of JSON, that no message may contain.
const RUST_WORDS: [&str; 8] = [
    "u64",
    "i64",
    "struct",
    "enum",
    "ExpiresIn",
    "untagged",
    "Option",
    "::",
];

fn no_rust_words(body: &Value) {
    let msg = body["error"]["message"].as_str().unwrap_or("");
    for w in RUST_WORDS {
        assert!(!msg.contains(w), "{msg:?} contains {w:?}");
    }
}

#[tokio::test]
async fn router_404_and_405_have_the_error_body() {
    let s = TestServer::start().await;
    let api = &s.api;
    let r = api
        .send(Method::DELETE, "/v1/incidents", Req::token(&s.admin))
        .await;
    expect_error(&r, 405, Some("method"), Some("method_not_allowed"));
    let r = api.send(Method::PUT, "/healthz", Req::default()).await;
    expect_error(&r, 405, Some("method"), Some("method_not_allowed"));
    let r = api.get("/v1/nothing-here", &s.admin).await;
    expect_error(&r, 404, None, Some("not_found"));
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn wrong_types_and_shapes_are_422_naming_the_field() {
    let s = TestServer::start().await;
    let api = &s.api;
    let t = &s.admin;
    let inc = api.new_incident(t, "shapes").await;
    let actions = format!("/v1/incidents/{inc}/actions");
    let before = s.counts().await;
    for (body, field) in [
        // A number for an enum field.
        (
            json!({"kind": 5, "target": {"cidr": "10.9.0.0/16"}, "reason": "r"}),
            "kind",
        ),
        (
            json!({"kind": "block", "mode": ["enforce"], "target": {"cidr": "10.9.0.0/16"}, "reason": "r"}),
            "mode",
        ),
        // A target with two keys, and one with none.
        (
            json!({"kind": "block", "target": {"cidr": "10.9.0.0/16", "host": "a.example"}, "reason": "r"}),
            "target",
        ),
        (
            json!({"kind": "block", "target": {}, "reason": "r"}),
            "target",
        ),
        (
            json!({"kind": "block", "target": {"cidr": 7}, "reason": "r"}),
            "target.cidr",
        ),
        // expires_in: neither seconds nor a duration.
        (
            json!({"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "expires_in": "x"}),
            "expires_in",
        ),
        (
            json!({"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "expires_in": true}),
            "expires_in",
        ),
        (
            json!({"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "expires_in": 1.5}),
            "expires_in",
        ),
    ] {
        let r = api.post(&actions, t, body.clone()).await;
        expect_error(&r, 422, Some(field), Some("invalid_field"));
        no_rust_words(&r.json);
    }
    // 1e309 is valid JSON syntax but no number: 422 on its field, not 400.
    for (path, raw, field) in [
        (
            actions.as_str(),
            r#"{"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "expires_in": 1e309}"#,
            "expires_in",
        ),
        (
            "/v1/incidents",
            r#"{"title": "t", "severity": "P1", "records_approx": 1e309}"#,
            "records_approx",
        ),
    ] {
        let r = api
            .send(
                Method::POST,
                path,
                Req::token(t).raw(raw, "application/json"),
            )
            .await;
        expect_error(&r, 422, Some(field), Some("invalid_field"));
    }
    // An array where an object is expected is not the object's fields in order.
    for (path, body, field) in [
        (
            "/v1/incidents",
            json!({"title": "t", "severity": "P1", "indicators": []}),
            "indicators",
        ),
        (
            "/v1/incidents",
            json!({"title": "t", "severity": "P1", "indicators": [["10.0.0.0/8"], []]}),
            "indicators",
        ),
        ("/v1/incidents", json!(["t", "", "P1"]), "body"),
        (
            actions.as_str(),
            json!({"kind": "block", "target": ["10.9.0.0/16"], "reason": "r"}),
            "target",
        ),
    ] {
        let r = api.post(path, t, body.clone()).await;
        expect_error(&r, 422, Some(field), Some("invalid_field"));
        no_rust_words(&r.json);
        let msg = r.json["error"]["message"].as_str().unwrap();
        assert!(msg.contains("array"), "{body}: {msg}");
    }
    // A key given twice is refused, as it would be ambiguous.
    let raw =
        r#"{"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "a", "reason": "b"}"#;
    let r = api
        .send(
            Method::POST,
            &actions,
            Req::token(t).raw(raw, "application/json"),
        )
        .await;
    expect_error(&r, 422, Some("reason"), Some("invalid_field"));
    let r = api.post(&actions, t, json!({"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "expires_in": true})).await;
    let msg = r.json["error"]["message"].as_str().unwrap();
    assert!(msg.contains("\"90s\""), "{msg}");
    assert_eq!(before, s.counts().await);
}

#[tokio::test]
async fn integers_take_integral_json_numbers() {
    let s = TestServer::start().await;
    let api = &s.api;
    let t = &s.admin;
    let inc = api.new_incident(t, "floats").await;
    let a = api
        .new_action(t, inc, json!({"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "expires_in": 3600.0}))
        .await;
    assert!(a["expires_at"].is_string(), "{a}");
    let r = api
        .post(
            "/v1/incidents",
            t,
            json!({"title": "t", "severity": "P1", "records_approx": 1.2e3}),
        )
        .await;
    assert_eq!(expect_status(&r, 201)["records_approx"], 1200);
    let r = api.get("/v1/actions?limit=5", t).await;
    expect_status(&r, 200);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_bad_tokens_look_alike() {
    let s = TestServer::start().await;
    let api = &s.api;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = api
            .send(
                Method::GET,
                "/v1/incidents",
                Req::default().header("authorization", format!("{scheme} {}", s.admin)),
            )
            .await;
        expect_status(&r, 200);
    }
    let r = api
        .send(
            Method::GET,
            "/v1/incidents",
            Req::default().header("authorization", format!("Basic {}", s.admin)),
        )
        .await;
    expect_error(&r, 401, None, Some("unauthenticated"));
    // Unknown and revoked tokens get the same answer.
    let (id, revoked) = api.new_token(&s.admin, "gone", "viewer").await;
    let r = api
        .send(
            Method::DELETE,
            &format!("/v1/tokens/{id}"),
            Req::token(&s.admin),
        )
        .await;
    expect_status(&r, 200);
    let unknown = control_plane::domain::token::generate();
    let a = api.get("/v1/incidents", &revoked).await;
    let b = api.get("/v1/incidents", &unknown).await;
    expect_error(&a, 401, None, Some("unauthenticated"));
    assert_eq!((a.status, &a.json), (b.status, &b.json));
    assert!(!a.bytes.windows(7).any(|w| w == b"revoked"), "{:?}", a.json);
}

#[tokio::test]
async fn edge_report_numbers_are_checked_without_wrapping() {
    let s = TestServer::start().await;
    let api = &s.api;
    let (_, edge) = api.new_token(&s.admin, "edge", "edge").await;
    let report = |seq: Value, rule: Value| {
        format!(
            r#"{{"edge_id": "e", "boot_id": "b", "seq": {seq}, "policy_version": 1, "hits": [{{"rule_id": {rule}, "count": 1}}]}}"#
        )
    };
    let max = i64::MAX as u64;
    let before = s.counts().await;
    for (seq, rule, field, says) in [
        (json!(max + 1), json!(1), "seq", "1..=9223372036854775807"),
        (json!(u64::MAX), json!(1), "seq", "1..=9223372036854775807"),
        (json!(0), json!(1), "seq", "1..="),
        (json!(1), json!(0), "hits[0].rule_id", "1..="),
        (json!(1), json!(max + 1), "hits[0].rule_id", "1..="),
    ] {
        let r = api
            .send(
                Method::POST,
                "/v1/edge/reports",
                Req::token(&edge).raw(report(seq, rule), "application/json"),
            )
            .await;
        expect_error(&r, 422, Some(field), Some("invalid_field"));
        let msg = r.json["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{msg}");
    }
    // 2^64 and beyond: not an integer at all, still about `seq`.
    let r = api
        .send(
            Method::POST,
            "/v1/edge/reports",
            Req::token(&edge).raw(report(json!(1e19 * 2.0), json!(1)), "application/json"),
        )
        .await;
    expect_error(&r, 422, Some("seq"), Some("invalid_field"));
    no_rust_words(&r.json);
    assert_eq!(before, s.counts().await);
    // Integral floats count; a known rule answers 204.
    let inc = api.new_incident(&s.admin, "r").await;
    let a = api.block_host(&s.admin, inc, "r.example").await["id"]
        .as_i64()
        .unwrap();
    let r = api
        .send(
            Method::POST,
            "/v1/edge/reports",
            Req::token(&edge).raw(report(json!(5.0), json!(a)), "application/json"),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.json);
}

#[tokio::test]
async fn evidence_lines_with_duplicate_keys_are_refused() {
    let s = TestServer::start().await;
    let api = &s.api;
    let line = r#"{"start_time":"2026-03-02T10:00:00Z","path":"/a","path":"/b","downstream_remote_address":"203.0.113.7"}"#;
    let r = api
        .send(
            Method::POST,
            "/v1/evidence/access-logs",
            Req::token(&s.admin).raw(line, "application/x-ndjson"),
        )
        .await;
    let b = expect_status(&r, 200);
    assert_eq!(b["accepted"], 0, "{b}");
    let e = b["errors"][0]["error"].as_str().unwrap();
    assert!(e.starts_with("path: duplicate key"), "{e}");
}
