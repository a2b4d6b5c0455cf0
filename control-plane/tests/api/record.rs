//! Notifications, rendered documents and the post-mortem rule.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{expect_error, expect_status, Req, TestServer};
use crate::deadlines::{postmortem, server};

#[track_caller]
fn expect_missing(r: &crate::common::Resp, want: &[&str]) {
    expect_error(r, 422, Some(want[0]), Some("missing_facts"));
    let got: Vec<&str> = r.json["error"]["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(got, want, "{}", r.json);
    for w in want {
        assert!(r.json["error"]["message"].as_str().unwrap().contains(w));
    }
}

#[tokio::test]
async fn documents_refuse_blanks_and_render_markdown_and_json() {
    let s = server().await;
    let api = &s.api;
    let (_, r) = api.new_token(&s.admin, "alice", "responder").await;
    let (_, v) = api.new_token(&s.admin, "victor", "viewer").await;
    let created = api
        .post(
            "/v1/incidents",
            &r,
            json!({"title": "Pixel script compromise", "severity": "P0"}),
        )
        .await;
    let id = expect_status(&created, 201)["id"].as_i64().unwrap();
    let doc = |kind: &str| format!("/v1/incidents/{id}/documents/{kind}");
    expect_missing(
        &api.get(&doc("internal_alert"), &v).await,
        &["summary", "impact", "next_update_at"],
    );
    expect_missing(
        &api.get(&doc("preliminary_report"), &v).await,
        &["summary", "impact", "systems_affected", "next_update_at"],
    );
    expect_missing(
        &api.get(&doc("customer_notification"), &v).await,
        &[
            "customer_title",
            "customer_summary",
            "breach_nature",
            "likely_consequences",
            "measures_taken",
        ],
    );
    let nf = api.get(&doc("press_release"), &v).await;
    expect_error(&nf, 404, Some("kind"), Some("not_found"));

    let facts = json!({"summary": "Injected skimmer in px-4711.js", "impact": "Checkout pages of 40 customers",
        "next_update_at": "2026-03-02T10:00:00Z", "breach_nature": "A script skimmed card data",
        "likely_consequences": "Card fraud", "measures_taken": "Pixel killed at every edge",
        "customer_title": "Your card details may have been read at checkout",
        "customer_summary": "A script on our checkout page read card details for two days."});
    expect_status(
        &api.patch(&format!("/v1/incidents/{id}"), &r, facts).await,
        200,
    );
    api.new_action(
        &r,
        id,
        json!({"kind": "isolate", "scope": {"pixel": "px-4711"}, "isolation": "pixel_kill",
        "reason": "skimmer injected"}),
    )
    .await;

    let alert = api.get(&doc("internal_alert"), &v).await;
    let alert = expect_status(&alert, 200).clone();
    assert_eq!(alert["kind"], "internal_alert");
    assert_eq!(alert["fields"]["severity"], "P0");
    assert_eq!(alert["fields"]["time_utc"], "2026-03-02T09:00:00.000Z");
    assert_eq!(
        alert["fields"]["next_update_at"],
        "2026-03-02T10:00:00.000Z"
    );
    let actions = alert["fields"]["actions_taken"].as_array().unwrap();
    assert_eq!(actions.len(), 1);
    assert!(actions[0]
        .as_str()
        .unwrap()
        .contains("isolate pixel px-4711 (pixel_kill)"));
    let md = api
        .get(&format!("{}?format=markdown", doc("internal_alert")), &v)
        .await;
    assert_eq!(md.status, 200);
    assert!(md
        .header("content-type")
        .unwrap()
        .starts_with("text/markdown"));
    let text = String::from_utf8_lossy(&md.bytes);
    for want in [
        "# [P0] Security incident",
        "Checkout pages of 40 customers",
        "## Next update",
        "px-4711",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    let by_accept = api
        .send(
            Method::GET,
            &doc("internal_alert"),
            Req::token(&v).header("accept", "text/markdown"),
        )
        .await;
    assert_eq!(by_accept.bytes, md.bytes);
    let bad = api
        .get(&format!("{}?format=pdf", doc("internal_alert")), &v)
        .await;
    expect_error(&bad, 400, Some("format"), Some("invalid_query"));

    // Still missing the systems affected.
    expect_missing(
        &api.get(&doc("preliminary_report"), &v).await,
        &["systems_affected"],
    );

    // The customer notice carries the configured DPO contact.
    let notice = api
        .get(
            &format!("{}?format=markdown", doc("customer_notification")),
            &v,
        )
        .await;
    let text = String::from_utf8_lossy(&notice.bytes);
    assert!(
        text.contains("dpo@example.com") && text.contains("Card fraud"),
        "{text}"
    );
    // Customers see their own title and summary, never the internal title.
    assert!(
        text.contains(
            "# Notice of a personal data breach: Your card details may have been read at checkout"
        ) && text.contains("A script on our checkout page"),
        "{text}"
    );
    assert!(!text.contains("Pixel script compromise"), "{text}");

    // Without a configured DPO, `dpo_contact` is named as missing.
    let bare = TestServer::start().await;
    let (_, r2) = bare.api.new_token(&bare.admin, "alice", "responder").await;
    let id2 = bare.api.new_incident(&r2, "no dpo").await;
    let facts = json!({"breach_nature": "n", "likely_consequences": "c", "measures_taken": "m",
        "customer_title": "t", "customer_summary": "s"});
    expect_status(
        &bare
            .api
            .patch(&format!("/v1/incidents/{id2}"), &r2, facts)
            .await,
        200,
    );
    let r = bare
        .api
        .get(
            &format!("/v1/incidents/{id2}/documents/customer_notification"),
            &r2,
        )
        .await;
    expect_missing(&r, &["dpo_contact"]);
}

#[tokio::test]
async fn notifications_are_records_and_the_authority_needs_the_gdpr_facts() {
    let s = server().await;
    let api = &s.api;
    let (_, r) = api.new_token(&s.admin, "alice", "responder").await;
    let id = api.new_incident(&r, "breach").await;
    let path = format!("/v1/incidents/{id}/notifications");
    let to_authority = json!({"audience": "authority", "channel": "dpa-portal", "reference": "DPA-1",
        "notified_at": "2026-03-02T08:55:00Z", "notified_by": "Dana (DPO)"});
    let before = s.counts().await;
    let r1 = api.post(&path, &r, to_authority.clone()).await;
    expect_missing(
        &r1,
        &[
            "breach_nature",
            "data_categories",
            "data_subjects_approx",
            "records_approx",
            "likely_consequences",
            "measures_taken",
        ],
    );
    assert_eq!(
        before,
        s.counts().await,
        "a refused notification writes nothing"
    );
    let facts = json!({"breach_nature": "skimmer", "data_categories": ["name", "payment card"],
        "data_subjects_approx": 1200, "records_approx": 1500, "likely_consequences": "fraud",
        "measures_taken": "pixel killed"});
    expect_status(
        &api.patch(&format!("/v1/incidents/{id}"), &r, facts).await,
        200,
    );
    let rec = api.post(&path, &r, to_authority).await;
    let rec = expect_status(&rec, 201).clone();
    assert_eq!(rec["notified_by"], "Dana (DPO)");
    assert_eq!(rec["recorded_by"], "alice");
    assert_eq!(rec["notified_at"], "2026-03-02T08:55:00.000Z");
    assert_eq!(rec["facts"]["records_approx"], 1500);
    assert_eq!(
        rec["facts"]["dpo_contact"],
        "Dana Privacy, dpo@example.com, +31 20 555 0100"
    );
    let staff = api
        .post(
            &path,
            &r,
            json!({"audience": "staff", "kind": "internal_alert", "channel": "slack"}),
        )
        .await;
    assert!(expect_status(&staff, 201)["facts"].is_null());
    let list = api.get(&path, &r).await;
    let list: Vec<Value> = expect_status(&list, 200).as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    let tl = api.get(&format!("/v1/incidents/{id}/timeline"), &r).await;
    let kinds: Vec<&str> = tl
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "notification_recorded")
            .count(),
        2
    );
    let audit = api.get(&format!("/v1/audit?incident={id}"), &r).await;
    assert!(audit
        .json
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["verb"] == "notification.record"));
}

