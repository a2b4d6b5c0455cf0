//! Several control-plane replicas on one PostgreSQL database, and crash safety on both
//! engines: the real binary, a throwaway cluster, SIGKILL and `pg_ctl stop -m immediate`.
//!
//! The replica tests need PostgreSQL by their nature (SQLite is one process's file), so they
//! run in the suite's PostgreSQL pass (`EC_TEST_BACKEND=postgres`) and return at once, saying
//! so, in the SQLite pass. The SIGKILL test runs on both engines.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{
    backend, cli_token_create, expect_status, fresh_database, pg_cluster, signing_keys,
    unseal_with, Api, BinServer, Req,
};
use control_plane::store::sql::Backend;

/// True (and says why) when this pass is not the PostgreSQL one.
fn sqlite_pass(test: &str) -> bool {
    if backend() == Backend::Postgres {
        return false;
    }
    eprintln!(
        "{test}: several replicas need PostgreSQL; runs in the EC_TEST_BACKEND=postgres pass"
    );
    true
}

/// A database with an admin token.
fn bootstrapped(db: &str) -> String {
    let (ok, out) = cli_token_create(db, "admin", "root");
    assert!(ok, "token create failed: {out}");
    out.trim().to_string()
}

fn block(n: usize) -> Value {
    json!({"kind": "block", "target": {"cidr": format!("10.{}.{}.{}/32", n / 65536, (n / 256) % 256, n % 256)},
           "reason": "replica test"})
}

/// Every action of the database, as one replica lists them.
async fn all_actions(api: &Api, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let r = api
            .get(&format!("/v1/actions?limit=200&offset={offset}"), token)
            .await;
        let page = expect_status(&r, 200)["items"]
            .as_array()
            .expect("items")
            .clone();
        if page.is_empty() {
            return out;
        }
        offset += page.len();
        out.extend(page);
    }
}

/// The edge snapshot a replica serves now: (version, unsealed bytes).
async fn snapshot(api: &Api, token: &str) -> (u64, Vec<u8>) {
    let keys = signing_keys(api, token).await;
    let r = api.get("/v1/edge/policy", token).await;
    expect_status(&r, 200);
    let v = r.header("x-policy-version").unwrap().parse().unwrap();
    (v, unseal_with(&r.bytes, &keys).to_vec())
}

#[tokio::test]
async fn two_replicas_take_400_concurrent_writes_in_one_order() {
    if sqlite_pass("two_replicas_take_400_concurrent_writes_in_one_order") {
        return;
    }
    let db = pg_cluster().create_database().unwrap();
    let admin = bootstrapped(&db);
    let (a, b) = (BinServer::start(&db), BinServer::start(&db));
    let inc = a.api.new_incident(&admin, "replicas").await;
    let start_version = snapshot(&a.api, &admin).await.0;

    let mut writers = Vec::new();
    for (replica, api) in [(0usize, a.api.clone()), (1, b.api.clone())] {
        for i in 0..200usize {
            let (api, admin) = (api.clone(), admin.clone());
            writers.push(tokio::spawn(async move {
                let r = api
                    .post(
                        &format!("/v1/incidents/{inc}/actions"),
                        &admin,
                        block(replica * 1000 + i),
                    )
                    .await;
                expect_status(&r, 201)["created_version"].as_u64().unwrap()
            }));
        }
    }
    let mut versions = Vec::new();
    for w in writers {
        versions.push(w.await.unwrap());
    }
    versions.sort_unstable();
    let expected: Vec<u64> = (start_version + 1..=start_version + 400).collect();
    assert_eq!(versions, expected, "400 distinct, consecutive versions");

    for api in [&a.api, &b.api] {
        assert_eq!(all_actions(api, &admin).await.len(), 400);
        let v = api.verify(&admin).await;
        assert_eq!(v["ok"], true, "{v}");
    }
    let (sa, sb) = (
        snapshot(&a.api, &admin).await,
        snapshot(&b.api, &admin).await,
    );
    assert_eq!(sa.0, start_version + 400);
    assert_eq!(sa, sb, "both replicas serve the same snapshot");
}

