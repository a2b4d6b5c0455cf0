//! A stand-in for the control plane's edge sync endpoints, for testing the filter alone:
//! serves the policy it is given (snapshots, or deltas from versions it served before),
//! long-polls, records hit reports, and can be told to misbehave.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use edge_policy::report::EdgeReport;
use edge_policy::wire::{self, Delta, Snapshot};
use edge_policy::{Rule, Version};
use tokio::sync::watch;

use crate::serve::Server;

/// How the server answers sync calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Serve the policy.
    Normal,
    /// 200 with bytes that are not a policy.
    Garbage,
    /// Answer with this status and no policy.
    Status(u16),
}

struct Inner {
    history: BTreeMap<Version, Snapshot>,
    behaviour: Behaviour,
    deltas: bool,
    sync_calls: u64,
    reports: Vec<EdgeReport>,
}

#[derive(Clone)]
pub struct PolicyServer {
    inner: Arc<Mutex<Inner>>,
    token: String,
    version_tx: Arc<watch::Sender<Version>>,
}

#[derive(serde::Deserialize)]
struct PollQuery {
    since: Option<Version>,
    wait: Option<u64>,
}

impl PolicyServer {
    pub async fn start(token: &str) -> (PolicyServer, Server) {
        let (tx, _) = watch::channel(0);
        let ps = PolicyServer {
            inner: Arc::new(Mutex::new(Inner {
                history: BTreeMap::new(),
                behaviour: Behaviour::Normal,
                deltas: true,
                sync_calls: 0,
                reports: Vec::new(),
            })),
            token: token.to_string(),
            version_tx: Arc::new(tx),
        };
        (ps.clone(), Server::start(ps.router()).await)
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/edge/policy", get(poll))
            .route("/v1/edge/reports", post(report))
            .with_state(self.clone())
    }

    /// Publish the next policy version with these rules.
    pub fn publish(&self, rules: Vec<Rule>) -> Version {
        let mut g = self.inner.lock().unwrap();
        let version = g.history.keys().next_back().copied().unwrap_or(0) + 1;
        let mut s = Snapshot { version, rules };
        s.canonicalize();
        g.history.insert(version, s);
        drop(g);
        self.version_tx.send_replace(version);
        version
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        self.inner.lock().unwrap().behaviour = b;
    }

    /// Whether deltas are served (otherwise always snapshots).
    pub fn set_deltas(&self, on: bool) {
        self.inner.lock().unwrap().deltas = on;
    }

    pub fn sync_calls(&self) -> u64 {
        self.inner.lock().unwrap().sync_calls
    }

    pub fn reports(&self) -> Vec<EdgeReport> {
        self.inner.lock().unwrap().reports.clone()
    }

    /// Total hits reported for a rule, over all reports.
    pub fn reported_hits(&self, rule: u64) -> u64 {
        self.reports()
            .iter()
            .flat_map(|r| r.hits.iter())
            .filter(|h| h.rule_id == rule)
            .map(|h| h.count)
            .sum()
    }

    fn answer(&self, since: Version) -> Option<Response> {
        let g = self.inner.lock().unwrap();
        match g.behaviour {
            Behaviour::Normal => {}
            Behaviour::Garbage => {
                return Some((StatusCode::OK, "this is not a policy").into_response())
            }
            Behaviour::Status(s) => {
                return Some(
                    StatusCode::from_u16(s)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                        .into_response(),
                )
            }
        }
        let (&version, current) = g.history.iter().next_back()?;
        if since == version {
            return None;
        }
        let (kind, body) = match g.history.get(&since) {
            Some(old) if g.deltas && since > 0 && since < version => {
                ("delta", wire::encode_delta(&diff(old, current)))
            }
            _ => ("snapshot", wire::encode_snapshot(current)),
        };
        Some(
            (
                [
                    (header::CONTENT_TYPE, wire::CONTENT_TYPE.to_string()),
                    (header::ETAG, format!("\"{version}\"")),
                    (
                        header::HeaderName::from_static("x-policy-kind"),
                        kind.to_string(),
                    ),
                ],
                body,
            )
                .into_response(),
        )
    }
}

/// The delta from `old` to `new`.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Delta {
    let old_by_id: BTreeMap<_, _> = old.rules.iter().map(|r| (r.id, r)).collect();
    let new_ids: std::collections::BTreeSet<_> = new.rules.iter().map(|r| r.id).collect();
    Delta {
        since: old.version,
        version: new.version,
        upserts: new
            .rules
            .iter()
            .filter(|r| old_by_id.get(&r.id) != Some(r))
            .cloned()
            .collect(),
        removed: old
            .rules
            .iter()
            .map(|r| r.id)
            .filter(|id| !new_ids.contains(id))
            .collect(),
    }
}

async fn poll(
    State(ps): State<PolicyServer>,
    Query(q): Query<PollQuery>,
    headers: HeaderMap,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth != Some(format!("Bearer {}", ps.token).as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    ps.inner.lock().unwrap().sync_calls += 1;
    let since = q.since.unwrap_or(0);
    let mut rx = ps.version_tx.subscribe();
    if let Some(r) = ps.answer(since) {
        return r;
    }
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(60));
    let _ = tokio::time::timeout(wait, rx.changed()).await;
    ps.answer(since)
        .unwrap_or_else(|| StatusCode::NOT_MODIFIED.into_response())
}

async fn report(State(ps): State<PolicyServer>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth != Some(format!("Bearer {}", ps.token).as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match serde_json::from_slice::<EdgeReport>(&body) {
        Ok(r) => {
            ps.inner.lock().unwrap().reports.push(r);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": e.to_string()}).to_string(),
        )
            .into_response(),
    }
}
