//! The rough edges of a 3 a.m. incident (issue #14): organisation settings through the API,
//! moving and linking actions without a gap, every invalid post-mortem field at once,
//! `GET /v1/lookup`, and the edges' report interval beside hit counts.

use serde_json::{json, Value};

use crate::common::{expect_error, expect_status, TestServer};

async fn audit_verbs(s: &TestServer) -> Vec<String> {
    let r = s.api.get("/v1/audit?limit=200", &s.admin).await;
    expect_status(&r, 200)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["verb"].as_str().unwrap().to_string())
        .collect()
}

async fn timeline_kinds(s: &TestServer, token: &str, incident: i64) -> Vec<(String, String)> {
    let r = s
        .api
        .get(&format!("/v1/incidents/{incident}/timeline"), token)
        .await;
    expect_status(&r, 200)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn settings_are_set_by_an_admin_audited_and_override_the_flags() {
    let mut settings = TestServer::settings();
    settings.org.company_name = Some("Flag Shop".into());
    let s = TestServer::start_with(settings).await;
    let (_, r) = s.api.new_token(&s.admin, "alice", "responder").await;
    let (_, v) = s.api.new_token(&s.admin, "victor", "viewer").await;

    let got = s.api.get("/v1/settings", &v).await;
    let got = expect_status(&got, 200);
    assert_eq!(got["company_name"], "Flag Shop");
    assert!(got["dpo_contact"].is_null());
    assert_eq!(got["set_through_api"], json!([]));

    // The authority notification needs the DPO contact: missing until an admin sets it.
    let inc = s.api.new_incident(&r, "breach").await;
    let facts = json!({"breach_nature": "n", "data_categories": ["email"], "data_subjects_approx": 3,
        "records_approx": 3, "likely_consequences": "c", "measures_taken": "m"});
    expect_status(
        &s.api
            .patch(&format!("/v1/incidents/{inc}"), &r, facts)
            .await,
        200,
    );
    let notify = json!({"audience": "authority", "channel": "dpa-portal"});
    let path = format!("/v1/incidents/{inc}/notifications");
    let refused = s.api.post(&path, &r, notify.clone()).await;
    expect_error(&refused, 422, Some("dpo_contact"), Some("missing_facts"));

    let change = json!({"dpo_contact": "Dana Privacy, dpo@example.com", "security_mailbox": "security@example.com"});
    let denied = s.api.patch("/v1/settings", &r, change.clone()).await;
    expect_error(&denied, 403, None, Some("forbidden"));
    let set = s.api.patch("/v1/settings", &s.admin, change).await;
    let set = expect_status(&set, 200).clone();
    assert_eq!(set["dpo_contact"], "Dana Privacy, dpo@example.com");
    assert_eq!(
        set["company_name"], "Flag Shop",
        "unset fields keep the flag's value"
    );
    assert_eq!(
        set["set_through_api"],
        json!(["dpo_contact", "security_mailbox"])
    );
    assert_eq!(set["updated_by"], "root");
    assert!(audit_verbs(&s)
        .await
        .contains(&"settings.update".to_string()));
    let ok = s.api.post(&path, &r, notify).await;
    assert_eq!(
        expect_status(&ok, 201)["facts"]["dpo_contact"],
        "Dana Privacy, dpo@example.com"
    );
    // The internal alert says where it goes.
    let alert = format!("/v1/incidents/{inc}/documents/internal_alert");
    expect_status(
        &s.api
            .patch(
                &format!("/v1/incidents/{inc}"),
                &r,
                json!({"summary": "s", "impact": "i", "next_update_at": "2030-01-01T00:00:00Z"}),
            )
            .await,
        200,
    );
    let doc = s.api.get(&alert, &r).await;
    assert_eq!(
        expect_status(&doc, 200)["fields"]["to"],
        "security@example.com"
    );

    // Every invalid field at once; nothing changed.
    let bad = s
        .api
        .patch(
            "/v1/settings",
            &s.admin,
            json!({"company_name": " ", "security_mailbox": "nope"}),
        )
        .await;
    expect_error(&bad, 422, Some("company_name"), Some("invalid_field"));
    let fields: Vec<&str> = bad.json["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["company_name", "security_mailbox"]);
    // null clears back to the flag (none for the mailbox).
    let cleared = s
        .api
        .patch("/v1/settings", &s.admin, json!({"security_mailbox": null}))
        .await;
    let cleared = expect_status(&cleared, 200);
    assert!(cleared["security_mailbox"].is_null());
    assert_eq!(cleared["dpo_contact"], "Dana Privacy, dpo@example.com");
}

#[tokio::test]
async fn an_action_moves_or_links_to_another_incident_without_a_gap() {
    let s = TestServer::start().await;
    let (_, r) = s.api.new_token(&s.admin, "alice", "responder").await;
    let (_, v) = s.api.new_token(&s.admin, "victor", "viewer").await;
    let demo = s.api.new_incident(&r, "demo").await;
    let real = s.api.new_incident(&r, "skimmer").await;
    let other = s.api.new_incident(&r, "same source").await;
    let a = s
        .api
        .new_action(
            &r,
            demo,
            json!({"kind": "block", "target": {"cidr": "203.0.113.7"}, "reason": "exfiltration"}),
        )
        .await;
    let id = a["id"].as_i64().unwrap();
    let created_version = a["created_version"].as_i64().unwrap();

    let body = json!({"incident_id": real, "reason": "filed under the demo incident by mistake"});
    let denied = s
        .api
        .post(&format!("/v1/actions/{id}/move"), &v, body.clone())
        .await;
    expect_error(&denied, 403, None, Some("forbidden"));
    let moved = s
        .api
        .post(&format!("/v1/actions/{id}/move"), &r, body)
        .await;
    let moved = expect_status(&moved, 200).clone();
    assert_eq!(moved["incident_id"], real);
    assert_eq!(moved["status"], "active", "moving does not lift");
    assert!(moved["ended_version"].is_null());
    // The edges get the rule again with its new incident, in one delta: no gap.
    let delta = s
        .api
        .get(
            &format!("/v1/edge/policy?since={created_version}"),
            &s.admin,
        )
        .await;
    assert_eq!(delta.status, 200);
    match edge_policy::wire::decode(crate::common::unseal(&delta.bytes)).unwrap() {
        edge_policy::wire::Message::Delta(d) => {
            assert!(d.removed.is_empty(), "{d:?}");
            assert_eq!(d.upserts.len(), 1, "{d:?}");
            assert_eq!(d.upserts[0].incident, Some(real as u64), "{d:?}");
        }
        other => panic!("expected a delta: {other:?}"),
    }

    let on_demo = timeline_kinds(&s, &r, demo).await;
    let on_real = timeline_kinds(&s, &r, real).await;
    assert!(on_demo
        .iter()
        .any(|(k, m)| k == "action_moved" && m.contains(&format!("to incident {real}"))));
    assert!(on_real
        .iter()
        .any(|(k, m)| k == "action_moved" && m.contains(&format!("from incident {demo}"))));
    assert!(audit_verbs(&s).await.contains(&"action.move".to_string()));
    // The demo incident's actions no longer include it; the real one's do.
    let detail = |inc: i64| {
        let api = &s.api;
        let r = r.clone();
        async move {
            let d = api.get(&format!("/v1/incidents/{inc}"), &r).await;
            expect_status(&d, 200)["actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert!(detail(demo).await.is_empty());
    assert_eq!(detail(real).await, [id]);

    // Linked: still the real incident's, shown on the other one too.
    let link = json!({"incident_id": other, "reason": "the same exfiltration range"});
    let linked = s
        .api
        .post(&format!("/v1/actions/{id}/link"), &r, link.clone())
        .await;
    let linked = expect_status(&linked, 200).clone();
    assert_eq!(linked["incident_id"], real);
    assert_eq!(linked["linked_incident_ids"], json!([other]));
    assert_eq!(detail(other).await, [id]);
    assert!(timeline_kinds(&s, &r, other)
        .await
        .iter()
        .any(|(k, _)| k == "action_linked"));
    assert!(audit_verbs(&s).await.contains(&"action.link".to_string()));
    let again = s
        .api
        .post(&format!("/v1/actions/{id}/link"), &r, link)
        .await;
    expect_error(&again, 409, Some("incident_id"), Some("conflict"));

    // Not to a closed incident.
    let closed = s.api.new_incident(&r, "old").await;
    expect_status(
        &s.api
            .patch(
                &format!("/v1/incidents/{closed}"),
                &r,
                json!({"phase": "closed"}),
            )
            .await,
        200,
    );
    let to_closed = json!({"incident_id": closed, "reason": "r"});
    let refused = s
        .api
        .post(&format!("/v1/actions/{id}/move"), &r, to_closed)
        .await;
    expect_error(&refused, 409, Some("incident_id"), Some("conflict"));
    assert_eq!(s.api.verify(&s.admin).await["ok"], true);
}

#[tokio::test]
async fn a_post_mortem_names_every_missing_field_at_once() {
    let s = TestServer::start().await;
    let (_, r) = s.api.new_token(&s.admin, "alice", "responder").await;
    let inc = s.api.new_incident(&r, "x").await;
    let path = format!("/v1/incidents/{inc}/postmortem");
    let resp = s
        .api
        .send(
            reqwest::Method::PUT,
            &path,
            crate::common::Req::token(&r)
                .json(json!({"root_cause": " ", "follow_ups": [{"item": "i", "owner": ""}]})),
        )
        .await;
    expect_error(&resp, 422, Some("lessons_learned"), Some("invalid_field"));
    let fields: Vec<&str> = resp.json["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "lessons_learned",
            "root_cause",
            "data_impact",
            "attack_vectors",
            "follow_ups[0].owner"
        ]
    );
    let msg = resp.json["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("5 fields are not valid"), "{msg}");
}

#[tokio::test]
async fn an_incident_without_title_and_severity_names_both() {
    let s = TestServer::start().await;
    let (_, r) = s.api.new_token(&s.admin, "alice", "responder").await;
    let resp = s
        .api
        .post("/v1/incidents", &r, json!({"summary": "s"}))
        .await;
    expect_error(&resp, 422, Some("title"), Some("invalid_field"));
    let fields: Vec<&str> = resp.json["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["title", "severity"]);
}

#[tokio::test]
async fn lookup_says_whether_and_by_which_action() {
    let s = TestServer::start().await;
    let (_, r) = s.api.new_token(&s.admin, "alice", "responder").await;
    let (_, v) = s.api.new_token(&s.admin, "victor", "viewer").await;
    let inc = s.api.new_incident(&r, "stolen key").await;
    let mut ids = Vec::new();
    for body in [
        json!({"kind": "block", "target": {"cidr": "198.51.100.0/24"}, "reason": "exfil"}),
        json!({"kind": "block", "target": {"api_key": "sk_live_stolen_123"}, "reason": "stolen"}),
        json!({"kind": "isolate", "scope": {"host": "admin.shop.example"}, "isolation": "read_only", "reason": "r"}),
        json!({"kind": "block", "target": {"account": "acct-42"}, "mode": "simulate", "reason": "watch"}),
    ] {
        ids.push(
            s.api.new_action(&r, inc, body).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let look = |q: &str| {
        let api = &s.api;
        let (q, v) = (q.to_string(), v.clone());
        async move { api.get(&format!("/v1/lookup?{q}"), &v).await }
    };
    let ip = look("ip=::ffff:198.51.100.9").await;
    let ip = expect_status(&ip, 200).clone();
    assert_eq!(ip["kind"], "ip");
    assert_eq!(ip["value"], "198.51.100.9");
    assert_eq!(ip["contained"], true);
    assert_eq!(ip["matches"][0]["action"]["id"], ids[0]);
    assert_eq!(ip["matches"][0]["matched"], "198.51.100.0/24");

    // The raw key is hashed by the server; the answer carries only the hash.
    let key = look("api_key=sk_live_stolen_123").await;
    let key = expect_status(&key, 200).clone();
    assert_eq!(key["contained"], true);
    assert_eq!(key["matches"][0]["action"]["id"], ids[1]);
    assert!(!String::from_utf8_lossy(&serde_json::to_vec(&key).unwrap()).contains("sk_live"));
    assert_eq!(look("api_key=sk_live_other").await.json["contained"], false);

    let host = look("host=ADMIN.shop.example:443&path=/orders").await;
    assert_eq!(host.json["contained"], true, "{}", host.json);
    let sim: Value = look("account=acct-42").await.json;
    assert_eq!(sim["contained"], false, "a simulate rule contains nothing");
    assert_eq!(sim["matches"][0]["action"]["mode"], "simulate");
    let none = look("ip=192.0.2.1").await;
    assert_eq!(expect_status(&none, 200)["matches"], json!([]));

    for (q, field) in [
        ("", "ip"),
        ("ip=1.2.3.4&account=a", "account"),
        ("ip=1.2.3", "ip"),
        ("path=/a/%252e%252e/b", "path"),
        ("colour=red", "colour"),
    ] {
        let r = look(q).await;
        assert!(r.status == 400 || r.status == 422, "{q}: {}", r.status);
        assert_eq!(r.json["error"]["field"], field, "{q}: {}", r.json);
    }
}

#[tokio::test]
async fn hit_counts_say_how_often_edges_report_and_when_they_last_did() {
    let s = TestServer::start().await;
    let (_, r) = s.api.new_token(&s.admin, "alice", "responder").await;
    let (_, e) = s.api.new_token(&s.admin, "edge-1", "edge").await;
    let inc = s.api.new_incident(&r, "x").await;
    let a = s
        .api
        .new_action(
            &r,
            inc,
            json!({"kind": "block", "target": {"cidr": "203.0.113.0/24"}, "reason": "r"}),
        )
        .await;
    let id = a["id"].as_i64().unwrap();
    let before = s.api.get(&format!("/v1/actions/{id}"), &r).await;
    let before = expect_status(&before, 200).clone();
    assert!(before["hits"]["last_report_at"].is_null());
    assert!(before["hits"]["report_interval_secs"].is_null());
    let report = json!({"edge_id": "ams-1", "boot_id": "b", "seq": 1, "policy_version": 2,
        "interval_s": 10, "hits": [{"rule_id": id, "count": 3}]});
    let sent = s.api.post("/v1/edge/reports", &e, report).await;
    assert_eq!(sent.status, 204, "{}", String::from_utf8_lossy(&sent.bytes));
    let after = s.api.get(&format!("/v1/actions/{id}"), &r).await;
    let hits = expect_status(&after, 200)["hits"].clone();
    assert_eq!(hits["total"], 3);
    assert_eq!(hits["report_interval_secs"], 10);
    assert!(
        hits["last_report_at"].as_str().unwrap().starts_with("20"),
        "{hits}"
    );
    let edges = s.api.get("/v1/edges", &r).await;
    assert_eq!(
        expect_status(&edges, 200)[0]["report_interval_secs"],
        10,
        "{}",
        edges.json
    );
}