#[tokio::test]
async fn a_long_poll_on_one_replica_wakes_on_a_commit_made_on_the_other() {
    if sqlite_pass("a_long_poll_on_one_replica_wakes_on_a_commit_made_on_the_other") {
        return;
    }
    let db = pg_cluster().create_database().unwrap();
    let admin = bootstrapped(&db);
    let (a, b) = (BinServer::start(&db), BinServer::start(&db));
    let inc = a.api.new_incident(&admin, "wake").await;
    // Version 0 is answered at once (`since=0` asks for a snapshot): start from 1.
    expect_status(
        &a.api
            .post(&format!("/v1/incidents/{inc}/actions"), &admin, block(6))
            .await,
        201,
    );
    let (v, _) = snapshot(&b.api, &admin).await;
    assert_eq!(v, 1);
    let poll = {
        let (api, admin) = (b.api.clone(), admin.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let r = api
                .get(&format!("/v1/edge/policy?since={v}&wait=30"), &admin)
                .await;
            (
                r.status,
                r.header("x-policy-version").map(str::to_string),
                t.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    expect_status(
        &a.api
            .post(&format!("/v1/incidents/{inc}/actions"), &admin, block(7))
            .await,
        201,
    );
    let (status, version, took) = poll.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(version, Some((v + 1).to_string()));
    // Woken by the commit, not by the poll's 30 s timeout.
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // An edge that got a version from A and asks B for anything newer at once is held like
    // any up-to-date edge (B reads the version rather than take it for one it never had).
    let newer = a
        .api
        .post(&format!("/v1/incidents/{inc}/actions"), &admin, block(8))
        .await;
    let newer = expect_status(&newer, 201)["created_version"]
        .as_u64()
        .unwrap();
    let r = b
        .api
        .get(&format!("/v1/edge/policy?since={newer}&wait=1"), &admin)
        .await;
    assert_eq!(r.status, 304, "an edge ahead of B got an answer at once");
}

async fn revoke(api: &Api, admin: &str, token_id: i64) {
    let r = api
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/tokens/{token_id}"),
            Req::token(admin),
        )
        .await;
    expect_status(&r, 200);
}

#[tokio::test]
async fn a_token_revoked_on_one_replica_is_refused_by_the_other_on_its_next_request() {
    if sqlite_pass("a_token_revoked_on_one_replica_is_refused_by_the_other") {
        return;
    }
    let db = pg_cluster().create_database().unwrap();
    let admin = bootstrapped(&db);
    let (a, b) = (BinServer::start(&db), BinServer::start(&db));
    let (id, viewer) = a.api.new_token(&admin, "v", "viewer").await;
    // B has accepted the token (a cache would hold it now).
    for _ in 0..3 {
        expect_status(&b.api.get("/v1/incidents", &viewer).await, 200);
    }
    revoke(&a.api, &admin, id).await;
    let r = b.api.get("/v1/incidents", &viewer).await;
    assert_eq!(r.status, 401, "B still accepts a token revoked on A");

    // Edge tokens stay cached with replicas (the long-poll traffic): a revocation reaches
    // B's cache by notification, milliseconds after the commit.
    let (id, edge) = a.api.new_token(&admin, "e", "edge").await;
    for _ in 0..3 {
        expect_status(&b.api.get("/v1/edge/policy", &edge).await, 200);
    }
    revoke(&a.api, &admin, id).await;
    let revoked = Instant::now();
    while b.api.get("/v1/edge/policy", &edge).await.status != 401 {
        assert!(
            revoked.elapsed() < Duration::from_secs(2),
            "B still accepts an edge token revoked on A"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "edge token refused on B {:?} after the revocation on A",
        revoked.elapsed()
    );
}

/// Writers on every replica while `crash` happens; returns the ids that got a 201 and how
/// many writes failed (each failure must be a 503, never a 500 or a lost 201).
async fn write_through(apis: Vec<Api>, admin: &str, inc: i64, until: Instant) -> (Vec<i64>, u64) {
    let mut tasks = Vec::new();
    for (k, api) in apis.into_iter().enumerate() {
        for w in 0..2usize {
            let (api, admin) = (api.clone(), admin.to_string());
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut failed) = (Vec::new(), 0u64);
                let mut n = 0;
                while Instant::now() < until {
                    n += 1;
                    let body = block(100_000 * (k + 1) + 10_000 * w + n);
                    let r = api
                        .try_post(&format!("/v1/incidents/{inc}/actions"), &admin, body)
                        .await;
                    match r {
                        Some(r) if r.status == 201 => ok.push(r.json["id"].as_i64().unwrap()),
                        Some(r) => {
                            assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.bytes));
                            failed += 1;
                        }
                        None => failed += 1, // the replica is gone
                    }
                }
                (ok, failed)
            }));
        }
    }
    let (mut ok, mut failed) = (Vec::new(), 0);
    for t in tasks {
        let (o, f) = t.await.unwrap();
        ok.extend(o);
        failed += f;
    }
    (ok, failed)
}

