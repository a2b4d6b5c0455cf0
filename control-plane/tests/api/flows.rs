//! Incident flows, restarts of the real binary, concurrency, tampering, the OpenAPI
//! document and metrics.

use std::time::Instant;

use reqwest::Method;
use serde_json::json;

use control_plane::store::sql::Backend;

use crate::common::{
    backend, cli_token_create, drop_trigger_sql, expect_error, expect_status, fresh_database,
    signing_keys, unseal_with, BinServer, Req, TestServer,
};

#[tokio::test]
async fn incident_lifecycle_and_timeline() {
    let s = TestServer::start().await;
    let api = &s.api;
    let (_, r) = api.new_token(&s.admin, "alice", "responder").await;
    let body = json!({"title": "Card skimming on checkout", "summary": "Injected script", "severity": "critical",
        "systems_affected": ["checkout", "pixel-cdn"], "personal_data": true, "detected_at": "2024-05-01T10:00:00Z"});
    let created = api.post("/v1/incidents", &r, body).await;
    let inc = expect_status(&created, 201).clone();
    assert_eq!(inc["severity"], "P0");
    assert_eq!(inc["phase"], "detection_analysis");
    assert_eq!(inc["status"], "open");
    assert_eq!(inc["created_by"], "alice");
    assert_eq!(inc["detected_at"], "2024-05-01T10:00:00.000Z");
    let id = inc["id"].as_i64().unwrap();
    for sev in ["high", "medium", "low"] {
        api.post("/v1/incidents", &r, json!({"title": sev, "severity": sev}))
            .await;
    }
    let path = format!("/v1/incidents/{id}");
    let up = api
        .patch(
            &path,
            &r,
            json!({"severity": "P1", "phase": "containment", "assignee": "bob"}),
        )
        .await;
    assert_eq!(expect_status(&up, 200)["assignee"], "bob");
    let back = api
        .patch(&path, &r, json!({"phase": "detection_analysis"}))
        .await;
    expect_error(&back, 422, Some("reason"), Some("invalid_field"));
    let back = api
        .patch(
            &path,
            &r,
            json!({"phase": "detection_analysis", "reason": "scope wider than thought"}),
        )
        .await;
    expect_status(&back, 200);
    // Personal data is involved: closing needs the post-mortem first.
    let close = api.patch(&path, &r, json!({"phase": "closed"})).await;
    expect_error(&close, 409, Some("postmortem"), Some("conflict"));
    let pm = json!({"lessons_learned": "l", "root_cause": "r", "attack_vectors": ["v"],
        "data_impact": "none", "follow_ups": []});
    expect_status(
        &api.send(
            Method::PUT,
            &format!("{path}/postmortem"),
            Req::token(&r).json(pm),
        )
        .await,
        200,
    );
    let close = api.patch(&path, &r, json!({"phase": "closed"})).await;
    assert_eq!(expect_status(&close, 200)["status"], "closed");
    let act = api
        .post(
            &format!("{path}/actions"),
            &r,
            json!({"kind": "block", "target": {"cidr": "10.0.0.0/8"}, "reason": "r"}),
        )
        .await;
    expect_error(&act, 409, Some("incident"), Some("conflict"));

    let tl = api.get(&format!("{path}/timeline"), &r).await;
    let kinds: Vec<String> = expect_status(&tl, 200)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().into())
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "severity_changed",
            "phase_changed",
            "assignee_changed",
            "phase_changed",
            "postmortem_submitted",
            "phase_changed"
        ]
    );
    let tl = tl.json.as_array().unwrap().clone();
    assert_eq!(tl[4]["reason"], "scope wider than thought");
    assert!(tl.iter().all(|e| e["actor"] == "alice"));

    // Filters and pagination.
    let count = |q: &'static str| {
        let api = api.clone();
        let r = r.clone();
        async move {
            expect_status(&api.get(&format!("/v1/incidents{q}"), &r).await, 200)["total"]
                .as_i64()
                .unwrap()
        }
    };
    assert_eq!(count("").await, 4);
    assert_eq!(count("?status=closed").await, 1);
    assert_eq!(count("?status=open").await, 3);
    assert_eq!(count("?severity=P2").await, 1);
    assert_eq!(count("?severity=low").await, 1);
    assert_eq!(count("?phase=closed").await, 1);
    let page = api.get("/v1/incidents?limit=2&offset=1", &r).await;
    let page = expect_status(&page, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["total"], 4);

    // Every change is in the audit log under the token's name.
    let audit = api.get(&format!("/v1/audit?incident={id}"), &r).await;
    let events = expect_status(&audit, 200).as_array().unwrap().clone();
    assert_eq!(events.len(), 5);
    assert_eq!(events[3]["verb"], "postmortem.submit");
    assert!(events.iter().all(|e| e["actor"] == "alice"));
    assert_eq!(events[1]["before"]["phase"], "detection_analysis");
    assert_eq!(events[1]["after"]["phase"], "containment");
    let none = api.get("/v1/audit?from=2999-01-01T00:00:00Z", &r).await;
    assert_eq!(expect_status(&none, 200).as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn responder_moves_and_normalisation() {
    let s = TestServer::start().await;
    let api = &s.api;
    let t = &s.admin;
    let inc = api.new_incident(t, "moves").await;
    let a = api.new_action(t, inc, json!({"kind": "block", "target": {"cidr": "203.0.113.77/24"}, "reason": "scanner", "expires_in": "1h"})).await;
    assert_eq!(a["target"]["cidr"], "203.0.113.0/24");
    assert!(
        a["warnings"][0].as_str().unwrap().contains("host bits"),
        "{a}"
    );
    let key = api
        .new_action(
            t,
            inc,
            json!({"kind": "block", "target": {"api_key": "sk_live_abc"}, "reason": "leaked"}),
        )
        .await;
    assert_eq!(
        key["target"]["api_key_sha256"],
        edge_policy::KeyHash::of("sk_live_abc").to_hex()
    );
    assert!(!key.to_string().contains("sk_live_abc"));
    let iso = api.new_action(t, inc, json!({"kind": "isolate", "scope": {"pixel": "px-9"}, "isolation": "pixel_kill", "reason": "skimmer", "mode": "simulate"})).await;
    assert_eq!(iso["scope"]["pixel"], "px-9");
    assert_eq!(iso["mode"], "simulate");
    // Forced wide block with a reason.
    let wide = api.new_action(t, inc, json!({"kind": "block", "target": {"cidr": "0.0.0.0/0"}, "reason": "full lockdown", "force": true})).await;
    assert_eq!(wide["forced"], true);
    let id = a["id"].as_i64().unwrap();
    let lift = api
        .post(
            &format!("/v1/actions/{id}/lift"),
            t,
            json!({"reason": "scanner gone"}),
        )
        .await;
    let lifted = expect_status(&lift, 200);
    assert_eq!(lifted["status"], "lifted");
    assert_eq!(lifted["end_reason"], "scanner gone");
    let active = api.get("/v1/actions", t).await;
    assert_eq!(expect_status(&active, 200)["total"], 3);
    let all = api.get("/v1/actions?status=all", t).await;
    assert_eq!(expect_status(&all, 200)["total"], 4);
    let past = api.get("/v1/actions?status=lifted", t).await;
    assert_eq!(expect_status(&past, 200)["items"][0]["id"], id);
}

#[tokio::test]
async fn concurrent_writes_get_distinct_versions_and_an_intact_chain() {
    let s = TestServer::start().await;
    let api = s.api.clone();
    let inc = api.new_incident(&s.admin, "load").await;
    let v0 = s.counts().await.version;
    let start = Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (api, t) = (api.clone(), s.admin.clone());
            tokio::spawn(async move {
                let body = json!({"kind": "block", "target": {"host": format!("c{i}.example")}, "reason": "load"});
                api.post(&format!("/v1/incidents/{inc}/actions"), &t, body).await
            })
        })
        .collect();
    let mut versions = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        versions.push(expect_status(&r, 201)["created_version"].as_i64().unwrap());
    }
    eprintln!(
        "200 concurrent containment writes took {:?}",
        start.elapsed()
    );
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 200);
    assert_eq!(versions, (v0 + 1..=v0 + 200).collect::<Vec<_>>());
    let c = s.counts().await;
    assert_eq!((c.actions, c.version), (200, v0 + 200));
    let v = api.verify(&s.admin).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["checked"].as_i64().unwrap(), c.audit);
}

