//! The edge sync contract: snapshot/delta equivalence, long-poll timing, ETags, expiry,
//! and hit reports.

use std::time::{Duration, Instant};

use edge_policy::{wire, Message, RuleKind, Snapshot, Target};
use serde_json::json;

use crate::common::{expect_error, expect_status, unseal, Api, Req, Resp, TestServer};

async fn policy(api: &Api, token: &str, query: &str) -> Resp {
    api.get(&format!("/v1/edge/policy{query}"), token).await
}

#[track_caller]
fn decode(r: &Resp) -> Message {
    expect_status(r, 200);
    assert_eq!(r.header("content-type"), Some(wire::CONTENT_TYPE));
    let m = wire::decode(unseal(&r.bytes)).expect("policy decodes");
    let v = m.version();
    assert_eq!(r.header("etag"), Some(format!("\"{v}\"").as_str()));
    assert_eq!(r.header("x-policy-version"), Some(v.to_string().as_str()));
    let kind = match m {
        Message::Snapshot(_) => "snapshot",
        Message::Delta(_) => "delta",
    };
    assert_eq!(r.header("x-policy-kind"), Some(kind));
    m
}

async fn snapshot(api: &Api, token: &str) -> Snapshot {
    match decode(&policy(api, token, "").await) {
        Message::Snapshot(s) => s,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[tokio::test]
async fn delta_from_n_applied_to_snapshot_n_equals_snapshot_n_plus_k() {
    let s = TestServer::start().await;
    let api = &s.api;
    let t = &s.admin;
    let inc = api.new_incident(t, "delta").await;
    let mut ids = Vec::new();
    let bodies = [
        json!({"kind": "block", "target": {"cidr": "203.0.113.0/24"}, "reason": "r"}),
        json!({"kind": "block", "target": {"api_key": "sk_live_leaked"}, "reason": "r", "mode": "simulate"}),
        json!({"kind": "isolate", "scope": {"pixel": "px-42"}, "isolation": "pixel_kill", "reason": "r"}),
        json!({"kind": "allow", "target": {"cidr": "192.0.2.0/24"}, "reason": "office"}),
        json!({"kind": "block", "target": {"account": "acct-7"}, "reason": "r", "expires_in": "1h"}),
        json!({"kind": "isolate", "scope": {"host": "shop.example"}, "isolation": "read_only", "reason": "r"}),
    ];
    for b in &bodies {
        ids.push(
            api.new_action(t, inc, b.clone()).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let base = snapshot(api, t).await;
    assert_eq!(base.rules.len(), bodies.len());
    assert!(
        base.rules.windows(2).all(|w| w[0].id < w[1].id),
        "canonical order"
    );
    // The API key travels only as its hash.
    assert!(base
        .rules
        .iter()
        .any(|r| r.kind
            == RuleKind::Block(Target::ApiKey(edge_policy::KeyHash::of("sk_live_leaked")))));
    let mut history = vec![base.clone()];
    // More changes: creates, lifts and an expiry, checking every step.
    let steps: Vec<Box<dyn Fn(usize) -> serde_json::Value>> = vec![
        Box::new(
            |i| json!({"kind": "block", "target": {"host": format!("bad{i}.example")}, "reason": "r"}),
        ),
        Box::new(
            |i| json!({"kind": "block", "target": {"path_prefix": format!("/admin{i}")}, "reason": "r", "expires_in": 30}),
        ),
    ];
    for i in 0..6 {
        if i % 3 == 2 {
            let id = ids.remove(0);
            expect_status(
                &api.post(
                    &format!("/v1/actions/{id}/lift"),
                    t,
                    json!({"reason": "done"}),
                )
                .await,
                200,
            );
        } else {
            ids.push(
                api.new_action(t, inc, steps[i % 2](i)).await["id"]
                    .as_i64()
                    .unwrap(),
            );
        }
        history.push(snapshot(api, t).await);
    }
    // Expire the account block (1 h) and the path blocks (30 s): the sweep bumps once.
    let before = history.last().unwrap().version;
    s.clock.advance_ms(2 * 3600 * 1000);
    let m = decode(&policy(api, t, &format!("?since={before}&wait=10")).await);
    assert_eq!(m.version(), before + 1, "one version for the whole sweep");
    let after = snapshot(api, t).await;
    assert!(
        after.rules.iter().all(|r| r.expires_at_ms.is_none()),
        "expired rules are gone"
    );
    history.push(after);

    let last = history.last().unwrap().clone();
    for snap in &history[..history.len() - 1] {
        let m = decode(&policy(api, t, &format!("?since={}", snap.version)).await);
        let Message::Delta(d) = m else {
            panic!("expected a delta since {}", snap.version)
        };
        assert_eq!(d.since, snap.version);
        assert_eq!(
            snap.apply(&d).unwrap(),
            last,
            "delta since {}",
            snap.version
        );
    }
    // Since 0 or beyond the current version: a snapshot.
    for q in ["?since=0", &format!("?since={}", last.version + 100)] {
        assert!(
            matches!(decode(&policy(api, t, q).await), Message::Snapshot(s) if s == last),
            "{q}"
        );
    }
}

#[tokio::test]
async fn long_poll_answers_within_100ms_of_a_change_and_304_after_wait() {
    let s = TestServer::start().await;
    let api = s.api.clone();
    let (_, edge) = api.new_token(&s.admin, "edge-1", "edge").await;
    let inc = api.new_incident(&s.admin, "lp").await;
    api.block_host(&s.admin, inc, "first.example").await;
    let v = snapshot(&api, &edge).await.version;

    // 304 after `wait` when nothing changes.
    let start = Instant::now();
    let r = policy(&api, &edge, &format!("?since={v}&wait=1")).await;
    let took = start.elapsed();
    expect_status(&r, 304);
    assert_eq!(r.header("etag"), Some(format!("\"{v}\"").as_str()));
    assert!(
        took >= Duration::from_millis(990) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    // wait=0 and If-None-Match: immediate 304.
    let r = api
        .send(
            reqwest::Method::GET,
            "/v1/edge/policy",
            Req::token(&edge).header("if-none-match", format!("\"{v}\"")),
        )
        .await;
    expect_status(&r, 304);

    // A change during the wait is answered within 100 ms of its commit.
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let (api2, edge2) = (api.clone(), edge.clone());
        let cur = snapshot(&api, &edge).await.version;
        let poll = tokio::spawn(async move {
            let r = api2
                .send(
                    reqwest::Method::GET,
                    "/v1/edge/policy?wait=30",
                    Req::token(&edge2).header("if-none-match", format!("\"{cur}\"")),
                )
                .await;
            (r, Instant::now())
        });
        // Longer than the wake interval: each change is a single write after a quiet spell,
        // which wakes at once (changes closer together are coalesced, see caching.rs).
        tokio::time::sleep(Duration::from_millis(
            control_plane::DEFAULT_POLICY_WAKE_INTERVAL_MS + 100,
        ))
        .await;
        let sent = Instant::now();
        api.block_host(&s.admin, inc, &format!("lp{round}.example"))
            .await;
        let committed = Instant::now();
        let (r, answered) = poll.await.unwrap();
        let m = decode(&r);
        assert_eq!(m.version(), cur + 1);
        assert!(matches!(m, Message::Delta(_)));
        assert!(answered >= sent);
        let lag = answered.saturating_duration_since(committed);
        worst = worst.max(lag);
        assert!(
            lag < Duration::from_millis(100),
            "long-poll answered {lag:?} after the commit"
        );
    }
    eprintln!("long-poll: worst lag after commit {worst:?}");
    // Out-of-range wait names the field.
    expect_error(
        &policy(&api, &edge, "?wait=61").await,
        400,
        Some("wait"),
        Some("invalid_query"),
    );
}

#[tokio::test]
async fn version_0_is_held_like_any_version_and_since_0_alone_means_nothing_yet() {
    let s = TestServer::start().await;
    let api = s.api.clone();
    let (_, edge) = api.new_token(&s.admin, "edge-v0", "edge").await;
    // No action yet: version 0, the empty policy, answered at once to an edge holding
    // nothing (no `since`, or `since=0` alone as older edges send it).
    for q in ["?wait=5", "?since=0&wait=5"] {
        let start = Instant::now();
        let m = decode(&policy(&api, &edge, q).await);
        assert_eq!(m.version(), 0, "{q}");
        assert!(start.elapsed() < Duration::from_secs(2), "{q}");
    }
    // An edge holding version 0 (`If-None-Match: "0"`) is held for the wait, then 304.
    let held = |wait: &str| {
        let (api, edge, path) = (
            api.clone(),
            edge.clone(),
            format!("/v1/edge/policy?since=0&wait={wait}"),
        );
        async move {
            api.send(
                reqwest::Method::GET,
                &path,
                Req::token(&edge).header("if-none-match", "\"0\""),
            )
            .await
        }
    };
    let start = Instant::now();
    let r = held("1").await;
    expect_status(&r, 304);
    assert!(
        start.elapsed() >= Duration::from_millis(990),
        "{:?}",
        start.elapsed()
    );
    // ... and woken by the first action.
    let poll = tokio::spawn(held("30"));
    tokio::time::sleep(Duration::from_millis(
        control_plane::DEFAULT_POLICY_WAKE_INTERVAL_MS + 100,
    ))
    .await;
    let inc = api.new_incident(&s.admin, "v0").await;
    api.block_host(&s.admin, inc, "first.example").await;
    let m = decode(&poll.await.unwrap());
    assert_eq!(m.version(), 1);
}

#[tokio::test]
async fn expiry_is_honoured_without_restart() {
    let s = TestServer::start().await;
    let api = &s.api;
    let t = &s.admin;
    let inc = api.new_incident(t, "expiry").await;
    let a = api.new_action(t, inc, json!({"kind": "block", "target": {"cidr": "203.0.113.7"}, "reason": "r", "expires_in": "1h"})).await;
    let id = a["id"].as_i64().unwrap();
    assert_eq!(a["status"], "active");
    assert_eq!(a["target"]["cidr"], "203.0.113.7/32");
    let v = snapshot(api, t).await.version;
    s.clock.advance_ms(3600 * 1000 + 1);
    // Reported as expired at once (computed from the clock) ...
    assert_eq!(
        expect_status(&api.get(&format!("/v1/actions/{id}"), t).await, 200)["status"],
        "expired"
    );
    // ... and the next version omits it, with an audit event by `system`.
    let m = decode(&policy(api, t, &format!("?since={v}&wait=5")).await);
    let Message::Delta(d) = m else {
        panic!("expected delta")
    };
    assert_eq!(d.removed, vec![id as u64]);
    assert!(snapshot(api, t).await.rules.is_empty());
    let audit = api
        .get(&format!("/v1/audit?incident={inc}&actor=system"), t)
        .await;
    let events = expect_status(&audit, 200).as_array().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["verb"], "action.expire");
    let list = api
        .get(&format!("/v1/actions?status=expired&incident={inc}"), t)
        .await;
    assert_eq!(expect_status(&list, 200)["total"], 1);
    let lift = api
        .post(
            &format!("/v1/actions/{id}/lift"),
            t,
            json!({"reason": "late"}),
        )
        .await;
    expect_error(&lift, 409, Some("status"), Some("conflict"));
    let detail = api.get(&format!("/v1/incidents/{inc}"), t).await;
    let kinds: Vec<String> = expect_status(&detail, 200)["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["created", "action_created", "action_expired"]);
    // The same target can be blocked again.
    api.new_action(
        t,
        inc,
        json!({"kind": "block", "target": {"cidr": "203.0.113.7/32"}, "reason": "again"}),
    )
    .await;
    assert_eq!(api.verify(t).await["ok"], true);
}

#[tokio::test]
async fn edge_reports_count_once_and_show_on_the_incident() {
    let s = TestServer::start().await;
    let api = &s.api;
    let t = &s.admin;
    let (_, edge) = api.new_token(t, "edge-ams-1", "edge").await;
    let inc = api.new_incident(t, "hits").await;
    let a = api.block_host(t, inc, "hits.example").await["id"]
        .as_i64()
        .unwrap();
    let b = api.block_host(t, inc, "hits2.example").await["id"]
        .as_i64()
        .unwrap();
    let v = snapshot(api, &edge).await.version;
    let report = |edge_id: &str, seq: u64, n: u64| {
        json!({"edge_id": edge_id, "boot_id": "boot-1", "seq": seq, "policy_version": v,
               "hits": [{"rule_id": a, "count": n}, {"rule_id": b, "count": 1}, {"rule_id": 999_999, "count": 5}]})
    };
    // Rule 999999 never existed: each counted report names it (200) and adds it nowhere;
    // the repeated seq 2 is acknowledged without being looked at again (204).
    for (edge_id, seq, n, status) in [
        ("ams-1", 1, 10, 200),
        ("ams-1", 2, 5, 200),
        ("ams-1", 2, 5, 204),
        ("fra-1", 1, 7, 200),
    ] {
        let r = api
            .post("/v1/edge/reports", &edge, report(edge_id, seq, n))
            .await;
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.bytes));
        if status == 200 {
            assert_eq!(
                r.json,
                json!({"counted": true, "unknown_rule_ids": [999_999]})
            );
        }
    }
    let m = api
        .client
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap();
    let text = m.text().await.unwrap();
    assert!(
        text.contains("edge_cp_edge_unknown_rule_hits_total 3"),
        "{text}"
    );
    let detail = api.get(&format!("/v1/incidents/{inc}"), t).await;
    let actions = expect_status(&detail, 200)["actions"]
        .as_array()
        .unwrap()
        .clone();
    let hits = &actions.iter().find(|x| x["id"] == a).unwrap()["hits"];
    assert_eq!(hits["total"], 22, "{hits}");
    assert_eq!(hits["by_edge"], json!({"ams-1": 15, "fra-1": 7}));
    assert_eq!(detail.json["hits_total"], 22 + 3);
    let edges = api.get("/v1/edges", t).await;
    let list = expect_status(&edges, 200).as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["edge_id"], "ams-1");
    assert_eq!(list[0]["behind"], false);
    api.block_host(t, inc, "newer.example").await;
    let edges = api.get("/v1/edges", t).await;
    assert_eq!(expect_status(&edges, 200)[0]["behind"], true);
}

#[tokio::test]
async fn every_answer_is_sealed_by_the_listed_keys_and_only_them() {
    let s = TestServer::start().await;
    let api = &s.api;
    let (_, edge) = api.new_token(&s.admin, "edge-sealed", "edge").await;
    let (_, viewer) = api.new_token(&s.admin, "viewer-sealed", "viewer").await;
    let inc = api.new_incident(&s.admin, "sealed").await;
    api.block_host(&s.admin, inc, "sealed.example").await;
    let keys = crate::common::signing_keys(api, &viewer).await;
    assert_eq!(keys, [crate::common::test_key().public_key()]);
    // Edges do not need the keys from the API (they are configured with them).
    expect_error(
        &api.get("/v1/edge/keys", &edge).await,
        403,
        None,
        Some("forbidden"),
    );
    let snap = policy(api, &edge, "").await;
    let v = match wire::decode(crate::common::unseal_with(&snap.bytes, &keys)).unwrap() {
        Message::Snapshot(s) => s.version,
        other => panic!("{other:?}"),
    };
    api.block_host(&s.admin, inc, "sealed2.example").await;
    let delta = policy(api, &edge, &format!("?since={v}")).await;
    assert_eq!(delta.header("x-policy-kind"), Some("delta"));
    crate::common::unseal_with(&delta.bytes, &keys);
    // Another key does not open them.
    let other = edge_policy::seal::public_key_text(
        &ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key(),
    );
    let trusted = edge_policy::seal::TrustedKeys::parse(&[other]).unwrap();
    for r in [&snap, &delta] {
        let e = edge_policy::seal::open(&mut &r.bytes[..], &trusted, None, 0, 0, 1 << 20);
        assert!(
            matches!(e, Err(edge_policy::seal::SealError::UnknownKey(..))),
            "{e:?}"
        );
    }
}
