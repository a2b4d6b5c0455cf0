//! The policy clock with a controllable clock: every deadline met, pending and overdue;
//! weekends and a holiday for the post-mortem; personal data toggled on later.

use std::time::Duration;

use control_plane::clock::parse_rfc3339;
use control_plane::domain::deadline::Holidays;
use control_plane::Settings;
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{expect_error, expect_status, Api, Req, TestServer};

pub fn t(s: &str) -> i64 {
    parse_rfc3339(s).unwrap()
}

/// A server whose clock stands at Monday 2026-03-02 09:00 UTC, with 2026-03-10 a holiday
/// and a DPO contact configured.
pub async fn server() -> TestServer {
    let s = TestServer::start_with(settings()).await;
    s.clock.set_ms(t("2026-03-02T09:00:00Z"));
    s
}

/// [`server`] on a new database at `database_url`.
pub async fn server_on(database_url: String) -> TestServer {
    let s = TestServer::start_at(database_url, settings()).await;
    s.clock.set_ms(t("2026-03-02T09:00:00Z"));
    s
}

/// The settings of [`server`].
pub fn settings() -> Settings {
    Settings {
        expiry_interval: Duration::from_millis(20),
        holidays: Holidays::parse("2026-03-10").unwrap(),
        org: control_plane::domain::settings::OrgSettings {
            dpo_contact: Some("Dana Privacy, dpo@example.com, +31 20 555 0100".into()),
            ..Default::default()
        },
        max_evidence_bytes: 64 * 1024,
        ..Settings::default()
    }
}

pub async fn deadlines(api: &Api, token: &str, id: i64) -> Vec<Value> {
    let r = api
        .get(&format!("/v1/incidents/{id}/deadlines"), token)
        .await;
    expect_status(&r, 200).as_array().unwrap().clone()
}

/// (status, due_at, met_at, late) of one deadline, or None when it does not apply.
pub async fn deadline(
    api: &Api,
    token: &str,
    id: i64,
    kind: &str,
) -> Option<(String, String, Value, bool)> {
    deadlines(api, token, id)
        .await
        .into_iter()
        .find(|d| d["kind"] == kind)
        .map(|d| {
            (
                d["status"].as_str().unwrap().to_string(),
                d["due_at"].as_str().unwrap().to_string(),
                d["met_at"].clone(),
                d["late"].as_bool().unwrap(),
            )
        })
}

async fn patch(api: &Api, token: &str, id: i64, body: Value) -> Value {
    let r = api.patch(&format!("/v1/incidents/{id}"), token, body).await;
    expect_status(&r, 200).clone()
}

pub fn postmortem() -> Value {
    json!({"lessons_learned": "Pin third-party scripts with SRI", "root_cause": "Stolen CDN deploy key",
        "attack_vectors": ["compromised CI secret", "script injection"], "data_impact": "card numbers typed at checkout",
        "follow_ups": [{"item": "Rotate CDN keys", "owner": "platform team", "due": "2026-03-20"}],
        "policy_changes": "SRI required for every customer-facing script"})
}