/// Every acknowledged id exists, versions are never reused and the chain verifies.
async fn assert_nothing_lost(api: &Api, admin: &str, acknowledged: &[i64]) {
    let actions = all_actions(api, admin).await;
    let ids: BTreeSet<i64> = actions.iter().map(|a| a["id"].as_i64().unwrap()).collect();
    let lost: Vec<_> = acknowledged.iter().filter(|i| !ids.contains(i)).collect();
    assert!(lost.is_empty(), "acknowledged actions lost: {lost:?}");
    let versions: BTreeSet<u64> = actions
        .iter()
        .map(|a| a["created_version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions.len(), actions.len(), "a version was reused");
    let v = api.verify(admin).await;
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
async fn acknowledged_writes_survive_a_replica_killed_mid_stream() {
    // SQLite: the single process is killed and restarted; PostgreSQL: one of two replicas
    // is killed and the other carries on.
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path());
    let admin = bootstrapped(&db);
    let a = BinServer::start(&db);
    let survivor = (backend() == Backend::Postgres).then(|| BinServer::start(&db));
    let inc = a.api.new_incident(&admin, "crash").await;
    let mut apis = vec![a.api.clone()];
    apis.extend(survivor.iter().map(|s| s.api.clone()));
    let writes = tokio::spawn({
        let admin = admin.clone();
        async move { write_through(apis, &admin, inc, Instant::now() + Duration::from_secs(3)).await }
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    a.kill();
    let (acknowledged, _) = writes.await.unwrap();
    assert!(acknowledged.len() > 10, "too few writes to mean anything");
    let after = match survivor {
        Some(s) => s,
        None => BinServer::start(&db),
    };
    assert_nothing_lost(&after.api, &admin, &acknowledged).await;
    // A restarted replica serves what the survivor serves.
    let restarted = BinServer::start(&db);
    assert_eq!(
        snapshot(&restarted.api, &admin).await,
        snapshot(&after.api, &admin).await
    );
}

#[tokio::test]
async fn acknowledged_writes_survive_postgres_crashing_and_replicas_recover() {
    if sqlite_pass("acknowledged_writes_survive_postgres_crashing_and_replicas_recover") {
        return;
    }
    // A cluster of its own: this test stops the server.
    let cluster = edge_testkit::postgres::PgCluster::start().unwrap();
    let db = cluster.create_database().unwrap();
    let admin = bootstrapped(&db);
    let (a, b) = (BinServer::start(&db), BinServer::start(&db));
    let inc = a.api.new_incident(&admin, "db crash").await;
    let until = Instant::now() + Duration::from_secs(9);
    let writes = tokio::spawn({
        let (apis, admin) = (vec![a.api.clone(), b.api.clone()], admin.clone());
        async move { write_through(apis, &admin, inc, until).await }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.stop_immediate().unwrap();
    // Longer than the pool's 3 s acquire timeout: a write waiting for a connection through
    // the whole outage is refused (503), not merely delayed.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    cluster.restart().unwrap();
    let (acknowledged, failed) = writes.await.unwrap();
    assert!(failed > 0, "no write happened while the database was down");
    assert_recovered(&[&a, &b]).await;
    assert_nothing_lost(&b.api, &admin, &acknowledged).await;
    // Edges converge on the latest version through either replica.
    let latest = all_actions(&a.api, &admin)
        .await
        .iter()
        .map(|a| a["created_version"].as_u64().unwrap())
        .max()
        .unwrap();
    for s in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while snapshot(&s.api, &admin).await.0 < latest {
            assert!(Instant::now() < deadline, "a replica serves an old version");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // A second outage, with an edge up to date on B: its long-polls are answered from what
    // B holds (the cached answer, the token and keys last read), health says the database
    // is gone, writes are refused with 503.
    let (_, edge_token) = a.api.new_token(&admin, "edge-1", "edge").await;
    let (v, _) = snapshot(&b.api, &admin).await;
    // B has checked the edge's token once (human tokens are never cached with replicas).
    expect_status(&b.api.get("/v1/edge/policy", &edge_token).await, 200);
    let edge = |since: u64| {
        let (api, token) = (b.api.clone(), edge_token.clone());
        async move {
            api.get(&format!("/v1/edge/policy?since={since}&wait=1"), &token)
                .await
        }
    };
    cluster.stop_immediate().unwrap();
    assert_eq!(edge(v).await.status, 304, "an up-to-date edge");
    let fresh = edge(0).await;
    assert_eq!(fresh.status, 200, "a snapshot from memory");
    assert_eq!(
        fresh.header("x-policy-version"),
        Some(v.to_string().as_str())
    );
    for s in [&a, &b] {
        let health = s
            .api
            .send(reqwest::Method::GET, "/healthz", Req::default())
            .await;
        assert_eq!(health.status, 503);
    }
    let refused = a
        .api
        .post(
            &format!("/v1/incidents/{inc}/actions"),
            &admin,
            block(999_999),
        )
        .await;
    assert_eq!(refused.status, 503);
    assert!(refused.header("retry-after").is_some());
    cluster.restart().unwrap();
    assert_recovered(&[&a, &b]).await;
}

/// Every replica answers `/healthz` with 200 again, by itself.
async fn assert_recovered(replicas: &[&BinServer]) {
    for s in replicas {
        let deadline = Instant::now() + Duration::from_secs(30);
        while s
            .api
            .send(reqwest::Method::GET, "/healthz", Req::default())
            .await
            .status
            != 200
        {
            assert!(Instant::now() < deadline, "a replica did not recover");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
