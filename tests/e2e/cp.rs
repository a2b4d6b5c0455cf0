//! The real control plane for end-to-end tests: a process on a database in a temporary
//! directory, with an admin, a responder and an edge token, and the calls tests make.

use std::process::Command;
use std::time::Duration;

use edge_policy::config::SyncSettings;
use edge_testkit::{Proc, TempDir};
use serde_json::{json, Value};

use crate::common::*;

/// A control plane process on a database in a temporary directory.
pub(crate) struct ControlPlane {
    pub(crate) proc: Proc,
    pub(crate) url: String,
    pub(crate) db_url: String,
    pub(crate) admin: String,
    pub(crate) responder: String,
    pub(crate) edge_token: String,
    pub(crate) edge_token_id: i64,
    pub(crate) dir: TempDir,
}

pub(crate) fn start_cp_process(db_url: &str, listen: &str) -> (Proc, String) {
    let mut cmd = Command::new(edge_testkit::bin("control-plane").unwrap());
    // Fast expiry sweeps so an expired action leaves the policy promptly.
    cmd.args([
        "--database-url",
        db_url,
        "serve",
        "--listen",
        listen,
        "--expiry-interval-ms",
        "200",
    ]);
    tokio::task::block_in_place(|| Proc::start("control-plane", cmd, "control-plane listening on "))
}

impl ControlPlane {
    pub(crate) async fn start() -> ControlPlane {
        let dir = temp_dir("cp");
        let db_url = format!("sqlite://{}", dir.path().join("ec.db").display());
        ControlPlane::start_on(dir, db_url).await
    }

    /// A control plane on the database at `db_url` (new and empty).
    pub(crate) async fn start_on(dir: TempDir, db_url: String) -> ControlPlane {
        let admin = edge_testkit::create_admin_token(
            &edge_testkit::bin("control-plane").unwrap(),
            &db_url,
            "e2e-admin",
        )
        .unwrap();
        let (proc, url) = start_cp_process(&db_url, "127.0.0.1:0");
        let mut cp = ControlPlane {
            proc,
            url,
            db_url,
            admin,
            responder: String::new(),
            edge_token: String::new(),
            edge_token_id: 0,
            dir,
        };
        cp.responder = cp.token("e2e-responder", "responder").await["token"]
            .as_str()
            .unwrap()
            .to_string();
        let edge = cp.token("e2e-edge", "edge").await;
        cp.edge_token = edge["token"].as_str().unwrap().to_string();
        cp.edge_token_id = edge["id"].as_i64().unwrap();
        cp
    }

    pub(crate) async fn token(&self, name: &str, role: &str) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/tokens", self.url))
            .bearer_auth(&self.admin)
            .json(&json!({"name": name, "role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "creating token {name}");
        r.json().await.unwrap()
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.responder);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn incident(&self) -> i64 {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                "/v1/incidents",
                Some(json!({"title": "e2e", "summary": "end-to-end test", "severity": "P1"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_i64().unwrap()
    }

    /// Create an action; returns its id.
    pub(crate) async fn act(&self, incident: i64, body: Value) -> i64 {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/incidents/{incident}/actions"),
                Some(body),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_i64().unwrap()
    }

    pub(crate) async fn block(&self, incident: i64, ip: &str) -> i64 {
        self.act(
            incident,
            json!({"kind": "block", "target": {"cidr": ip}, "reason": "e2e block"}),
        )
        .await
    }

    pub(crate) async fn lift(&self, action: i64) {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/actions/{action}/lift"),
                Some(json!({"reason": "e2e lift"})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }

    pub(crate) async fn current_version(&self) -> u64 {
        let r = reqwest::Client::new()
            .get(format!("{}/v1/edge/policy", self.url))
            .bearer_auth(&self.edge_token)
            .send()
            .await
            .unwrap();
        r.headers()["x-policy-version"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Policy requests answered so far (`edge_cp_http_requests_total` on the sync route).
    pub(crate) async fn policy_requests(&self) -> u64 {
        prometheus_sum(&format!("{}/metrics", self.url), |l| {
            l.starts_with("edge_cp_http_requests_total") && l.contains("route=\"/v1/edge/policy\"")
        })
        .await
    }

    /// The keys this control plane signs with (`key list --json`).
    pub(crate) fn trusted_keys(&self) -> Vec<String> {
        edge_testkit::trusted_keys(&edge_testkit::bin("control-plane").unwrap(), &self.db_url)
            .unwrap()
    }

    /// A plugin configuration for an edge of this control plane: trusts its keys.
    pub(crate) fn plugin_config(&self, token: &str) -> edge_policy::config::FilterConfig {
        let mut cfg = plugin_config("control-plane", token);
        cfg.control_plane.trusted_keys = self.trusted_keys();
        cfg
    }

    /// Another control-plane process on this one's database (a replica; on SQLite, a second
    /// process on the same file), with the same tokens.
    pub(crate) fn replica(&self) -> ControlPlane {
        let (proc, url) = start_cp_process(&self.db_url, "127.0.0.1:0");
        ControlPlane {
            proc,
            url,
            db_url: self.db_url.clone(),
            admin: self.admin.clone(),
            responder: self.responder.clone(),
            edge_token: self.edge_token.clone(),
            edge_token_id: self.edge_token_id,
            dir: temp_dir("cp-replica"),
        }
    }

    pub(crate) fn edge(&self, upstream: &str, edge_id: &str, token: &str, workers: u32) -> Edge {
        self.edge_via(&self.url, upstream, edge_id, token, workers)
    }

    /// An edge of this control plane that syncs through `cp_url` (one of its replicas).
    pub(crate) fn edge_via(
        &self,
        cp_url: &str,
        upstream: &str,
        edge_id: &str,
        token: &str,
        workers: u32,
    ) -> Edge {
        let mut cfg = self.plugin_config(token);
        cfg.edge_id = edge_id.into();
        cfg.sync = SyncSettings {
            long_poll_wait_s: 20,
            retry_initial_ms: 100,
            retry_max_ms: 1000,
            report_interval_s: 1,
            ..SyncSettings::default()
        };
        Edge::start(
            &cfg,
            &[("control-plane", cp_url.to_string())],
            upstream,
            workers,
        )
    }
}

pub(crate) async fn status_as(edge: &Edge, ip: &str) -> u16 {
    get_as(edge, ip, "/probe").await.status
}

pub(crate) async fn wait_status(edge: &Edge, ip: &str, want: u16, what: &str) {
    eventually(what, Duration::from_secs(15), || {
        let f = status_as(edge, ip);
        async move { f.await == want }
    })
    .await;
}