#[tokio::test]
async fn phase_windows_preliminary_report_and_post_mortem_with_weekend_and_holiday() {
    let s = server().await;
    let api = &s.api;
    let (_, r) = api.new_token(&s.admin, "alice", "responder").await;
    let id = api.new_incident(&r, "phases").await;
    let st = |d: Option<(String, String, Value, bool)>| d.unwrap().0;

    s.clock.set_ms(t("2026-03-02T09:10:00Z"));
    let all = deadlines(api, &r, id).await;
    let kinds: Vec<&str> = all.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["phase_detection_analysis", "preliminary_report", "phase_containment", "phase_eradication_recovery", "phase_post_incident"],
        "due order; no authority, HIPAA or post-mortem deadline without personal/health data or resolution"
    );
    assert!(all
        .iter()
        .all(|d| d["status"] == "pending" && d["met_at"].is_null()));
    let (_, due, _, _) = deadline(api, &r, id, "preliminary_report").await.unwrap();
    assert_eq!(due, "2026-03-02T11:00:00.000Z");

    // Detection & analysis left after 20 min: met in time.
    s.clock.set_ms(t("2026-03-02T09:20:00Z"));
    patch(api, &r, id, json!({"phase": "containment"})).await;
    let d = deadline(api, &r, id, "phase_detection_analysis")
        .await
        .unwrap();
    assert_eq!(
        (d.0.as_str(), d.2.as_str(), d.3),
        ("met", Some("2026-03-02T09:20:00.000Z"), false)
    );

    // Preliminary report recorded (staff) at 09:25: met.
    s.clock.set_ms(t("2026-03-02T09:25:00Z"));
    let body = json!({"audience": "staff", "kind": "preliminary_report", "channel": "email", "reference": "msg-1"});
    expect_status(
        &api.post(&format!("/v1/incidents/{id}/notifications"), &r, body)
            .await,
        201,
    );
    assert_eq!(st(deadline(api, &r, id, "preliminary_report").await), "met");

    // 3 h after detection, still containing: containment window overdue, everywhere.
    s.clock.set_ms(t("2026-03-02T12:00:00Z"));
    assert_eq!(
        st(deadline(api, &r, id, "phase_containment").await),
        "overdue"
    );
    let over = api.get("/v1/deadlines?status=overdue", &r).await;
    let over = expect_status(&over, 200).as_array().unwrap().clone();
    assert_eq!(over.len(), 1, "{over:?}");
    assert_eq!(
        (over[0]["incident_id"].as_i64(), over[0]["kind"].as_str()),
        (Some(id), Some("phase_containment"))
    );
    let metrics = api.send(Method::GET, "/metrics", Req::default()).await;
    let text = String::from_utf8_lossy(&metrics.bytes);
    assert!(
        text.contains("edge_cp_deadlines_overdue{kind=\"phase_containment\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("edge_cp_deadlines_overdue{kind=\"post_mortem\"} 0"),
        "{text}"
    );
    patch(api, &r, id, json!({"phase": "eradication_recovery"})).await;
    let d = deadline(api, &r, id, "phase_containment").await.unwrap();
    assert_eq!((d.0.as_str(), d.3), ("met", true), "met, late");
    let over = api.get("/v1/deadlines?status=overdue", &r).await;
    assert_eq!(expect_status(&over, 200).as_array().unwrap().len(), 0);

    // Resolved on Friday evening: the post-mortem is due at the end of the 5th business
    // day after Friday, skipping the weekend and the holiday on Tuesday 10 March.
    s.clock.set_ms(t("2026-03-06T18:30:00Z"));
    assert!(deadline(api, &r, id, "post_mortem").await.is_none());
    let inc = patch(api, &r, id, json!({"phase": "post_incident"})).await;
    assert_eq!(inc["resolved_at"], "2026-03-06T18:30:00.000Z");
    let pm = deadline(api, &r, id, "post_mortem").await.unwrap();
    assert_eq!(
        (pm.0.as_str(), pm.1.as_str()),
        ("pending", "2026-03-16T23:59:59.999Z")
    );
    assert_eq!(
        st(deadline(api, &r, id, "phase_post_incident").await),
        "overdue"
    );
    s.clock.set_ms(t("2026-03-16T23:59:59.000Z"));
    assert_eq!(st(deadline(api, &r, id, "post_mortem").await), "pending");
    s.clock.set_ms(t("2026-03-17T00:00:00.000Z"));
    assert_eq!(st(deadline(api, &r, id, "post_mortem").await), "overdue");
    let over = api
        .get("/v1/deadlines?status=overdue&kind=post_mortem", &r)
        .await;
    assert_eq!(expect_status(&over, 200).as_array().unwrap().len(), 1);
    let put = api
        .send(
            Method::PUT,
            &format!("/v1/incidents/{id}/postmortem"),
            Req::token(&r).json(postmortem()),
        )
        .await;
    expect_status(&put, 200);
    let pm = deadline(api, &r, id, "post_mortem").await.unwrap();
    assert_eq!(
        (pm.0.as_str(), pm.2.as_str(), pm.3),
        ("met", Some("2026-03-17T00:00:00.000Z"), true)
    );

    // Moving back out of post-incident clears the resolution (and its deadline).
    patch(
        api,
        &r,
        id,
        json!({"phase": "eradication_recovery", "reason": "new foothold found"}),
    )
    .await;
    assert!(deadline(api, &r, id, "post_mortem").await.is_none());
    assert_eq!(
        st(deadline(api, &r, id, "phase_eradication_recovery").await),
        "overdue"
    );
    patch(api, &r, id, json!({"phase": "closed"})).await;
    for kind in [
        "phase_detection_analysis",
        "phase_containment",
        "phase_eradication_recovery",
        "phase_post_incident",
        "post_mortem",
    ] {
        assert_eq!(st(deadline(api, &r, id, kind).await), "met", "{kind}");
    }
    // The incident detail shows the same deadlines.
    let detail = api.get(&format!("/v1/incidents/{id}"), &r).await;
    assert_eq!(
        expect_status(&detail, 200)["deadlines"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
}

#[tokio::test]
async fn authority_and_hipaa_deadlines_follow_the_data_flags() {
    let s = server().await;
    let api = &s.api;
    let (_, r) = api.new_token(&s.admin, "alice", "responder").await;
    let t0 = "2026-03-02T09:00:00.000Z";

    // Personal data from the start: 72 h after the report (aware_at defaults to it).
    let b = api
        .post(
            "/v1/incidents",
            &r,
            json!({"title": "from the start", "severity": "P1", "personal_data": true,
        "reported_at": t0, "detected_at": "2026-03-02T08:30:00Z"}),
        )
        .await;
    let b = expect_status(&b, 201).clone();
    assert_eq!(b["aware_at"], t0);
    let from_start = b["id"].as_i64().unwrap();
    let a = deadline(api, &r, from_start, "authority_notification")
        .await
        .unwrap();
    assert_eq!(
        (a.0.as_str(), a.1.as_str()),
        ("pending", "2026-03-05T09:00:00.000Z")
    );

    // Turned on 10 h later: the deadline appears, 72 h from then.
    let later = api.new_incident(&r, "later").await;
    assert!(deadline(api, &r, later, "authority_notification")
        .await
        .is_none());
    s.clock.set_ms(t("2026-03-02T19:00:00Z"));
    let inc = patch(api, &r, later, json!({"personal_data": true})).await;
    assert_eq!(inc["aware_at"], "2026-03-02T19:00:00.000Z");
    let a = deadline(api, &r, later, "authority_notification")
        .await
        .unwrap();
    assert_eq!(a.1, "2026-03-05T19:00:00.000Z");
    // Awareness dated earlier moves the deadline in.
    patch(api, &r, later, json!({"aware_at": "2026-03-02T10:00:00Z"})).await;
    let a = deadline(api, &r, later, "authority_notification")
        .await
        .unwrap();
    assert_eq!(a.1, "2026-03-05T10:00:00.000Z");
    // Turned on together with an explicit aware_at.
    let third = api.new_incident(&r, "third").await;
    patch(
        api,
        &r,
        third,
        json!({"personal_data": true, "aware_at": "2026-03-02T12:00:00Z"}),
    )
    .await;
    assert_eq!(
        deadline(api, &r, third, "authority_notification")
            .await
            .unwrap()
            .1,
        "2026-03-05T12:00:00.000Z"
    );

    // Overdue, then met by recording the authority notification (once the facts are in).
    s.clock.set_ms(t("2026-03-05T10:00:00Z"));
    assert_eq!(
        deadline(api, &r, later, "authority_notification")
            .await
            .unwrap()
            .0,
        "pending",
        "due, not yet late"
    );
    s.clock.set_ms(t("2026-03-05T10:01:00Z"));
    assert_eq!(
        deadline(api, &r, later, "authority_notification")
            .await
            .unwrap()
            .0,
        "overdue"
    );
    let path = format!("/v1/incidents/{later}/notifications");
    let note =
        json!({"audience": "authority", "channel": "dpa-portal", "reference": "DPA-2026-0042"});
    let refused = api.post(&path, &r, note.clone()).await;
    expect_error(&refused, 422, Some("breach_nature"), Some("missing_facts"));
    patch(
        api,
        &r,
        later,
        json!({"breach_nature": "skimmer", "data_categories": ["payment card"],
        "data_subjects_approx": 1200, "records_approx": 1300, "likely_consequences": "card fraud",
        "measures_taken": "script removed, cards reported"}),
    )
    .await;
    expect_status(&api.post(&path, &r, note).await, 201);
    let a = deadline(api, &r, later, "authority_notification")
        .await
        .unwrap();
    assert_eq!((a.0.as_str(), a.3), ("met", true));
    // Staff being told does not meet it.
    let staff = json!({"audience": "staff", "channel": "slack"});
    expect_status(
        &api.post(
            &format!("/v1/incidents/{from_start}/notifications"),
            &r,
            staff,
        )
        .await,
        201,
    );
    assert_eq!(
        deadline(api, &r, from_start, "authority_notification")
            .await
            .unwrap()
            .0,
        "overdue"
    );

    // Health data: the HIPAA notice is due 60 days after awareness.
    let h = api
        .post(
            "/v1/incidents",
            &r,
            json!({"title": "phi", "severity": "P0", "health_data": true}),
        )
        .await;
    let h = expect_status(&h, 201)["id"].as_i64().unwrap();
    let hipaa = deadline(api, &r, h, "hipaa_notice").await.unwrap();
    assert_eq!(
        (hipaa.0.as_str(), hipaa.1.as_str()),
        ("pending", "2026-05-04T10:01:00.000Z")
    );
    assert!(deadline(api, &r, h, "authority_notification")
        .await
        .is_none());
    s.clock.set_ms(t("2026-05-04T10:02:00Z"));
    assert_eq!(
        deadline(api, &r, h, "hipaa_notice").await.unwrap().0,
        "overdue"
    );
    let body = json!({"audience": "customers", "kind": "hipaa_notice", "channel": "letter"});
    expect_status(
        &api.post(&format!("/v1/incidents/{h}/notifications"), &r, body)
            .await,
        201,
    );
    assert_eq!(deadline(api, &r, h, "hipaa_notice").await.unwrap().0, "met");
}
