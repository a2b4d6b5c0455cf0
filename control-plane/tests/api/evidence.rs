//! Evidence from the edge: NDJSON access-log batches, line-level errors, idempotent
//! retries, attribution, and the timeline in time order.

use serde_json::{json, Value};

use crate::common::{expect_error, expect_status, Api, Req, Resp};
use crate::deadlines::server;

fn line(time: &str, client: &str, path: &str, ua: &str) -> String {
    json!({"start_time": time, "method": "GET", "path": path, "protocol": "HTTP/1.1", "response_code": 403,
        "response_flags": "-", "bytes_received": 0, "bytes_sent": 57, "duration": 1,
        "x_forwarded_for": null, "user_agent": ua, "request_id": "4b1d", "authority": "shop.example.com",
        "upstream_host": null, "downstream_remote_address": format!("{client}:51234")})
    .to_string()
}

async fn post(api: &Api, token: &str, batch: &str, body: &str) -> Resp {
    let req = Req::token(token)
        .raw(body.to_string(), "application/x-ndjson")
        .header("x-batch-id", batch);
    api.send(
        reqwest::Method::POST,
        "/v1/evidence/access-logs?edge_id=envoy-ams-1",
        req,
    )
    .await
}

#[tokio::test]
async fn ingest_stores_matching_lines_once_and_reports_bad_lines() {
    let s = server().await;
    let api = &s.api;
    let (_, r) = api.new_token(&s.admin, "alice", "responder").await;
    let (_, edge) = api.new_token(&s.admin, "vector-ams-1", "edge").await;
    let a = api.new_incident(&r, "pixel compromise").await;
    let block = api
        .new_action(
            &r,
            a,
            json!({"kind": "block", "target": {"cidr": "203.0.113.0/24"}, "reason": "exfil host"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let kill = api
        .new_action(&r, a, json!({"kind": "isolate", "scope": {"pixel": "px-4711"}, "isolation": "pixel_kill", "reason": "skimmer"}))
        .await["id"]
        .as_i64()
        .unwrap();
    let b = api
        .post(
            "/v1/incidents",
            &r,
            json!({"title": "bot", "severity": "P2",
            "indicators": {"cidrs": ["198.51.100.7"], "user_agents": ["EvilBot"]}}),
        )
        .await;
    let b = expect_status(&b, 201)["id"].as_i64().unwrap();

    s.clock.set_ms(crate::deadlines::t("2026-03-02T09:05:00Z"));
    let body = [
        line(
            "2026-03-02T09:01:00.000Z",
            "203.0.113.7",
            "/checkout",
            "Mozilla/5.0",
        ),
        r#"{"start_time": "nope", "method": "GET"}"#.to_string(),
        line(
            "2026-03-02T09:01:30.000Z",
            "192.0.2.1",
            "/px/px-4711.js",
            "Mozilla/5.0",
        ),
        String::new(),
        "garbage".to_string(),
        line(
            "2026-03-02T09:02:10.000Z",
            "198.51.100.7",
            "/",
            "EvilBot/2.1",
        ),
        line("2026-03-02T09:02:20.000Z", "192.0.2.50", "/", "Mozilla/5.0"),
        line(
            "2026-03-02T08:59:00.000Z",
            "203.0.113.9",
            "/checkout",
            "Mozilla/5.0",
        ),
    ]
    .join("\n");
    let first = post(api, &edge, "b-1", &body).await;
    let rep = expect_status(&first, 200).clone();
    assert_eq!(rep["batch_id"], "b-1");
    assert_eq!(
        (
            &rep["lines"],
            &rep["accepted"],
            &rep["stored"],
            &rep["duplicates"],
            &rep["unmatched"]
        ),
        (&json!(7), &json!(5), &json!(3), &json!(0), &json!(2)),
        "{rep}"
    );
    let errors = rep["errors"].as_array().unwrap();
    assert_eq!(
        errors
            .iter()
            .map(|e| e["line"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [2, 5]
    );
    assert!(errors[0]["error"].as_str().unwrap().contains("start_time"));
    assert_eq!(rep["incidents"], json!([a, b]));

    // The same batch again (a shipper's retry), and the same lines in another batch.
    let counts = s.counts().await;
    for batch in ["b-1", "b-2"] {
        let again = post(api, &edge, batch, &body).await;
        let again = expect_status(&again, 200);
        assert_eq!(
            (&again["stored"], &again["duplicates"]),
            (&json!(0), &json!(3)),
            "{again}"
        );
        assert_eq!(again["errors"].as_array().unwrap().len(), 2);
    }
    assert_eq!(counts, s.counts().await, "nothing stored twice");

    let ev = api.get(&format!("/v1/incidents/{a}/evidence"), &r).await;
    let ev: Vec<Value> = expect_status(&ev, 200).as_array().unwrap().clone();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0]["action_id"], block);
    assert_eq!(ev[0]["client_ip"], "203.0.113.7");
    assert_eq!(ev[0]["edge_id"], "envoy-ams-1");
    assert_eq!(ev[0]["batch_id"], "b-1");
    assert_eq!(ev[1]["action_id"], kill);
    assert_eq!(
        ev[0]["line"].as_str().unwrap(),
        body.lines().next().unwrap()
    );
    let evb = api.get(&format!("/v1/incidents/{b}/evidence"), &r).await;
    let evb = expect_status(&evb, 200).as_array().unwrap().clone();
    assert_eq!(evb.len(), 1);
    assert!(evb[0]["action_id"].is_null());
    let why = evb[0]["matched"].as_array().unwrap();
    assert_eq!(why.len(), 2, "{why:?}");

    // Edge hits reported now, and a late line from before the others.
    let report = json!({"edge_id": "envoy-ams-1", "boot_id": "boot", "seq": 1, "policy_version": 2,
        "hits": [{"rule_id": block, "count": 40}, {"rule_id": kill, "count": 2}]});
    assert_eq!(
        api.post("/v1/edge/reports", &edge, report).await.status,
        204
    );
    s.clock.set_ms(crate::deadlines::t("2026-03-02T09:10:00Z"));
    let late = line(
        "2026-03-02T09:00:30.000Z",
        "203.0.113.8",
        "/checkout",
        "Mozilla/5.0",
    );
    assert_eq!(
        expect_status(&post(api, &edge, "b-3", &late).await, 200)["stored"],
        1
    );
    let report = json!({"edge_id": "envoy-ams-1", "boot_id": "boot", "seq": 2, "policy_version": 2,
        "hits": [{"rule_id": block, "count": 5}]});
    assert_eq!(
        api.post("/v1/edge/reports", &edge, report).await.status,
        204
    );

    let tl = api.get(&format!("/v1/incidents/{a}/timeline"), &r).await;
    let tl = expect_status(&tl, 200).as_array().unwrap().clone();
    let kinds: Vec<&str> = tl.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "created",
            "action_created",
            "action_created",
            "evidence",
            "evidence",
            "edge_hits",
            "edge_hits"
        ],
        "{tl:#?}"
    );
    let ats: Vec<&str> = tl.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = ats.clone();
    sorted.sort();
    assert_eq!(ats, sorted, "in time order");
    assert_eq!(tl[3]["at"], "2026-03-02T09:00:30.000Z");
    assert_eq!(tl[3]["data"]["lines"], 1);
    assert_eq!(tl[4]["data"]["lines"], 2);
    assert_eq!(tl[5]["data"]["total"], 42);
    assert_eq!(tl[5]["data"]["by_action"][block.to_string()], 40);
    assert_eq!(tl[6]["data"]["total"], 5);
    assert!(tl[4]["message"].as_str().unwrap().contains("2 line(s)"));

    let audit = api.get(&format!("/v1/audit?incident={a}"), &r).await;
    let ingests = audit
        .json
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["verb"] == "evidence.ingest")
        .count();
    assert_eq!(ingests, 2, "one per batch that stored something");
    assert_eq!(api.verify(&s.admin).await["ok"], true);
}

