//! `edge-proxy --cluster NAME=URL_A,URL_B`: one cluster of two control-plane replicas on
//! the same SQLite database. Calls spread over both; when one is killed the edge keeps
//! syncing through the other. Envoy profile only: Kong has no clusters, and `edge-proxy
//! --profile kong` refuses a cluster of several endpoints (checked here too).

use std::process::Command;
use std::time::{Duration, Instant};

use edge_e2e::upstream::Upstream;
use edge_host::HostProfile;
use edge_policy::config::SyncSettings;

use crate::common::*;
use crate::cp::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_spreads_over_two_control_plane_replicas_and_fails_over_when_one_is_killed() {
    let mut a = ControlPlane::start().await;
    let b = a.replica();
    let (_up, up_srv) = Upstream::start().await;
    let mut cfg = a.plugin_config(&a.edge_token);
    cfg.edge_id = "edge-cluster".into();
    // A long-poll is woken only by a commit in its own process; a short wait bounds how
    // late the edge sees a change made through the other replica.
    cfg.sync = SyncSettings {
        long_poll_wait_s: 1,
        retry_initial_ms: 100,
        retry_max_ms: 500,
        report_interval_s: 1,
        ..SyncSettings::default()
    };
    let endpoints = format!("{},{}", a.url, b.url);
    let edge = Edge::start_as(
        HostProfile::Envoy,
        &cfg,
        &[("control-plane", endpoints)],
        &up_srv.url(),
        2,
    );

    // Both replicas answer the edge's calls.
    let (ra, rb) = (&a, &b);
    eventually(
        "policy calls reach both replicas",
        Duration::from_secs(15),
        move || async move { ra.policy_requests().await >= 2 && rb.policy_requests().await >= 2 },
    )
    .await;

    let inc = b.incident().await;
    b.block(inc, "203.0.113.50").await;
    wait_status(&edge, "203.0.113.50", 403, "the first block applies").await;

    let failed_before = edge.stat("sync_failed").await;
    a.proc.kill(); // SIGKILL
    let before = b.policy_requests().await;
    let started = Instant::now();
    b.block(inc, "203.0.113.51").await;
    let (e, rb) = (&edge, &b);
    eventually(
        "a block made after replica A died reaches the edge through B",
        Duration::from_secs(8),
        move || async move { status_as(e, "203.0.113.51").await == 403 },
    )
    .await;
    eprintln!(
        "failover: the block made through B applied {:?} after A was killed",
        started.elapsed()
    );
    assert_eq!(status_as(&edge, "203.0.113.50").await, 403);
    // A is ejected once the edge has tried it, and the calls keep going to B.
    eventually(
        "the edge ejects the dead replica",
        Duration::from_secs(10),
        || {
            let n = edge.proc.count_lines("endpoint ejected");
            async move { n >= 1 }
        },
    )
    .await;
    eventually(
        "the edge keeps syncing through B",
        Duration::from_secs(10),
        move || async move { rb.policy_requests().await >= before + 3 },
    )
    .await;
    let lines = edge.proc.output_text();
    let ejections: Vec<&str> = lines
        .lines()
        .filter(|l| l.contains("endpoint ejected"))
        .collect();
    eprintln!("{}", ejections.join("\n"));
    assert!(
        ejections.iter().all(|l| l.contains(&a.url)),
        "only A is ejected:\n{lines}"
    );
    // Only a call in flight on A when it died can fail: a call that finds A refusing
    // connections is retried on B.
    let failed = edge.stat("sync_failed").await - failed_before;
    assert!(failed <= 1, "{failed} syncs failed after A died:\n{lines}");
}

/// `edge-proxy` with `args` (and a valid upstream): its exit status and stderr.
fn edge_proxy_refuses(args: &[&str]) -> String {
    let out = Command::new(edge_testkit::bin("edge-proxy").unwrap())
        .args(["--upstream", "http://127.0.0.1:1", "--wasm", "none.wasm"])
        .args(args)
        .env_remove("EDGE_PROXY_CLUSTERS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} accepted:\n{stderr}");
    stderr
}

#[test]
fn edge_proxy_refuses_bad_clusters_and_several_endpoints_under_kong() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--cluster", "http://127.0.0.1:2,cp=http://127.0.0.1:3"],
            "an endpoint before any NAME=",
        ),
        (
            &["--cluster", "cp=http://127.0.0.1:2,https://127.0.0.1:3"],
            "not an http:// URL",
        ),
        (
            &["--cluster", "cp=http://127.0.0.1:2,http://127.0.0.1:2"],
            "listed twice",
        ),
        (
            &[
                "--cluster",
                "cp=http://127.0.0.1:2",
                "--cluster",
                "cp=http://127.0.0.1:3",
            ],
            "given twice",
        ),
        (
            &[
                "--profile",
                "kong",
                "--cluster",
                "cp=http://127.0.0.1:2,http://127.0.0.1:3",
            ],
            "kong profile has no clusters",
        ),
        (
            &[
                "--cluster",
                "cp=http://127.0.0.1:2",
                "--cluster-health-path",
                "other=/healthz",
            ],
            "no --cluster named `other`",
        ),
    ];
    for (args, needle) in cases {
        let stderr = edge_proxy_refuses(args);
        assert!(
            stderr.contains(needle) && stderr.contains("--cluster"),
            "{args:?}: `{needle}` not in:\n{stderr}"
        );
    }
}
