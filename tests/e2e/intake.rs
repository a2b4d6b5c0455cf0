//! Alert intake with a real Prometheus Alertmanager (Debian's `prometheus-alertmanager`,
//! started here on free ports): alerts sent to its API reach the control plane through its
//! webhook; a firing group opens one incident with a proposed block in simulate mode, a
//! later notification of the group updates it (no second incident), `resolved` is recorded.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use edge_testkit::Proc;
use serde_json::{json, Value};

use crate::common::temp_dir;

const AM: &str = "/usr/bin/prometheus-alertmanager";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str, token: &str) -> Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Wait until `f` returns `Some` (polling every 200 ms, at most `secs`).
async fn until<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_opens_one_incident_per_group_updates_it_and_records_resolved() {
    assert!(
        std::path::Path::new(AM).exists(),
        "{AM} is missing: tests/install-test-tools.sh installs prometheus-alertmanager"
    );
    let dir = temp_dir("intake");
    let db = format!("sqlite://{}", dir.path().join("ec.db").display());
    let bin = edge_testkit::bin("control-plane").unwrap();
    let admin = edge_testkit::create_admin_token(&bin, &db, "e2e-admin").unwrap();
    let config = dir.path().join("intake.json");
    std::fs::write(
        &config,
        json!({"severity_map": {"page": "P2", "critical": "P0"},
            "rules": [{"name": "scrapers", "when": {"alertname": "Scraper"}, "block_cidr_label": "client_ip", "expires_in": "1h"}]})
        .to_string(),
    )
    .unwrap();
    let mut cmd = Command::new(&bin);
    cmd.args([
        "--database-url",
        &db,
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--intake-config",
    ])
    .arg(&config);
    let (_cp, cp) = tokio::task::block_in_place(|| {
        Proc::start("control-plane", cmd, "control-plane listening on ")
    });
    let http = reqwest::Client::new();
    let made: Value = http
        .post(format!("{cp}/v1/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"name": "alertmanager", "role": "intake"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let intake = made["token"].as_str().unwrap().to_string();

    // Alertmanager: one receiver, the control plane's webhook with the intake token; short
    // group timers so the test sees the first notification, an update and the resolution.
    let port = free_port();
    let am_yml = format!(
        "route:\n  receiver: ec\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: ec\n    webhook_configs:\n      - url: {cp}/v1/intake/alertmanager\n        send_resolved: true\n\
         \x20       http_config:\n          authorization:\n            type: Bearer\n            credentials: {intake}\n"
    );
    std::fs::write(dir.path().join("am.yml"), am_yml).unwrap();
    let mut cmd = Command::new(AM);
    cmd.arg(format!(
        "--config.file={}",
        dir.path().join("am.yml").display()
    ))
    .arg(format!(
        "--storage.path={}",
        dir.path().join("am-data").display()
    ))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
    .arg("--cluster.listen-address=");
    let (_am, _) = tokio::task::block_in_place(|| Proc::start("alertmanager", cmd, "Listening"));
    let am = format!("http://127.0.0.1:{port}");
    until(20, "alertmanager ready", || {
        let http = http.clone();
        let am = am.clone();
        async move {
            let r = http.get(format!("{am}/-/ready")).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    let post_alerts = |alerts: Value| {
        let http = http.clone();
        let am = am.clone();
        async move {
            let r = http
                .post(format!("{am}/api/v2/alerts"))
                .json(&alerts)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };
    let scraper = |ip: &str, severity: &str| {
        json!({"labels": {"alertname": "Scraper", "severity": severity, "client_ip": ip},
            "annotations": {"summary": "one client pulls every order"}})
    };

    // 1. Firing: one incident, titled from the alert, with the address as an indicator and
    //    a proposed block in simulate mode.
    post_alerts(json!([scraper("203.0.113.7", "page")])).await;
    let incidents = until(30, "the incident", || {
        let (cp, admin) = (cp.clone(), admin.clone());
        async move {
            let v = get(&format!("{cp}/v1/incidents"), &admin).await;
            (v["total"] == 1).then_some(v)
        }
    })
    .await;
    let inc = &incidents["items"][0];
    let id = inc["id"].as_i64().unwrap();
    assert_eq!(inc["title"], "Scraper: one client pulls every order");
    assert_eq!(inc["severity"], "P2");
    assert_eq!(inc["indicators"]["cidrs"], json!(["203.0.113.7/32"]));
    let detail = get(&format!("{cp}/v1/incidents/{id}"), &admin).await;
    let actions = detail["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{detail}");
    assert_eq!(actions[0]["mode"], "simulate");
    assert_eq!(actions[0]["target"]["cidr"], "203.0.113.7/32");
    assert!(actions[0]["reason"]
        .as_str()
        .unwrap()
        .contains("a responder decides to enforce it"));
    let kinds = |d: &Value| -> Vec<String> {
        d["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(kinds(&detail).contains(&"alert_opened".to_string()));

    // 2. A second, more severe alert joins the group: the same incident, updated.
    post_alerts(json!([
        scraper("203.0.113.7", "page"),
        scraper("198.51.100.9", "critical")
    ]))
    .await;
    let detail = until(30, "the update", || {
        let (cp, admin) = (cp.clone(), admin.clone());
        async move {
            let d = get(&format!("{cp}/v1/incidents/{id}"), &admin).await;
            (d["severity"] == "P0").then_some(d)
        }
    })
    .await;
    assert!(
        kinds(&detail).contains(&"alert_updated".to_string()),
        "{detail}"
    );
    assert_eq!(
        detail["indicators"]["cidrs"],
        json!(["203.0.113.7/32", "198.51.100.9/32"])
    );
    assert_eq!(
        detail["actions"].as_array().unwrap().len(),
        2,
        "one proposal per address"
    );
    assert_eq!(get(&format!("{cp}/v1/incidents"), &admin).await["total"], 1);

    // 3. Resolved (endsAt in the past): recorded on the same incident, which stays open.
    let past = "2020-01-01T00:00:00Z";
    let mut resolved = json!([
        scraper("203.0.113.7", "page"),
        scraper("198.51.100.9", "critical")
    ]);
    for a in resolved.as_array_mut().unwrap() {
        a["startsAt"] = json!("2019-12-31T23:00:00Z");
        a["endsAt"] = json!(past);
    }
    post_alerts(resolved).await;
    let detail = until(30, "the resolution", || {
        let (cp, admin) = (cp.clone(), admin.clone());
        async move {
            let d = get(&format!("{cp}/v1/incidents/{id}"), &admin).await;
            kinds(&d)
                .contains(&"alert_resolved".to_string())
                .then_some(d)
        }
    })
    .await;
    assert_eq!(detail["status"], "open");
    let all = get(&format!("{cp}/v1/incidents"), &admin).await;
    assert_eq!(all["total"], 1, "no duplicate incident: {all}");
    // The proposals were not repeated by the re-sends.
    assert_eq!(detail["actions"].as_array().unwrap().len(), 2);
}
