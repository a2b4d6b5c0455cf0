//! Closing an incident with containment still live: refused (409 naming every live action)
//! unless the request lifts it (`lift_all`) or keeps it on purpose (`keep_containment`),
//! each with a reason; `POST /v1/incidents/{id}/lift-all` lifts it without closing.

use serde_json::json;

use crate::common::{expect_error, expect_status, TestServer};

async fn block(s: &TestServer, token: &str, inc: i64, cidr: &str, expires: Option<&str>) -> i64 {
    let mut body = json!({"kind": "block", "target": {"cidr": cidr}, "reason": "attack"});
    if let Some(e) = expires {
        body["expires_in"] = json!(e);
    }
    s.api.new_action(token, inc, body).await["id"]
        .as_i64()
        .unwrap()
}

async fn status(s: &TestServer, token: &str, action: i64) -> String {
    let r = s.api.get(&format!("/v1/actions/{action}"), token).await;
    expect_status(&r, 200)["status"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn version(s: &TestServer) -> String {
    let r = s.api.get("/v1/edge/policy", &s.admin).await;
    r.header("x-policy-version").unwrap().to_string()
}

#[tokio::test]
async fn closing_with_live_containment_is_refused_unless_lifted_or_kept_with_a_reason() {
    let s = TestServer::start().await;
    let (_, r) = s.api.new_token(&s.admin, "alice", "responder").await;
    let inc = s.api.new_incident(&r, "skimmer").await;
    // A non-expiring block and one with an expiry: both are live.
    let a = block(&s, &r, inc, "203.0.113.7/32", None).await;
    let b = block(&s, &r, inc, "198.51.100.0/24", Some("1h")).await;
    let path = format!("/v1/incidents/{inc}");

    let refused = s.api.patch(&path, &r, json!({"phase": "closed"})).await;
    expect_error(&refused, 409, Some("phase"), None);
    let msg = refused.json["error"]["message"].as_str().unwrap();
    for want in [
        format!("action {a} (block cidr 203.0.113.7/32)"),
        format!("action {b} (block cidr 198.51.100.0/24)"),
    ] {
        assert!(msg.contains(&want), "{want} not named in {msg}");
    }
    let still = expect_status(&s.api.get(&path, &r).await, 200).clone();
    assert_ne!(still["phase"], "closed", "nothing changed");

    // Each option needs a reason and only applies to closing; both at once make no sense.
    for (body, field) in [
        (json!({"phase": "closed", "lift_all": true}), "reason"),
        (
            json!({"phase": "closed", "keep_containment": true}),
            "reason",
        ),
        (
            json!({"phase": "containment", "lift_all": true, "reason": "x"}),
            "lift_all",
        ),
        (
            json!({"phase": "closed", "lift_all": true, "keep_containment": true, "reason": "x"}),
            "keep_containment",
        ),
    ] {
        expect_error(&s.api.patch(&path, &r, body).await, 422, Some(field), None);
    }

    // Kept on purpose: closed, both still enforced, and the timeline says so with the reason.
    let v = version(&s).await;
    let kept = s
        .api
        .patch(
            &path,
            &r,
            json!({"phase": "closed", "keep_containment": true,
            "reason": "the range keeps scanning; block stays until the WAF rule ships"}),
        )
        .await;
    assert_eq!(expect_status(&kept, 200)["phase"], "closed");
    assert_eq!(status(&s, &r, a).await, "active");
    assert_eq!(status(&s, &r, b).await, "active");
    assert_eq!(version(&s).await, v, "keeping changes no policy");
    let timeline = s.api.get(&format!("{path}/timeline"), &r).await;
    let entry = expect_status(&timeline, 200)
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "containment_kept")
        .cloned()
        .expect("a containment_kept entry");
    assert!(
        entry["reason"].as_str().unwrap().contains("WAF rule"),
        "{entry}"
    );
    assert_eq!(entry["data"]["actions"], json!([a, b]));
}

#[tokio::test]
async fn closing_with_lift_all_lifts_everything_in_one_version() {
    let s = TestServer::start().await;
    let (_, r) = s.api.new_token(&s.admin, "alice", "responder").await;
    let inc = s.api.new_incident(&r, "stuffing").await;
    let other = s.api.new_incident(&r, "unrelated").await;
    let a = block(&s, &r, inc, "203.0.113.7/32", None).await;
    let b = block(&s, &r, inc, "198.51.100.0/24", None).await;
    let c = block(&s, &r, other, "192.0.2.0/24", None).await;
    let v: u64 = version(&s).await.parse().unwrap();
    let closed = s
        .api
        .patch(
            &format!("/v1/incidents/{inc}"),
            &r,
            json!({"phase": "closed", "lift_all": true, "reason": "attack over"}),
        )
        .await;
    assert_eq!(expect_status(&closed, 200)["phase"], "closed");
    for id in [a, b] {
        let x = s.api.get(&format!("/v1/actions/{id}"), &r).await;
        let x = expect_status(&x, 200);
        assert_eq!(x["status"], "lifted");
        assert_eq!(x["end_reason"], "attack over");
    }
    assert_eq!(
        status(&s, &r, c).await,
        "active",
        "another incident's action is untouched"
    );
    assert_eq!(
        version(&s).await,
        (v + 1).to_string(),
        "one version for the lot"
    );
    let verify = s.api.verify(&s.admin).await;
    assert_eq!(verify["ok"], true, "{verify}");
}

#[tokio::test]
async fn lift_all_lifts_every_live_action_of_one_incident() {
    let s = TestServer::start().await;
    let (_, r) = s.api.new_token(&s.admin, "alice", "responder").await;
    let (_, viewer) = s.api.new_token(&s.admin, "v", "viewer").await;
    let inc = s.api.new_incident(&r, "pixel").await;
    let a = block(&s, &r, inc, "203.0.113.7/32", None).await;
    let b = block(&s, &r, inc, "198.51.100.0/24", None).await;
    let path = format!("/v1/incidents/{inc}/lift-all");
    expect_error(
        &s.api.post(&path, &r, json!({})).await,
        422,
        Some("reason"),
        None,
    );
    expect_error(
        &s.api.post(&path, &r, json!({"reason": " "})).await,
        422,
        Some("reason"),
        None,
    );
    assert_eq!(
        s.api
            .post(&path, &viewer, json!({"reason": "x"}))
            .await
            .status,
        403
    );
    expect_error(
        &s.api
            .post("/v1/incidents/999/lift-all", &r, json!({"reason": "x"}))
            .await,
        404,
        None,
        None,
    );
    let v: u64 = version(&s).await.parse().unwrap();
    let done = s
        .api
        .post(&path, &r, json!({"reason": "contained upstream"}))
        .await;
    let lifted: Vec<i64> = expect_status(&done, 200)["lifted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_i64().unwrap())
        .collect();
    assert_eq!(lifted, [a, b]);
    assert_eq!(version(&s).await, (v + 1).to_string());
    // Nothing live any more: nothing to do, no new version; closing needs nothing more.
    let again = s.api.post(&path, &r, json!({"reason": "again"})).await;
    assert_eq!(expect_status(&again, 200)["lifted"], json!([]));
    assert_eq!(version(&s).await, (v + 1).to_string());
    let closed = s
        .api
        .patch(
            &format!("/v1/incidents/{inc}"),
            &r,
            json!({"phase": "closed"}),
        )
        .await;
    expect_status(&closed, 200);
}
