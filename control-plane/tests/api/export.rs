//! The export verifies its own audit chain; retention: nothing younger than 5 years can
//! be deleted, and the purge of older records is itself audited.

use std::process::Command;

use control_plane::cli::years_before;
use control_plane::clock::{Clock, SystemClock};
use control_plane::store::RecordStore;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::{binary, expect_error, expect_status, Req, TestServer};
use crate::deadlines::{postmortem, server};

/// Recompute the chain from the export alone, following the documented rule.
fn verify(audit: &Value) -> Result<usize, String> {
    let events = audit["events"].as_array().unwrap();
    for e in events {
        let canonical = json!([
            e["seq"],
            e["at"],
            e["actor"],
            e["verb"],
            e["object"],
            e["incident_id"],
            e["before"],
            e["after"],
            e["reason"],
            e["prev_hash"]
        ]);
        let h = hex::encode(Sha256::digest(canonical.to_string().as_bytes()));
        if e["hash"] != h {
            return Err(format!("event {} does not hash to its hash", e["seq"]));
        }
    }
    let links = audit["links"].as_array().unwrap();
    for w in links.windows(2) {
        if w[1]["seq"].as_i64().unwrap() != w[0]["seq"].as_i64().unwrap() + 1
            || w[1]["prev_hash"] != w[0]["hash"]
        {
            return Err(format!(
                "link {} does not follow {}",
                w[1]["seq"], w[0]["seq"]
            ));
        }
    }
    for e in events {
        if !links.iter().any(|l| {
            l["seq"] == e["seq"] && l["hash"] == e["hash"] && l["prev_hash"] == e["prev_hash"]
        }) {
            return Err(format!("event {} is not in the chain", e["seq"]));
        }
    }
    Ok(events.len())
}