#[tokio::test]
async fn tampering_with_an_audit_row_is_reported() {
    let s = TestServer::start().await;
    let api = &s.api;
    let inc = api.new_incident(&s.admin, "tamper").await;
    for i in 0..3 {
        api.block_host(&s.admin, inc, &format!("t{i}.example"))
            .await;
    }
    assert_eq!(api.verify(&s.admin).await["ok"], true);
    let pool = s.store.pool();
    // The database itself refuses updates; an attacker with database access drops the trigger.
    assert!(sqlx::query("UPDATE audit SET reason = 'x' WHERE seq = 3")
        .execute(pool)
        .await
        .is_err());
    sqlx::query(&drop_trigger_sql("audit_no_update", "audit"))
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit SET actor = 'mallory' WHERE seq = 3")
        .execute(pool)
        .await
        .unwrap();
    let v = api.verify(&s.admin).await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_broken"]["seq"], 3);
    assert_eq!(v["checked"], 2);
}

#[tokio::test]
async fn restart_keeps_everything_and_the_cli_bootstraps_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path());
    let (ok, out) = cli_token_create(&db, "admin", "root");
    assert!(ok);
    let admin = out.trim().to_string();
    assert!(
        admin.starts_with("ecp_") && !admin.contains('\n'),
        "{out:?}"
    );
    let (ok, out) = cli_token_create(&db, "admin", "again");
    assert!(!ok && out.is_empty(), "a second bootstrap must fail");

    let server = BinServer::start(&db);
    let api = server.api.clone();
    let (_, viewer) = api.new_token(&admin, "v", "viewer").await;
    let inc = api.new_incident(&admin, "persist").await;
    let a = api.block_host(&admin, inc, "p1.example").await["id"]
        .as_i64()
        .unwrap();
    api.new_action(&admin, inc, json!({"kind": "block", "target": {"cidr": "203.0.113.0/24"}, "reason": "r", "expires_in": 3600})).await;
    expect_status(
        &api.post(
            &format!("/v1/actions/{a}/lift"),
            &admin,
            json!({"reason": "r"}),
        )
        .await,
        200,
    );
    let detail = expect_status(
        &api.get(&format!("/v1/incidents/{inc}"), &viewer).await,
        200,
    )
    .clone();
    let verify = api.verify(&admin).await;
    let policy = api.get("/v1/edge/policy", &admin).await;
    let keys = signing_keys(&api, &admin).await;
    assert_eq!(keys.len(), 1, "the first start made one signing key");
    let version: u64 = policy.header("x-policy-version").unwrap().parse().unwrap();
    assert_eq!(version, 3);
    server.stop();

    let server = BinServer::start(&db);
    let api = server.api.clone();
    assert_eq!(
        expect_status(
            &api.get(&format!("/v1/incidents/{inc}"), &viewer).await,
            200
        ),
        &detail
    );
    assert_eq!(api.verify(&admin).await, verify);
    let again = api.get("/v1/edge/policy", &admin).await;
    assert_eq!(
        signing_keys(&api, &admin).await,
        keys,
        "the same signing key after restart"
    );
    assert_eq!(
        unseal_with(&again.bytes, &keys),
        unseal_with(&policy.bytes, &keys),
        "same snapshot after restart"
    );
    let b = api.block_host(&admin, inc, "p2.example").await;
    assert_eq!(
        b["created_version"],
        version + 1,
        "versions are never reused"
    );
    let r = api.send(Method::GET, "/healthz", Req::default()).await;
    expect_status(&r, 200);
    server.stop();
}

