//! What keeps a thousand long-polling edges cheap: cached policy answers, coalesced
//! wake-ups and cached token checks, and that none of them serves anything stale.

use std::time::{Duration, Instant};

use control_plane::policy_feed::Answer;
use control_plane::store::ActionStore;
use control_plane::Settings;
use edge_policy::{wire, Message};
use reqwest::Method;
use serde_json::json;

use crate::common::{expect_error, expect_status, unseal, Api, Req, Resp, TestServer};

/// A counter or gauge from `/metrics` (0 when absent).
async fn metric(api: &Api, series: &str) -> f64 {
    let r = api.send(Method::GET, "/metrics", Req::default()).await;
    expect_status(&r, 200);
    let text = String::from_utf8_lossy(&r.bytes).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn policy(api: &Api, token: &str, query: &str) -> Resp {
    api.get(&format!("/v1/edge/policy{query}"), token).await
}

#[track_caller]
fn version_of(r: &Resp) -> u64 {
    expect_status(r, 200);
    let m = wire::decode(unseal(&r.bytes)).expect("policy decodes");
    assert_eq!(
        r.header("x-policy-version"),
        Some(m.version().to_string().as_str())
    );
    m.version()
}

const HIT: &str = "edge_cp_policy_cache_total{result=\"hit\"}";
const MISS: &str = "edge_cp_policy_cache_total{result=\"miss\"}";

#[tokio::test]
async fn cached_answers_equal_freshly_computed_ones_and_move_on_with_the_version() {
    let s = TestServer::start().await;
    let api = &s.api;
    let (_, edge) = api.new_token(&s.admin, "edge-cache", "edge").await;
    let inc = api.new_incident(&s.admin, "cache").await;
    for i in 0..3 {
        api.block_host(&s.admin, inc, &format!("a{i}.example"))
            .await;
    }
    let v0 = version_of(&policy(api, &edge, "").await);
    for i in 0..4 {
        api.block_host(&s.admin, inc, &format!("b{i}.example"))
            .await;
    }
    let id = api.block_host(&s.admin, inc, "lifted.example").await["id"]
        .as_i64()
        .unwrap();
    expect_status(
        &api.post(
            &format!("/v1/actions/{id}/lift"),
            &s.admin,
            json!({"reason": "r"}),
        )
        .await,
        200,
    );
    let v1 = s.store.policy_version().await.unwrap();
    assert_eq!(v1, v0 + 6);

    let (hits0, misses0) = (metric(api, HIT).await, metric(api, MISS).await);
    // The same delta three ways: plain poll, long-poll that need not wait, If-None-Match.
    let first = policy(api, &edge, &format!("?since={v0}")).await;
    let second = policy(api, &edge, &format!("?since={v0}&wait=5")).await;
    let third = api
        .send(
            Method::GET,
            "/v1/edge/policy",
            Req::token(&edge).header("if-none-match", format!("\"{v0}\"")),
        )
        .await;
    let fresh = Answer::encode(&s.store.policy(v0).await.unwrap());
    for r in [&first, &second, &third] {
        assert_eq!(version_of(r), v1);
        assert_eq!(r.header("x-policy-kind"), Some("delta"));
        assert_eq!(
            unseal(&r.bytes),
            fresh.body,
            "cached delta differs from a fresh one"
        );
    }
    let Message::Delta(d) = wire::decode(unseal(&first.bytes)).unwrap() else {
        panic!("expected a delta")
    };
    assert_eq!(
        (d.since, d.upserts.len(), d.removed),
        (v0, 4, vec![id as u64])
    );
    // Computed once, shared twice.
    assert_eq!(metric(api, MISS).await - misses0, 1.0);
    assert_eq!(metric(api, HIT).await - hits0, 2.0);
    // The snapshot likewise.
    let snap = policy(api, &edge, "?since=0").await;
    assert_eq!(
        unseal(&snap.bytes),
        Answer::encode(&s.store.policy(0).await.unwrap()).body
    );
    assert_eq!(
        unseal(&policy(api, &edge, "").await.bytes),
        unseal(&snap.bytes)
    );

    // A new version: nothing of the old one is served.
    api.block_host(&s.admin, inc, "later.example").await;
    let r = policy(api, &edge, &format!("?since={v0}")).await;
    assert_eq!(version_of(&r), v1 + 1);
    assert_eq!(
        unseal(&r.bytes),
        Answer::encode(&s.store.policy(v0).await.unwrap()).body
    );
    let snap2 = policy(api, &edge, "").await;
    assert_eq!(version_of(&snap2), v1 + 1);
    assert_ne!(unseal(&snap2.bytes), unseal(&snap.bytes));
    assert_eq!(s.state.policy.cached().0, v1 + 1);
    // A current edge gets 304 at once without a wait, and after it with one.
    expect_status(
        &policy(api, &edge, &format!("?since={}", v1 + 1)).await,
        304,
    );
}

#[tokio::test]
async fn a_burst_of_writes_wakes_a_waiting_poll_once_with_the_latest_version() {
    let interval = Duration::from_millis(1500);
    let s = TestServer::start_with(Settings {
        policy_wake_interval: interval,
        ..TestServer::settings()
    })
    .await;
    let api = s.api.clone();
    let (_, edge) = api.new_token(&s.admin, "edge-burst", "edge").await;
    let inc = api.new_incident(&s.admin, "burst").await;
    api.block_host(&s.admin, inc, "first.example").await;
    // A long-poll that need not wait starts the feed.
    let v1 = version_of(&policy(&api, &edge, "?since=0&wait=1").await);
    tokio::time::sleep(interval + Duration::from_millis(200)).await; // quiet

    // After a quiet interval, the first change wakes a waiting poll at once.
    let wakeups0 = metric(&api, "edge_cp_policy_wakeups_total").await;
    let (api2, edge2) = (api.clone(), edge.clone());
    let a = tokio::spawn(async move {
        let r = policy(&api2, &edge2, &format!("?since={v1}&wait=30")).await;
        (r, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    api.block_host(&s.admin, inc, "burst0.example").await;
    let committed = Instant::now();
    let (r, answered) = a.await.unwrap();
    let v2 = version_of(&r);
    assert_eq!(v2, v1 + 1);
    let lag = answered.saturating_duration_since(committed);
    assert!(
        lag < Duration::from_millis(100),
        "first change after a quiet interval answered {lag:?} after its commit"
    );

    // Within the interval: two edges wait at v2 while four more writes commit.
    let (hits0, misses0) = (metric(&api, HIT).await, metric(&api, MISS).await);
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let (api2, edge2) = (api.clone(), edge.clone());
            tokio::spawn(async move {
                let r = policy(&api2, &edge2, &format!("?since={v2}&wait=30")).await;
                (r, Instant::now())
            })
        })
        .collect();
    for i in 1..5 {
        api.block_host(&s.admin, inc, &format!("burst{i}.example"))
            .await;
    }
    let last_commit = Instant::now();
    let latest = s.store.policy_version().await.unwrap();
    assert_eq!(latest, v2 + 4);
    for w in waiters {
        let (r, answered) = w.await.unwrap();
        assert_eq!(
            version_of(&r),
            latest,
            "a burst is answered with its latest version, not the first one"
        );
        assert!(answered >= last_commit);
        let Message::Delta(d) = wire::decode(unseal(&r.bytes)).unwrap() else {
            panic!("expected a delta")
        };
        assert_eq!((d.since, d.upserts.len()), (v2, 4));
    }
    // Five commits, two wake-ups: the first at once, the other four together.
    assert_eq!(
        metric(&api, "edge_cp_policy_wakeups_total").await - wakeups0,
        2.0
    );
    // Both waiters shared one computation of the delta.
    assert_eq!(metric(&api, MISS).await - misses0, 1.0);
    assert_eq!(metric(&api, HIT).await - hits0, 1.0);
    // A plain poll is not held back by the interval: it reads the committed version.
    api.block_host(&s.admin, inc, "after.example").await;
    assert_eq!(
        version_of(&policy(&api, &edge, &format!("?since={latest}")).await),
        latest + 1
    );
}

#[tokio::test]
async fn a_revoked_token_gets_401_on_its_next_request_while_cached() {
    let s = TestServer::start().await;
    let api = s.api.clone();
    let (edge_id, edge) = api.new_token(&s.admin, "edge-revoke", "edge").await;
    let (resp_id, responder) = api.new_token(&s.admin, "resp-revoke", "responder").await;
    let inc = api.new_incident(&responder, "revoke").await;
    let hit = "edge_cp_token_cache_total{result=\"hit\"}";

    // Used twice: the second check is answered from the cache.
    expect_status(&policy(&api, &edge, "").await, 200);
    let hits = metric(&api, hit).await;
    expect_status(&policy(&api, &edge, "").await, 200);
    assert_eq!(
        metric(&api, hit).await - hits,
        1.0,
        "token check not cached"
    );

    // Other edges keep polling with the token while it is revoked.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer: Vec<_> = (0..4)
        .map(|_| {
            let (api2, edge2, stop2) = (api.clone(), edge.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = policy(&api2, &edge2, "").await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = api
        .send(
            Method::DELETE,
            &format!("/v1/tokens/{edge_id}"),
            Req::token(&s.admin),
        )
        .await;
    expect_status(&r, 200);
    // The very next request, and every one after it.
    for _ in 0..20 {
        let r = policy(&api, &edge, "").await;
        expect_error(&r, 401, None, Some("unauthenticated"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hammer {
        h.await.unwrap();
    }
    expect_error(
        &policy(&api, &edge, "").await,
        401,
        None,
        Some("unauthenticated"),
    );

    // A responder's write right after its revocation is refused, and nothing is written.
    api.block_host(&responder, inc, "before.example").await;
    let actions = s.counts().await.actions;
    expect_status(
        &api.send(
            Method::DELETE,
            &format!("/v1/tokens/{resp_id}"),
            Req::token(&s.admin),
        )
        .await,
        200,
    );
    let r = api
        .post(
            &format!("/v1/incidents/{inc}/actions"),
            &responder,
            json!({"kind": "block", "target": {"host": "after.example"}, "reason": "r"}),
        )
        .await;
    expect_error(&r, 401, None, Some("unauthenticated"));
    assert_eq!(s.counts().await.actions, actions);
    // The admin's own cached check is still good, and a new token works at once.
    let (_, edge2) = api.new_token(&s.admin, "edge-new", "edge").await;
    expect_status(&policy(&api, &edge2, "").await, 200);
}

#[tokio::test]
async fn zero_ttl_and_zero_interval_still_serve_correctly() {
    let s = TestServer::start_with(Settings {
        policy_wake_interval: Duration::ZERO,
        token_cache_ttl: Duration::ZERO,
        ..TestServer::settings()
    })
    .await;
    let api = s.api.clone();
    let (id, edge) = api.new_token(&s.admin, "edge-zero", "edge").await;
    let inc = api.new_incident(&s.admin, "zero").await;
    api.block_host(&s.admin, inc, "z0.example").await;
    let v = version_of(&policy(&api, &edge, "").await);
    let hits = metric(&api, "edge_cp_token_cache_total{result=\"hit\"}").await;
    assert_eq!(hits, 0.0, "ttl 0 caches no token");
    let (api2, edge2) = (api.clone(), edge.clone());
    let w =
        tokio::spawn(async move { policy(&api2, &edge2, &format!("?since={v}&wait=30")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.block_host(&s.admin, inc, "z1.example").await;
    assert_eq!(version_of(&w.await.unwrap()), v + 1);
    expect_status(
        &api.send(
            Method::DELETE,
            &format!("/v1/tokens/{id}"),
            Req::token(&s.admin),
        )
        .await,
        200,
    );
    expect_error(
        &policy(&api, &edge, "").await,
        401,
        None,
        Some("unauthenticated"),
    );
    // Bad input still names the field.
    expect_error(
        &policy(&api, &s.admin, "?since=-1&wait=1").await,
        400,
        Some("since"),
        Some("invalid_query"),
    );
}