#[tokio::test]
async fn closing_with_personal_data_needs_the_post_mortem() {
    let s = server().await;
    let api = &s.api;
    let (_, r) = api.new_token(&s.admin, "alice", "responder").await;
    let id = api.new_incident(&r, "pd later").await;
    let path = format!("/v1/incidents/{id}");
    expect_status(
        &api.patch(&path, &r, json!({"phase": "post_incident"}))
            .await,
        200,
    );
    // Turned on later, it applies just the same.
    expect_status(
        &api.patch(&path, &r, json!({"personal_data": true})).await,
        200,
    );
    let before = s.counts().await;
    let refused = api.patch(&path, &r, json!({"phase": "closed"})).await;
    expect_error(&refused, 409, Some("postmortem"), Some("conflict"));
    assert_eq!(before, s.counts().await);
    let nf = api.get(&format!("{path}/postmortem"), &r).await;
    expect_error(&nf, 404, None, Some("not_found"));
    let pm_path = format!("{path}/postmortem");
    let put = |body: Value| api.send(Method::PUT, &pm_path, Req::token(&r).json(body));
    let first = put(postmortem()).await;
    let first = expect_status(&first, 200).clone();
    assert_eq!(first["follow_ups"][0]["owner"], "platform team");
    s.clock.advance_ms(60_000);
    let mut revised = postmortem();
    revised["lessons_learned"] = json!("Pin scripts; alert on script hash changes");
    let second = put(revised).await;
    let second = expect_status(&second, 200).clone();
    assert_eq!(
        second["submitted_at"], first["submitted_at"],
        "the first submission stays"
    );
    assert_ne!(second["updated_at"], first["updated_at"]);
    let closed = api.patch(&path, &r, json!({"phase": "closed"})).await;
    assert_eq!(expect_status(&closed, 200)["status"], "closed");
    let audit = api.get(&format!("/v1/audit?incident={id}"), &r).await;
    let verbs: Vec<&str> = audit
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["verb"].as_str().unwrap())
        .collect();
    assert!(
        verbs.contains(&"postmortem.submit") && verbs.contains(&"postmortem.update"),
        "{verbs:?}"
    );
    // Without personal data closing needs no post-mortem.
    let other = api.new_incident(&r, "no pd").await;
    let c = api
        .patch(
            &format!("/v1/incidents/{other}"),
            &r,
            json!({"phase": "closed"}),
        )
        .await;
    expect_status(&c, 200);
}
