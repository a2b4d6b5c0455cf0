//! Issue #11 acceptance, signed policy: a running edge refuses every answer whose seal does
//! not hold and goes on enforcing its last good policy; a key rotation with overlap keeps
//! every edge enforcing throughout.

use std::process::Command;
use std::time::Duration;

use edge_e2e::policy_server::{Behaviour, Tamper};
use edge_e2e::upstream::Upstream;

use crate::common::*;
use crate::cp::*;
use crate::filter::rig;

/// Wait for `n` log lines containing `needle`.
async fn logged(edge: &Edge, needle: &str, n: usize) {
    let what = format!("the edge logged {needle:?}");
    eventually(&what, Duration::from_secs(15), || {
        let got = edge.proc.count_lines(needle);
        async move { got >= n }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unsigned_wrong_key_altered_truncated_and_replayed_answers_are_refused() {
    let rig = rig(vec![block_ip(80, "203.0.113.80")], |_| {}, 2).await;
    let e = &rig.edge;
    // Each tampered answer would lift rule 80 and block a new address if it were adopted.
    let cases = [
        (Tamper::Unsigned, "answer is not signed"),
        (
            Tamper::WrongKey,
            "signed only by keys this edge does not trust",
        ),
        (Tamper::Altered, "does not match its signed digest"),
        (Tamper::Forged, "does not verify: the answer was forged"),
        (Tamper::Truncated(1), "answer is truncated"),
        (Tamper::Truncated(100_000), "not a sealed policy"),
    ];
    for (i, (tamper, reason)) in cases.iter().enumerate() {
        rig.ps.set_behaviour(Behaviour::Tamper(*tamper));
        let ip = format!("203.0.113.{}", 90 + i);
        rig.ps.publish(vec![block_ip(90 + i as u64, &ip)]);
        logged(e, reason, 1).await;
        expect_blocked(&get_as(e, "203.0.113.80", "/kept").await, 80);
        expect_upstream(&get_as(e, &ip, "/not-adopted").await);
    }
    let refused = e.stat("sync_rejected").await;
    assert!(refused >= cases.len() as u64, "{refused} answers refused");
    // One line per streak and reason, not one per retry.
    assert_eq!(e.proc.count_lines("answer is truncated"), 1);
    // Nothing refused was shared: a worker that starts (new connections reach both workers)
    // enforces the same last good policy.
    for n in 0..6 {
        expect_blocked(&get_as(e, "203.0.113.80", &format!("/w{n}")).await, 80);
    }

    // Good answers again: the newest policy is adopted, and the edge says so.
    rig.ps.set_behaviour(Behaviour::Normal);
    let last = format!("203.0.113.{}", 90 + cases.len() - 1);
    eventually("the newest policy", Duration::from_secs(15), || {
        let f = get_as(e, &last, "/new");
        async move { f.await.status == 403 }
    })
    .await;
    // Both workers (one adopts it from the other through shared data).
    eventually(
        "rule 80 lifted on every worker",
        Duration::from_secs(15),
        || async {
            for _ in 0..6 {
                if get_as(e, "203.0.113.80", "/lifted").await.status != 200 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    logged(e, "policy answers verify again", 1).await;

    // A properly signed but older snapshot (version 1, which blocked 203.0.113.80).
    rig.ps.set_behaviour(Behaviour::Tamper(Tamper::Replayed));
    rig.ps.publish(vec![block_ip(99, "203.0.113.99")]);
    logged(e, "replayed", 1).await;
    expect_upstream(&get_as(e, "203.0.113.80", "/not-replayed").await);
    expect_blocked(
        &get_as(e, &last, "/still").await,
        90 + cases.len() as u64 - 1,
    );
}

fn rotate(cp: &ControlPlane, overlap: &str) {
    let out = Command::new(edge_testkit::bin("control-plane").unwrap())
        .args([
            "--database-url",
            &cp.db_url,
            "key",
            "rotate",
            "--overlap",
            overlap,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_with_overlap_keeps_every_edge_enforcing() {
    let cp = ControlPlane::start().await;
    let (_up, up_srv) = Upstream::start().await;
    let old_keys = cp.trusted_keys();
    assert_eq!(old_keys.len(), 1);
    let edge = |id: &str, keys: &[String]| {
        let mut cfg = cp.plugin_config(&cp.edge_token);
        cfg.edge_id = id.into();
        cfg.sync.long_poll_wait_s = 20;
        cfg.control_plane.trusted_keys = keys.to_vec();
        Edge::start(&cfg, &[("control-plane", cp.url.clone())], &up_srv.url(), 1)
    };
    let inc = cp.incident().await;
    cp.block(inc, "203.0.113.1").await;
    let a = edge("edge-old-key", &old_keys);
    let never_updated = edge("edge-never-updated", &old_keys);
    for e in [&a, &never_updated] {
        wait_status(e, "203.0.113.1", 403, "the first block").await;
    }

    // Rotate with a short overlap: both keys sign until it ends.
    rotate(&cp, "12s");
    let keys = cp.trusted_keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let new_key: Vec<String> = keys
        .iter()
        .filter(|k| !old_keys.contains(k))
        .cloned()
        .collect();
    assert_eq!(new_key.len(), 1);
    // Operators move edges to the new key during the overlap: one trusting both (restarted
    // with the new list), one trusting only the new key.
    let both = edge("edge-both-keys", &keys);
    let b = edge("edge-new-key", &new_key);
    drop(a);
    for e in [&both, &b, &never_updated] {
        wait_status(e, "203.0.113.1", 403, "enforcing during the overlap").await;
    }
    cp.block(inc, "203.0.113.2").await;
    for e in [&both, &b, &never_updated] {
        wait_status(e, "203.0.113.2", 403, "a change during the overlap").await;
    }

    // After the overlap the old key no longer signs.
    tokio::time::sleep(Duration::from_secs(13)).await;
    let listed = Command::new(edge_testkit::bin("control-plane").unwrap())
        .args(["--database-url", &cp.db_url, "key", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert_eq!(listed.matches(" retired").count(), 1, "{listed}");
    cp.block(inc, "203.0.113.3").await;
    for e in [&both, &b] {
        wait_status(e, "203.0.113.3", 403, "a change after the overlap").await;
        assert_eq!(status_as(e, "203.0.113.1").await, 403);
    }
    // The edge nobody updated refuses the new answers and keeps its last good policy.
    logged(&never_updated, "does not trust", 1).await;
    assert_eq!(status_as(&never_updated, "203.0.113.3").await, 200);
    assert_eq!(status_as(&never_updated, "203.0.113.2").await, 403);
    assert_eq!(status_as(&never_updated, "203.0.113.1").await, 403);

    // The rotation is in the audit log.
    let (s, v) = cp
        .call(reqwest::Method::GET, "/v1/audit?limit=100", None)
        .await;
    assert_eq!(s, 200, "{v}");
    let verbs: Vec<&str> = v["events"]
        .as_array()
        .or(v.as_array())
        .map(|a| a.iter().filter_map(|e| e["verb"].as_str()).collect())
        .unwrap_or_default();
    assert!(verbs.contains(&"signing_key.create"), "{verbs:?}");
    assert!(verbs.contains(&"signing_key.rotate"), "{verbs:?}");
}
