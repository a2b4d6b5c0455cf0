//! A stand-in for the control plane's edge sync endpoints, for testing the filter alone:
//! serves the policy it is given (snapshots, or deltas from versions it served before),
//! long-polls, records hit reports, and can be told to misbehave. Answers are sealed with
//! `edge_testkit::test_signing_key` (edges trust `edge_testkit::test_trusted_key`), as the
//! control plane seals them with its own keys.

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
    /// Serve the policy but never hold a long-poll: "nothing new" comes back at once, as a
    /// badly configured proxy in between, or an old control plane at version 0, would.
    NoWait,
    /// Serve the policy as someone between the control plane and the edge might.
    Tamper(Tamper),
}

/// What an attacker (or a broken proxy) does to the policy answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// The bare message, without a seal.
    Unsigned,
    /// Sealed by a key the edge does not trust.
    WrongKey,
    /// Sealed properly, then one byte of the message changed (a rule's address, say).
    Altered,
    /// Sealed properly, then signed over again with the trusted key id but a forged
    /// signature (a copy of another answer's).
    Forged,
    /// Sealed properly, then cut short by this many bytes.
    Truncated(usize),
    /// A properly sealed snapshot of an older version (the first one published).
    Replayed,
}

struct Inner {
    history: BTreeMap<Version, Snapshot>,
    behaviour: Behaviour,
    deltas: bool,
    sync_calls: u64,
    /// Sync calls being answered now, and the most there ever were at once.
    in_flight: u64,
    max_in_flight: u64,
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
                in_flight: 0,
                max_in_flight: 0,
                reports: Vec::new(),
            })),
            token: token.to_string(),
            version_tx: Arc::new(tx),
        };
        (ps.clone(), Server::start(ps.router()).await)
    }

    /// Every policy version published so far (newest last).
    pub fn versions(&self) -> Vec<Version> {
        self.inner.lock().unwrap().history.keys().copied().collect()
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

    /// The most sync calls (long-polls) that were ever open at once; `reset` starts over.
    pub fn max_concurrent_sync_calls(&self, reset: bool) -> u64 {
        let mut g = self.inner.lock().unwrap();
        let max = g.max_in_flight;
        if reset {
            g.max_in_flight = g.in_flight;
        }
        max
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

    /// The answer for an edge holding `since` (None: nothing yet); None while it is current.
    /// Before anything is published the policy is version 0, empty.
    fn answer(&self, since: Option<Version>) -> Option<Response> {
        let g = self.inner.lock().unwrap();
        let mut tamper = None;
        match g.behaviour {
            Behaviour::Normal | Behaviour::NoWait => {}
            Behaviour::Tamper(t) => tamper = Some(t),
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
        let empty = Snapshot {
            version: 0,
            rules: vec![],
        };
        let (version, current) = g
            .history
            .iter()
            .next_back()
            .map_or((0, &empty), |(v, s)| (*v, s));
        if since == Some(version) {
            return None;
        }
        let (kind, message) = match since.and_then(|v| g.history.get(&v)) {
            _ if tamper == Some(Tamper::Replayed) => {
                let first = g.history.values().next().unwrap_or(&empty);
                ("snapshot", wire::encode_snapshot(first))
            }
            Some(old) if g.deltas && old.version < version => {
                ("delta", wire::encode_delta(&diff(old, current)))
            }
            _ => ("snapshot", wire::encode_snapshot(current)),
        };
        let body = match tamper {
            None | Some(Tamper::Replayed) => edge_testkit::sealed(&message),
            Some(Tamper::Unsigned) => message,
            Some(Tamper::WrongKey) => {
                let other = ed25519_dalek::SigningKey::from_bytes(&[0x77; 32]);
                edge_policy::seal::seal(&message, 0, &[&other]).unwrap_or_default()
            }
            Some(Tamper::Altered) => {
                let mut b = edge_testkit::sealed(&message);
                if let Some(last) = b.last_mut() {
                    *last ^= 0x01;
                }
                b
            }
            Some(Tamper::Forged) => {
                // The signature of another message, under the trusted key's id.
                let mut b = edge_testkit::sealed(&message);
                let other = edge_testkit::sealed(&wire::encode_snapshot(&empty));
                b[77..141].copy_from_slice(&other[77..141]);
                b
            }
            Some(Tamper::Truncated(n)) => {
                let mut b = edge_testkit::sealed(&message);
                b.truncate(b.len().saturating_sub(n));
                b
            }
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
    let no_wait = {
        let mut g = ps.inner.lock().unwrap();
        g.sync_calls += 1;
        g.in_flight += 1;
        g.max_in_flight = g.max_in_flight.max(g.in_flight);
        g.behaviour == Behaviour::NoWait
    };
    let _open = InFlight(&ps);
    let etag = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_matches('"').parse().ok());
    let since = edge_policy::sync::held_version(q.since, etag);
    let mut rx = ps.version_tx.subscribe();
    if let Some(r) = ps.answer(since) {
        return r;
    }
    let wait = Duration::from_secs(if no_wait {
        0
    } else {
        q.wait.unwrap_or(0).min(60)
    });
    let _ = tokio::time::timeout(wait, rx.changed()).await;
    ps.answer(since)
        .unwrap_or_else(|| StatusCode::NOT_MODIFIED.into_response())
}

/// Counts a sync call as open until it is answered (or the edge hangs up).
struct InFlight<'a>(&'a PolicyServer);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut g) = self.0.inner.lock() {
            g.in_flight = g.in_flight.saturating_sub(1);
        }
    }
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