#[tokio::test]
async fn ingest_bounds_and_refusals() {
    let s = server().await;
    let api = &s.api;
    let (_, edge) = api.new_token(&s.admin, "edge", "edge").await;
    let big = line("2026-03-02T09:01:00.000Z", "203.0.113.7", "/", "x").repeat(1000);
    let before = s.counts().await;
    let r = post(api, &edge, "big", &big).await;
    expect_error(&r, 413, Some("body"), Some("body_too_large"));
    let r = api
        .send(
            reqwest::Method::POST,
            "/v1/evidence/access-logs",
            Req::token(&edge).raw("{}", "image/png"),
        )
        .await;
    expect_error(
        &r,
        415,
        Some("content-type"),
        Some("unsupported_media_type"),
    );
    let r = post(api, &edge, "empty", "\n\n").await;
    expect_error(&r, 422, Some("body"), Some("invalid_field"));
    let r = post(
        api,
        &edge,
        &"b".repeat(200),
        &line("2026-03-02T09:01:00Z", "1.2.3.4", "/", "x"),
    )
    .await;
    expect_error(&r, 422, Some("batch_id"), Some("invalid_field"));
    // Only malformed lines: reported, nothing stored, still 200 (the shipper must not retry).
    let r = post(api, &edge, "junk", "junk\n{\"start_time\": 5}").await;
    let rep = expect_status(&r, 200);
    assert_eq!(rep["errors"].as_array().unwrap().len(), 2);
    assert_eq!(rep["stored"], 0);
    assert_eq!(before, s.counts().await);
}