#[tokio::test]
async fn openapi_health_and_metrics() {
    let s = TestServer::start().await;
    let api = &s.api;
    let doc = api.send(Method::GET, "/openapi.json", Req::default()).await;
    let doc = expect_status(&doc, 200);
    let paths = doc["paths"].as_object().unwrap();
    for (p, m) in [
        ("/v1/incidents", "post"),
        ("/v1/incidents", "get"),
        ("/v1/incidents/{id}", "get"),
        ("/v1/incidents/{id}", "patch"),
        ("/v1/incidents/{id}/timeline", "get"),
        ("/v1/incidents/{id}/actions", "post"),
        ("/v1/actions", "get"),
        ("/v1/actions/{id}", "get"),
        ("/v1/actions/{id}/lift", "post"),
        ("/v1/audit", "get"),
        ("/v1/audit/verify", "get"),
        ("/v1/edge/policy", "get"),
        ("/v1/edge/reports", "post"),
        ("/v1/edges", "get"),
        ("/v1/tokens", "post"),
        ("/v1/tokens", "get"),
        ("/v1/tokens/{id}", "delete"),
        ("/v1/incidents/{id}/notifications", "post"),
        ("/v1/incidents/{id}/notifications", "get"),
        ("/v1/incidents/{id}/postmortem", "put"),
        ("/v1/incidents/{id}/postmortem", "get"),
        ("/v1/incidents/{id}/deadlines", "get"),
        ("/v1/deadlines", "get"),
        ("/v1/incidents/{id}/documents/{kind}", "get"),
        ("/v1/incidents/{id}/export", "get"),
        ("/v1/incidents/{id}/evidence", "get"),
        ("/v1/evidence/access-logs", "post"),
    ] {
        assert!(
            paths.get(p).and_then(|x| x.get(m)).is_some(),
            "{m} {p} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["ActionRequest"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    expect_status(
        &api.send(Method::GET, "/healthz", Req::default()).await,
        200,
    );
    let m = api.send(Method::GET, "/metrics", Req::default()).await;
    assert_eq!(m.status, 200);
    let text = String::from_utf8_lossy(&m.bytes);
    assert!(text.contains("edge_cp_http_requests_total"), "{text}");
    assert!(text.contains("edge_cp_policy_version"), "{text}");
    assert!(
        text.contains("edge_cp_deadlines_overdue{kind=\"authority_notification\"} 0"),
        "{text}"
    );
    let nf = api.get("/v1/nothing", &s.admin).await;
    expect_error(&nf, 404, None, Some("not_found"));
}

#[tokio::test]
async fn targets_are_stored_as_the_edge_reads_requests() {
    let s = TestServer::start().await;
    let api = &s.api;
    let t = &s.admin;
    let inc = api.new_incident(t, "canonical targets").await;
    for (target, field, stored, warning) in [
        (
            json!({"path_prefix": "//admin/./x/../users"}),
            "path_prefix",
            "/admin/users",
            "normalised",
        ),
        (
            json!({"cidr": "::ffff:10.0.0.0/104"}),
            "cidr",
            "10.0.0.0/8",
            "IPv4-mapped",
        ),
    ] {
        let a = api
            .new_action(
                t,
                inc,
                json!({"kind": "block", "target": target, "reason": "r"}),
            )
            .await;
        assert_eq!(a["target"][field], stored, "{a}");
        assert!(
            a["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w.as_str().unwrap().contains(warning)),
            "{a}"
        );
    }
    // A prefix servers would read differently, or written encoded, is refused by name.
    for bad in ["/a%2Fb", "/caf%C3%A9", "/a\\b"] {
        let r = api
            .post(
                &format!("/v1/incidents/{inc}/actions"),
                t,
                json!({"kind": "block", "target": {"path_prefix": bad}, "reason": "r"}),
            )
            .await;
        expect_error(&r, 422, Some("target.path_prefix"), Some("invalid_field"));
    }
    // A pixel id is kept as written: each edge route decides how case compares.
    let a = api
        .new_action(
            t,
            inc,
            json!({"kind": "block", "target": {"pixel": "PX-Evil"}, "reason": "r"}),
        )
        .await;
    assert_eq!(a["target"]["pixel"], "PX-Evil", "{a}");
    assert!(
        a["warnings"].as_array().is_none_or(|w| w.is_empty()),
        "no warning: {a}"
    );
    // One that no edge reads as a pixel id would never match: refused by name.
    for (bad, field) in [
        (json!({"target": {"pixel": "px/evil"}}), "target.pixel"),
        (
            json!({"target": {"pixel": "x".repeat(129)}}),
            "target.pixel",
        ),
        (
            json!({"scope": {"pixel": "px evil"}, "isolation": "pixel_kill"}),
            "scope.pixel",
        ),
    ] {
        let mut body = json!({"kind": if field == "scope.pixel" { "isolate" } else { "block" }, "reason": "r"});
        body.as_object_mut()
            .unwrap()
            .extend(bad.as_object().unwrap().clone());
        let r = api
            .post(&format!("/v1/incidents/{inc}/actions"), t, body)
            .await;
        expect_error(&r, 422, Some(field), Some("invalid_field"));
    }
}

#[tokio::test]
async fn every_sqlite_connection_runs_with_the_intended_settings() {
    if backend() != Backend::Sqlite {
        eprintln!("SQLite settings: runs in the SQLite pass");
        return;
    }
    let s = TestServer::start().await;
    // Several connections at once, so more than one pooled connection is checked.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = s.store.pool().acquire().await.unwrap();
        let read = |sql: &'static str| sqlx::query_scalar::<_, String>(sql);
        let mode: String = read("SELECT journal_mode FROM pragma_journal_mode")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        let n = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
        let sync = n("SELECT synchronous FROM pragma_synchronous")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        let busy = n("SELECT timeout FROM pragma_busy_timeout")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        let fk = n("SELECT foreign_keys FROM pragma_foreign_keys")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert_eq!((mode.as_str(), sync, busy, fk), ("wal", 1, 10_000, 1));
        held.push(c);
    }
}
