//! The bad-input table: every write endpoint × malformed input → 4xx naming the field, and
//! nothing written (object counts, audit length, timeline, hits and version unchanged).

use reqwest::Method;
use serde_json::json;

use crate::common::{expect_error, expect_status, Req, TestServer};

/// One case per line: `METHOD PATH WHO STATUS FIELD CODE BODY`.
///
/// WHO is the token used (`responder`, `admin`, `edge`); FIELD and CODE are `-` when not
/// checked; BODY is the rest of the line: empty for no body, `@big` for a body over the
/// limit, `@text <body>` to send it as `text/plain`. In paths, `{incident}` is a fixture
/// incident in phase containment, `{lifted}` a lifted action, `{live}` an active one (in
/// bodies too). The
/// fixtures also hold an allow entry for 192.0.2.0/24 and a block of 198.51.100.0/24.
const TABLE: &str = r#"
POST /v1/incidents responder 400 body invalid_json {
POST /v1/incidents responder 400 body invalid_json not json
POST /v1/incidents responder 422 title invalid_field {"title": 5, "severity": "P1"}
POST /v1/incidents responder 422 title - {"severity": "P1"}
POST /v1/incidents responder 422 title - {"title": "  ", "severity": "P1"}
POST /v1/incidents responder 422 severity - {"title": "x"}
POST /v1/incidents responder 422 severity - {"title": "x", "severity": "P9"}
POST /v1/incidents responder 422 personal_data - {"title": "x", "severity": "P1", "personal_data": "yes"}
POST /v1/incidents responder 422 detected_at - {"title": "x", "severity": "P1", "detected_at": "yesterday"}
POST /v1/incidents responder 422 detected_at - {"title": "x", "severity": "P1", "detected_at": "2999-01-01T00:00:00Z"}
POST /v1/incidents responder 422 systems_affected - {"title": "x", "severity": "P1", "systems_affected": "web"}
POST /v1/incidents responder 422 systems_affected[1] - {"title": "x", "severity": "P1", "systems_affected": ["web", 3]}
POST /v1/incidents responder 422 colour - {"title": "x", "severity": "P1", "colour": "red"}
POST /v1/incidents responder 413 body body_too_large @big
POST /v1/incidents responder 415 content-type unsupported_media_type @text {"title": "x", "severity": "P1"}
POST /v1/incidents responder 415 content-type unsupported_media_type
PATCH /v1/incidents/{incident} responder 422 body - {}
PATCH /v1/incidents/{incident} responder 422 phase - {"phase": "done"}
PATCH /v1/incidents/{incident} responder 422 severity - {"severity": 1}
PATCH /v1/incidents/{incident} responder 422 reason - {"phase": "detection_analysis"}
PATCH /v1/incidents/{incident} responder 422 assignee - {"assignee": ["a"]}
PATCH /v1/incidents/{incident} responder 400 body invalid_json {"severity": "P0",}
PATCH /v1/incidents/{incident} responder 413 body body_too_large @big
PATCH /v1/incidents/abc responder 400 id invalid_path {"severity": "P0"}
PATCH /v1/incidents/999999 responder 404 - not_found {"severity": "P0"}
POST /v1/incidents/{incident}/actions responder 400 body invalid_json [
POST /v1/incidents/{incident}/actions responder 422 kind - {"kind": "nuke", "target": {"cidr": "10.0.0.0/8"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 kind - {"target": {"cidr": "10.0.0.0/8"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 reason - {"kind": "block", "target": {"cidr": "10.0.0.0/8"}}
POST /v1/incidents/{incident}/actions responder 422 reason - {"kind": "block", "target": {"cidr": "10.0.0.0/8"}, "reason": ""}
POST /v1/incidents/{incident}/actions responder 422 target.cidr - {"kind": "block", "target": {"cidr": "10.0.0.300/8"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target.cidr - {"kind": "block", "target": {"cidr": "10.0.0.0/33"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target.cidr - {"kind": "block", "target": {"cidr": "2001:db8::g/64"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target.cidr - {"kind": "block", "target": {"cidr": 5}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target - {"kind": "block", "target": {"ip": "10.0.0.1"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target - {"kind": "block", "target": "10.0.0.1", "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target - {"kind": "block", "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target.host - {"kind": "block", "target": {"host": "a b"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target.path_prefix - {"kind": "block", "target": {"path_prefix": "api"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target.api_key - {"kind": "block", "target": {"api_key": ""}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 mode - {"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "mode": "maybe", "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 expires_in - {"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "expires_in": "soon"}
POST /v1/incidents/{incident}/actions responder 422 expires_in - {"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "expires_in": true}
POST /v1/incidents/{incident}/actions responder 422 expires_in - {"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "expires_in": -5}
POST /v1/incidents/{incident}/actions responder 422 expires_in - {"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "expires_in": "400d"}
POST /v1/incidents/{incident}/actions responder 422 expires_at - {"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "expires_at": "2001-01-01T00:00:00Z"}
POST /v1/incidents/{incident}/actions responder 422 expires_at - {"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "expires_at": "tomorrow"}
POST /v1/incidents/{incident}/actions responder 422 expires_at - {"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "expires_in": 60, "expires_at": "2999-01-01T00:00:00Z"}
POST /v1/incidents/{incident}/actions responder 422 force - {"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "force": "yes"}
POST /v1/incidents/{incident}/actions responder 422 urgent - {"kind": "block", "target": {"cidr": "10.9.0.0/16"}, "reason": "r", "urgent": true}
POST /v1/incidents/{incident}/actions responder 422 isolation - {"kind": "isolate", "scope": {"pixel": "px-1"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 isolation - {"kind": "isolate", "scope": {"pixel": "px-1"}, "isolation": "sleep", "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 scope - {"kind": "isolate", "scope": {"cidr": "10.0.0.0/8"}, "isolation": "block", "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target - {"kind": "isolate", "target": {"host": "a.example"}, "isolation": "block", "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target.cidr guard_rail {"kind": "block", "target": {"cidr": "0.0.0.0/0"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target.cidr guard_rail {"kind": "block", "target": {"cidr": "::/0"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target.cidr guard_rail {"kind": "block", "target": {"cidr": "10.0.0.0/6"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target.cidr guard_rail {"kind": "block", "target": {"cidr": "2001:db8::/20"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target.cidr guard_rail {"kind": "block", "target": {"cidr": "192.0.2.128/25"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 422 target.cidr guard_rail {"kind": "block", "target": {"cidr": "192.0.0.0/16"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 409 target.cidr conflict {"kind": "block", "target": {"cidr": "198.51.100.0/24"}, "reason": "r"}
POST /v1/incidents/{incident}/actions responder 409 target.cidr conflict {"kind": "block", "target": {"cidr": "198.51.100.9/24"}, "reason": "r", "force": true}
POST /v1/incidents/{incident}/actions responder 413 body body_too_large @big
POST /v1/incidents/999999/actions responder 404 - not_found {"kind": "block", "target": {"cidr": "10.1.0.0/16"}, "reason": "r"}
POST /v1/actions/{lifted}/lift responder 422 reason - {}
POST /v1/actions/{lifted}/lift responder 422 reason - {"reason": ""}
POST /v1/actions/{lifted}/lift responder 422 reason - {"reason": 5}
POST /v1/actions/{lifted}/lift responder 409 status conflict {"reason": "again"}
POST /v1/actions/{live}/lift responder 422 when - {"reason": "r", "when": "now"}
POST /v1/actions/{live}/lift responder 400 body invalid_json {
POST /v1/actions/{live}/lift responder 413 body body_too_large @big
POST /v1/actions/x/lift responder 400 id invalid_path {"reason": "r"}
POST /v1/actions/999999/lift responder 404 - not_found {"reason": "r"}
POST /v1/tokens admin 422 role - {"name": "x", "role": "root"}
POST /v1/tokens admin 409 name conflict {"name": "resp", "role": "viewer"}
POST /v1/tokens admin 422 name - {"role": "viewer"}
POST /v1/tokens admin 422 name - {"name": " ", "role": "viewer"}
POST /v1/tokens admin 422 name - {"name": 1, "role": "viewer"}
POST /v1/tokens admin 413 body body_too_large @big
DELETE /v1/tokens/abc admin 400 id invalid_path
DELETE /v1/tokens/999999 admin 404 - not_found
POST /v1/edge/reports edge 422 seq - {"edge_id": "e", "boot_id": "b", "policy_version": 1}
POST /v1/edge/reports edge 422 seq - {"edge_id": "e", "boot_id": "b", "seq": "one", "policy_version": 1}
POST /v1/edge/reports edge 422 seq - {"edge_id": "e", "boot_id": "b", "seq": 0, "policy_version": 1}
POST /v1/edge/reports edge 422 edge_id - {"edge_id": "", "boot_id": "b", "seq": 1, "policy_version": 1}
POST /v1/edge/reports edge 422 hits[0].count - {"edge_id": "e", "boot_id": "b", "seq": 1, "policy_version": 1, "hits": [{"rule_id": 1, "count": -1}]}
POST /v1/edge/reports edge 422 hits[0].count - {"edge_id": "e", "boot_id": "b", "seq": 1, "policy_version": 1, "hits": [{"rule_id": 1}]}
POST /v1/edge/reports edge 422 extra - {"edge_id": "e", "boot_id": "b", "seq": 1, "policy_version": 1, "extra": 1}
POST /v1/edge/reports edge 413 body body_too_large @big
POST /v1/incidents responder 422 health_data - {"title": "x", "severity": "P1", "health_data": 1}
POST /v1/incidents responder 422 indicators.cidrs[1] - {"title": "x", "severity": "P1", "indicators": {"cidrs": ["10.0.0.1", "x"]}}
POST /v1/incidents responder 422 aware_at - {"title": "x", "severity": "P1", "personal_data": true, "aware_at": "2999-01-01T00:00:00Z"}
PATCH /v1/incidents/{incident} responder 422 indicators.cidrs[0] - {"indicators": {"cidrs": ["not-an-ip"]}}
PATCH /v1/incidents/{incident} responder 422 indicators.user_agents[0] - {"indicators": {"user_agents": ["ab"]}}
PATCH /v1/incidents/{incident} responder 422 indicators.asn - {"indicators": {"asn": [1]}}
PATCH /v1/incidents/{incident} responder 422 data_subjects_approx - {"data_subjects_approx": -1}
PATCH /v1/incidents/{incident} responder 422 records_approx - {"records_approx": "many"}
PATCH /v1/incidents/{incident} responder 422 data_categories[0] - {"data_categories": [""]}
PATCH /v1/incidents/{incident} responder 422 aware_at - {"aware_at": "2999-01-01T00:00:00Z"}
PATCH /v1/incidents/{incident} responder 422 aware_at - {"aware_at": "yesterday"}
PATCH /v1/incidents/{incident} responder 422 next_update_at - {"next_update_at": "later"}
PATCH /v1/incidents/{incident} responder 422 personal_data - {"personal_data": "yes"}
PATCH /v1/incidents/{incident} responder 422 impact - {"impact": 5}
POST /v1/incidents/{incident}/notifications responder 422 audience - {"channel": "email"}
POST /v1/incidents/{incident}/notifications responder 422 audience - {"audience": "press", "channel": "email"}
POST /v1/incidents/{incident}/notifications responder 422 channel - {"audience": "staff"}
POST /v1/incidents/{incident}/notifications responder 422 channel - {"audience": "staff", "channel": " "}
POST /v1/incidents/{incident}/notifications responder 422 kind - {"audience": "staff", "kind": "tweet", "channel": "x"}
POST /v1/incidents/{incident}/notifications responder 422 audience - {"audience": "authority", "kind": "preliminary_report", "channel": "email"}
POST /v1/incidents/{incident}/notifications responder 422 audience - {"audience": "staff", "kind": "hipaa_notice", "channel": "email"}
POST /v1/incidents/{incident}/notifications responder 422 notified_at - {"audience": "staff", "channel": "e", "notified_at": "2999-01-01T00:00:00Z"}
POST /v1/incidents/{incident}/notifications responder 422 notified_at - {"audience": "staff", "channel": "e", "notified_at": "soon"}
POST /v1/incidents/{incident}/notifications responder 422 breach_nature missing_facts {"audience": "authority", "channel": "dpa-portal"}
POST /v1/incidents/{incident}/notifications responder 422 customer_title missing_facts {"audience": "customers", "channel": "email"}
POST /v1/incidents/{incident}/notifications responder 422 extra - {"audience": "staff", "channel": "e", "extra": 1}
POST /v1/incidents/{incident}/notifications responder 400 body invalid_json {
POST /v1/incidents/{incident}/notifications responder 413 body body_too_large @big
POST /v1/incidents/999999/notifications responder 404 - not_found {"audience": "staff", "channel": "e"}
PUT /v1/incidents/{incident}/postmortem responder 422 lessons_learned - {"root_cause": "r", "attack_vectors": ["v"], "data_impact": "d", "follow_ups": []}
PUT /v1/incidents/{incident}/postmortem responder 422 root_cause - {"lessons_learned": "l", "root_cause": " ", "attack_vectors": ["v"], "data_impact": "d", "follow_ups": []}
PUT /v1/incidents/{incident}/postmortem responder 422 attack_vectors - {"lessons_learned": "l", "root_cause": "r", "attack_vectors": [], "data_impact": "d", "follow_ups": []}
PUT /v1/incidents/{incident}/postmortem responder 422 follow_ups[0].owner - {"lessons_learned": "l", "root_cause": "r", "attack_vectors": ["v"], "data_impact": "d", "follow_ups": [{"item": "i", "owner": ""}]}
PUT /v1/incidents/{incident}/postmortem responder 422 follow_ups[0].owner - {"lessons_learned": "l", "root_cause": "r", "attack_vectors": ["v"], "data_impact": "d", "follow_ups": [{"item": "i"}]}
PUT /v1/incidents/{incident}/postmortem responder 422 lessons_learned invalid_field {}
PUT /v1/incidents/{incident}/postmortem responder 422 follow_ups - {"lessons_learned": "l", "root_cause": "r", "attack_vectors": ["v"], "data_impact": "d", "follow_ups": {}}
POST /v1/intake/alertmanager admin 422 groupKey - {"status": "firing", "alerts": []}
POST /v1/intake/alertmanager admin 422 groupKey - {"groupKey": " ", "status": "firing", "alerts": []}
POST /v1/intake/alertmanager admin 422 status - {"groupKey": "g", "status": "burning", "alerts": []}
POST /v1/intake/alertmanager admin 422 alerts - {"groupKey": "g", "status": "firing", "alerts": {}}
PATCH /v1/settings admin 422 company_name - {"company_name": " "}
PATCH /v1/settings admin 422 company_name - {"company_name": 5}
PATCH /v1/settings admin 422 security_mailbox - {"security_mailbox": "not a mailbox"}
PATCH /v1/settings admin 422 dpo_contact - {"dpo_contact": "a\nb"}
PATCH /v1/settings admin 422 colour - {"colour": "red"}
POST /v1/actions/{live}/move responder 422 incident_id - {"reason": "r"}
POST /v1/actions/{live}/move responder 422 incident_id - {"incident_id": 0, "reason": "r"}
POST /v1/actions/{live}/move responder 422 reason - {"incident_id": {incident}}
POST /v1/actions/{live}/move responder 404 - not_found {"incident_id": 999999, "reason": "r"}
POST /v1/actions/999999/move responder 404 - not_found {"incident_id": {incident}, "reason": "r"}
POST /v1/actions/{live}/link responder 409 incident_id conflict {"incident_id": {incident}, "reason": "r"}
POST /v1/actions/{live}/link responder 422 reason - {"incident_id": {incident}, "reason": ""}
PATCH /v1/incidents/{incident} responder 422 customer_title - {"customer_title": "a\nb"}
PATCH /v1/incidents/{incident} responder 422 customer_title - {"customer_title": " "}
PUT /v1/incidents/{incident}/postmortem responder 413 body body_too_large @big
PUT /v1/incidents/999999/postmortem responder 404 - not_found {"lessons_learned": "l", "root_cause": "r", "attack_vectors": ["v"], "data_impact": "d", "follow_ups": []}
POST /v1/evidence/access-logs edge 415 content-type unsupported_media_type
POST /v1/evidence/access-logs edge 413 body body_too_large @big
POST /v1/evidence/access-logs?bogus=1 edge 400 bogus invalid_query {"start_time": "2026-01-01T00:00:00Z"}
POST /v1/evidence/access-logs?batch_id= edge 422 batch_id invalid_field {"start_time": "2026-01-01T00:00:00Z"}
GET /v1/deadlines?status=late responder 400 status invalid_query
GET /v1/deadlines?kind=soon responder 400 kind invalid_query
GET /v1/incidents/{incident}/documents/internal_alert responder 422 impact missing_facts
GET /v1/incidents/{incident}/documents/internal_alert?format=pdf responder 400 format invalid_query
GET /v1/incidents/abc/documents/internal_alert responder 400 id invalid_path
GET /v1/incidents/{incident}/export?format=doc responder 400 format invalid_query
GET /v1/incidents/{incident}/evidence?limit=0 responder 400 limit invalid_query
GET /v1/edge/policy?wait=61 edge 400 wait invalid_query
GET /v1/edge/policy?since=abc edge 400 since invalid_query
GET /v1/edge/policy?sinse=1 edge 400 sinse invalid_query
GET /v1/actions?status=bogus responder 400 status invalid_query
GET /v1/incidents?limit=0 responder 400 limit invalid_query
GET /v1/incidents?severity=P7 responder 400 severity invalid_query
GET /v1/audit?from=yesterday responder 400 from invalid_query
"#;

struct Case<'a> {
    method: Method,
    path: &'a str,
    who: &'a str,
    status: u16,
    field: Option<&'a str>,
    code: Option<&'a str>,
    body: &'a str,
}

fn cases() -> Vec<Case<'static>> {
    let dash = |s: &'static str| (s != "-").then_some(s);
    TABLE
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.splitn(7, ' ');
            let mut next = || parts.next().unwrap_or("");
            Case {
                method: next().parse().expect(line),
                path: next(),
                who: next(),
                status: next().parse().expect(line),
                field: dash(next()),
                code: dash(next()),
                body: next(),
            }
        })
        .collect()
}

#[tokio::test]
async fn bad_input_table() {
    let s = TestServer::start().await;
    let api = &s.api;
    let (_, responder) = api.new_token(&s.admin, "resp", "responder").await;
    let (_, edge) = api.new_token(&s.admin, "edge", "edge").await;
    let incident = api.new_incident(&responder, "fixture").await;
    let to_containment = json!({"phase": "containment"});
    let r = api
        .patch(
            &format!("/v1/incidents/{incident}"),
            &responder,
            to_containment,
        )
        .await;
    expect_status(&r, 200);
    let allow = json!({"kind": "allow", "target": {"cidr": "192.0.2.0/24"}, "reason": "office"});
    api.new_action(&responder, incident, allow).await;
    let block = json!({"kind": "block", "target": {"cidr": "198.51.100.0/24"}, "reason": "scan"});
    api.new_action(&responder, incident, block).await;
    let lifted = api.block_host(&responder, incident, "lifted.example").await["id"].clone();
    let lift = json!({"reason": "r"});
    expect_status(
        &api.post(&format!("/v1/actions/{lifted}/lift"), &responder, lift)
            .await,
        200,
    );
    let live = api.block_host(&responder, incident, "live.example").await["id"].clone();
    let big = format!("{{\"reason\": \"{}\"}}", "x".repeat(2 << 20));

    let cases = cases();
    assert!(cases.len() > 90);
    for c in cases {
        let before = s.counts().await;
        let fill = |t: &str| {
            t.replace("{incident}", &incident.to_string())
                .replace("{lifted}", &lifted.to_string())
                .replace("{live}", &live.to_string())
        };
        let path = fill(c.path);
        let body = fill(c.body);
        let token = match c.who {
            "admin" => &s.admin,
            "edge" => &edge,
            "responder" => &responder,
            other => panic!("unknown caller {other}"),
        };
        let req = match body.as_str() {
            "" => Req::token(token),
            "@big" => Req::token(token).raw(big.clone(), "application/json"),
            b => match b.strip_prefix("@text ") {
                Some(text) => Req::token(token).raw(text, "text/plain"),
                None => Req::token(token).raw(b, "application/json"),
            },
        };
        let resp = api.send(c.method.clone(), &path, req).await;
        let what = format!("{} {path} {}", c.method, c.body);
        let got = String::from_utf8_lossy(&resp.bytes);
        assert_eq!(resp.status, c.status, "{what}: {got}");
        expect_error(&resp, c.status, c.field, c.code);
        if c.field.is_none() {
            assert!(resp.json["error"]["field"].is_null(), "{what}: {got}");
        }
        assert_eq!(before, s.counts().await, "{what} wrote something");
    }
    assert_eq!(api.verify(&s.admin).await["ok"], true);
}
