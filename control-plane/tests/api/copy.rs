//! `control-plane copy`: a SQLite database with a full incident record, copied into a new
//! PostgreSQL database, gives the same exports and a verifying chain there; a non-empty
//! target is refused. Runs in every pass: it needs both engines whichever the suite is on.

use std::process::Command;

use control_plane::store::sql::Backend;
use control_plane::store::ActionStore;

use crate::common::{binary, pg_cluster, TestServer};
use crate::deadlines::{server_on, settings};
use crate::export::full_record;

fn copy(from: &str, to: &str) -> (bool, String) {
    let out = Command::new(binary())
        .args(["copy", "--from", from, "--to", to])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn a_sqlite_record_copied_to_postgres_exports_the_same_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("cp.db").display());
    let s = server_on(sqlite.clone()).await;
    assert_eq!(s.store.backend(), Backend::Sqlite);
    let (id, viewer) = full_record(&s).await;
    let other_open = s.api.new_incident(&s.admin, "still open").await;

    let pg = pg_cluster().create_database().unwrap();
    let (ok, out) = copy(&sqlite, &pg);
    assert!(ok, "copy failed: {out}");
    assert!(out.contains("audit chain verified"), "{out}");

    let t = TestServer::attach(pg.clone(), settings(), s.clock.clone(), &s.admin).await;
    assert_eq!(t.store.backend(), Backend::Postgres);
    assert_eq!(s.counts().await, t.counts().await, "every row copied");
    for path in [
        format!("/v1/incidents/{id}/export"),
        format!("/v1/incidents/{id}/export?format=markdown"),
        format!("/v1/incidents/{other_open}/export"),
        "/v1/audit/verify".to_string(),
        "/v1/audit?limit=1000".to_string(),
        "/v1/actions?limit=100".to_string(),
        "/v1/deadlines".to_string(),
    ] {
        let (a, b) = (
            s.api.get(&path, &viewer).await,
            t.api.get(&path, &viewer).await,
        );
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(
            String::from_utf8_lossy(&a.bytes),
            String::from_utf8_lossy(&b.bytes),
            "{path} differs after the copy"
        );
    }
    let v = t.api.verify(&s.admin).await;
    assert_eq!(v["ok"], true, "{v}");
    // New rows continue after the copied ones, with the next version.
    let next = t.api.new_incident(&s.admin, "after the move").await;
    assert_eq!(next, other_open + 1);
    let a = t.api.block_host(&s.admin, next, "moved.example").await;
    assert_eq!(
        a["created_version"].as_u64().unwrap(),
        t.store.policy_version().await.unwrap()
    );

    // The target is not empty now: a second copy is refused and changes nothing.
    let before = t.counts().await;
    let (ok, out) = copy(&sqlite, &pg);
    assert!(!ok, "a copy into a non-empty database must fail");
    assert!(out.contains("not empty"), "{out}");
    assert_eq!(before, t.counts().await);
}