/// A closed incident with everything a record holds (actions, evidence, a notification,
/// a post-mortem, phases), beside another incident; returns its id and a viewer token.
pub async fn full_record(s: &TestServer) -> (i64, String) {
    let api = &s.api;
    let (_, r) = api.new_token(&s.admin, "alice", "responder").await;
    let (_, edge) = api.new_token(&s.admin, "edge-1", "edge").await;
    let (_, viewer) = api.new_token(&s.admin, "auditor", "viewer").await;
    let body = json!({"title": "Pixel script compromise", "severity": "P0", "personal_data": true,
        "summary": "skimmer", "impact": "checkout", "breach_nature": "card skimming",
        "data_categories": ["payment card"], "data_subjects_approx": 10, "records_approx": 10,
        "likely_consequences": "fraud", "measures_taken": "pixel killed"});
    let id = expect_status(&api.post("/v1/incidents", &r, body).await, 201)["id"]
        .as_i64()
        .unwrap();
    let other = api.new_incident(&r, "interleaved").await;
    let kill = api
        .new_action(
            &r,
            id,
            json!({"kind": "isolate", "scope": {"pixel": "px-4711"},
        "isolation": "pixel_kill", "reason": "skimmer"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    api.block_host(&r, other, "other.example").await;
    let ndjson = json!({"start_time": "2026-03-02T09:00:10Z", "method": "GET", "path": "/px/px-4711.js",
        "authority": "cdn.example.com", "downstream_remote_address": "192.0.2.9:4000", "response_code": 200}).to_string();
    let ing = api
        .send(
            Method::POST,
            "/v1/evidence/access-logs",
            Req::token(&edge).raw(ndjson, "application/x-ndjson"),
        )
        .await;
    assert_eq!(expect_status(&ing, 200)["stored"], 1);
    let note = json!({"audience": "authority", "channel": "dpa-portal", "reference": "DPA-7"});
    expect_status(
        &api.post(&format!("/v1/incidents/{id}/notifications"), &r, note)
            .await,
        201,
    );
    expect_status(
        &api.patch(
            &format!("/v1/incidents/{id}"),
            &r,
            json!({"phase": "post_incident"}),
        )
        .await,
        200,
    );
    let put = api
        .send(
            Method::PUT,
            &format!("/v1/incidents/{id}/postmortem"),
            Req::token(&r).json(postmortem()),
        )
        .await;
    expect_status(&put, 200);
    expect_status(
        &api.post(
            &format!("/v1/actions/{kill}/lift"),
            &r,
            json!({"reason": "script cleaned"}),
        )
        .await,
        200,
    );
    expect_status(
        &api.patch(
            &format!("/v1/incidents/{id}"),
            &r,
            json!({"phase": "closed"}),
        )
        .await,
        200,
    );
    (id, viewer)
}

#[tokio::test]
async fn export_is_complete_and_verifies_its_own_chain() {
    let s = server().await;
    let api = &s.api;
    let (id, viewer) = full_record(&s).await;
    let x = api
        .get(&format!("/v1/incidents/{id}/export"), &viewer)
        .await;
    let x = expect_status(&x, 200).clone();
    assert_eq!(x["format"], "edge-containment/incident-record/v1");
    assert_eq!(x["incident"]["status"], "closed");
    assert_eq!(x["retention"]["keep_until"], "2031-03-02T09:00:00.000Z");
    assert_eq!(x["actions"].as_array().unwrap().len(), 1);
    assert_eq!(x["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(x["evidence"].as_array().unwrap().len(), 1);
    assert_eq!(x["postmortem"]["root_cause"], "Stolen CDN deploy key");
    assert!(x["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["kind"] == "authority_notification" && d["status"] == "met"));
    assert!(x["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "evidence"));
    let audit = &x["audit"];
    let verbs: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["verb"].as_str().unwrap())
        .collect();
    for v in [
        "incident.create",
        "action.create",
        "evidence.ingest",
        "notification.record",
        "postmortem.submit",
        "action.lift",
        "incident.update",
    ] {
        assert!(verbs.contains(&v), "{v} missing from {verbs:?}");
    }
    assert!(audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["incident_id"] == id));
    assert!(
        audit["links"].as_array().unwrap().len() > verbs.len(),
        "the other incident's events are linked by hash"
    );
    assert_eq!(audit["chain_verified"], true);
    assert!(
        audit["self_check"].as_str().unwrap().starts_with("ok"),
        "{}",
        audit["self_check"]
    );
    assert_eq!(verify(audit), Ok(verbs.len()));
    let head = api.verify(&s.admin).await;
    assert_eq!(audit["chain_head_hash"], head["last_hash"]);
    // The check has teeth: an edited event or a dropped event is caught.
    let mut edited = audit.clone();
    edited["events"][1]["actor"] = json!("mallory");
    assert!(verify(&edited).is_err());
    let mut dropped = audit.clone();
    dropped["links"].as_array_mut().unwrap().remove(1);
    assert!(verify(&dropped).is_err());

    let md = api
        .get(
            &format!("/v1/incidents/{id}/export?format=markdown"),
            &viewer,
        )
        .await;
    assert_eq!(md.status, 200);
    assert!(md
        .header("content-type")
        .unwrap()
        .starts_with("text/markdown"));
    let text = String::from_utf8_lossy(&md.bytes);
    for want in [
        "# Incident record #",
        "## Deadlines",
        "## Timeline",
        "## Containment actions",
        "## Notifications",
        "## Post-mortem",
        "## Evidence from the edge (1 lines)",
        "## Audit trail",
        "Hash rule:",
        "Rotate CDN keys",
    ] {
        assert!(text.contains(want), "{want} missing in:\n{text}");
    }
    let nf = api.get("/v1/incidents/999/export", &viewer).await;
    expect_error(&nf, 404, None, Some("not_found"));
}

#[tokio::test]
async fn purge_keeps_five_years_and_is_audited() {
    let s = TestServer::start().await;
    let api = &s.api;
    let real_now = SystemClock.now_ms();
    // Six years ago: one closed incident with a lifted action, one with an active action.
    s.clock.set_ms(years_before(real_now, 6));
    let old = api.new_incident(&s.admin, "old").await;
    let a = api.block_host(&s.admin, old, "old.example").await["id"]
        .as_i64()
        .unwrap();
    expect_status(
        &api.post(
            &format!("/v1/actions/{a}/lift"),
            &s.admin,
            json!({"reason": "done"}),
        )
        .await,
        200,
    );
    expect_status(
        &api.patch(
            &format!("/v1/incidents/{old}"),
            &s.admin,
            json!({"phase": "closed"}),
        )
        .await,
        200,
    );
    let still_enforced = api.new_incident(&s.admin, "old but enforced").await;
    api.block_host(&s.admin, still_enforced, "enforced.example")
        .await;
    // Closed with its block kept on purpose (closing with live containment needs a say).
    expect_status(
        &api.patch(
            &format!("/v1/incidents/{still_enforced}"),
            &s.admin,
            json!({"phase": "closed", "keep_containment": true, "reason": "kept"}),
        )
        .await,
        200,
    );
    // Four years ago: closed, but younger than five years.
    s.clock.set_ms(years_before(real_now, 4));
    let young = api.new_incident(&s.admin, "young").await;
    expect_status(
        &api.patch(
            &format!("/v1/incidents/{young}"),
            &s.admin,
            json!({"phase": "closed"}),
        )
        .await,
        200,
    );
    s.clock.set_ms(real_now);

    // No path deletes a young record: not the API (no DELETE route), not raw SQL.
    let del = api
        .send(
            Method::DELETE,
            &format!("/v1/incidents/{young}"),
            Req::token(&s.admin),
        )
        .await;
    assert!(del.status == 404 || del.status == 405, "{}", del.status);
    let pool = s.store.pool();
    for sql in [
        "DELETE FROM timeline WHERE incident_id = $1",
        "DELETE FROM incidents WHERE id = $1",
    ] {
        let e = sqlx::query(sql)
            .bind(young)
            .execute(pool)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("retention"), "{e}");
    }
    let e = s
        .store
        .purge("test", years_before(real_now, 3), 3, false, real_now)
        .await;
    assert!(e.is_err(), "fewer than 5 years is refused");

    // The CLI refuses fewer than 5 years; a dry run changes nothing.
    let db = s.database_url.clone();
    let run = |args: &[&str]| {
        Command::new(binary())
            .arg("purge")
            .args(args)
            .args(["--database-url", &db])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    assert!(!run(&["--older-than-years", "4"]).status.success());
    let before = s.counts().await;
    let dry = run(&["--older-than-years", "5", "--dry-run"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let report: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["incidents"], json!([old]));
    assert_eq!(report["dry_run"], true);
    assert_eq!(before, s.counts().await);

    let out = run(&["--older-than-years", "5", "--actor", "records-officer"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["incidents"], json!([old]));
    assert_eq!(report["rows"]["incidents"], 1);
    assert_eq!(report["rows"]["actions"], 1);
    let seq = report["audit_seq"].as_i64().unwrap();
    expect_error(
        &api.get(&format!("/v1/incidents/{old}"), &s.admin).await,
        404,
        None,
        Some("not_found"),
    );
    expect_status(
        &api.get(&format!("/v1/incidents/{young}"), &s.admin).await,
        200,
    );
    expect_status(
        &api.get(&format!("/v1/incidents/{still_enforced}"), &s.admin)
            .await,
        200,
    );
    // The purged incident's audit events stay, the purge is recorded, the chain is intact.
    let events = api
        .get(&format!("/v1/audit?incident={old}"), &s.admin)
        .await;
    assert!(expect_status(&events, 200).as_array().unwrap().len() >= 3);
    let purge = api
        .get(
            &format!("/v1/audit?after_seq={}&limit=1", seq - 1),
            &s.admin,
        )
        .await;
    let purge = &expect_status(&purge, 200)[0];
    assert_eq!(
        (purge["verb"].as_str(), purge["actor"].as_str()),
        (Some("retention.purge"), Some("records-officer"))
    );
    assert_eq!(purge["after"]["incidents"], json!([old]));
    assert_eq!(api.verify(&s.admin).await["ok"], true);
    // Deltas from before the purge are answered with a snapshot.
    let (_, e) = api.new_token(&s.admin, "edge", "edge").await;
    let p = api.get("/v1/edge/policy?since=1", &e).await;
    assert_eq!(p.header("x-policy-kind"), Some("snapshot"));
}
