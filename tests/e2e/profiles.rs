//! The filter under the strictest host: `edge-proxy --profile kong` behaves like Kong's
//! ngx_wasm_module (an HTTP call outside the request callbacks, ticks and callout responses
//! traps; strict CAS; upstreams named `host:port`). With two workers both must configure,
//! enforce the same version, and exactly one of them may long-poll the control plane. And
//! an idle edge sends at most one long-poll per wait, version 0 included.

use std::time::{Duration, Instant};

use edge_e2e::policy_server::{Behaviour, PolicyServer};
use edge_e2e::upstream::Upstream;
use edge_host::HostProfile;

use crate::common::*;

const TOKEN: &str = "edge-token-for-profiles";

/// Consecutive requests on new connections (so on both workers) from `ip` that must all get
/// `want` before the edge counts as enforcing.
async fn all_workers_answer(edge: &Edge, ip: &str, want: u16, what: &str) {
    let streak = std::cell::Cell::new(0u32);
    eventually(what, Duration::from_secs(20), || {
        let fut = get_as(edge, ip, "/x");
        let streak = &streak;
        async move {
            let got = fut.await.status;
            streak.set(if got == want { streak.get() + 1 } else { 0 });
            streak.get() >= 8
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kong_two_workers_configure_enforce_one_version_and_exactly_one_long_polls() {
    let (_up, up_srv) = Upstream::start().await;
    let (ps, ps_srv) = PolicyServer::start(TOKEN).await;
    ps.publish(vec![block_ip(1, "198.51.100.1")]);
    // A long-poll (3 s) longer than the lease (2 s): the leader must renew while it waits.
    let mut cfg = plugin_config("control-plane", TOKEN);
    cfg.sync.long_poll_wait_s = 3;
    cfg.sync.shared_check_ms = 100;
    let edge = Edge::start_as(
        HostProfile::Kong,
        &cfg,
        &[("control-plane", ps_srv.url())],
        &up_srv.url(),
        2,
    );
    // Both workers configured (a trap in on_configure would have stopped edge-proxy).
    eventually("both workers configure", Duration::from_secs(10), || {
        let n = edge.proc.count_lines("edge-filter: configured edge");
        async move { n == 2 }
    })
    .await;
    all_workers_answer(&edge, "198.51.100.1", 403, "both workers enforce v1").await;

    let v2 = ps.publish(vec![
        block_ip(1, "198.51.100.1"),
        block_ip(2, "198.51.100.2"),
    ]);
    assert_eq!(v2, 2);
    all_workers_answer(&edge, "198.51.100.2", 403, "both workers enforce v2").await;

    // Several long-poll cycles and lease periods later: never two polls open at once, the
    // lease never moved after the first taking, and about one poll per wait.
    ps.max_concurrent_sync_calls(true);
    let calls_before = ps.sync_calls();
    let watch = Duration::from_secs(8);
    let started = Instant::now();
    tokio::time::sleep(watch).await;
    let calls = ps.sync_calls() - calls_before;
    let elapsed = started.elapsed().as_secs();
    assert_eq!(
        ps.max_concurrent_sync_calls(false),
        1,
        "exactly one worker long-polls"
    );
    assert!(
        calls <= elapsed / 3 + 2,
        "{calls} sync calls in {elapsed} s with a 3 s wait"
    );
    assert_eq!(
        edge.stat("sync_lease_moves").await,
        1,
        "the sync lease moved after it was first taken"
    );
    // Both workers still enforce the newest version.
    all_workers_answer(&edge, "198.51.100.2", 403, "both workers still enforce v2").await;
    let output = edge.proc.output_text();
    assert!(
        !output.contains("bad usage") && !output.contains("trapped"),
        "{output}"
    );
}

/// Sync calls an idle edge sends in `watch`, given the policy server's behaviour.
async fn idle_sync_calls(behaviour: Behaviour, publish: bool, watch: Duration) -> (u64, u64) {
    let (_up, up_srv) = Upstream::start().await;
    let (ps, ps_srv) = PolicyServer::start(TOKEN).await;
    if publish {
        ps.publish(vec![block_ip(1, "198.51.100.1")]);
    }
    ps.set_behaviour(behaviour);
    let mut cfg = plugin_config("control-plane", TOKEN);
    cfg.sync.long_poll_wait_s = 2;
    cfg.sync.report_interval_s = 0;
    let edge = Edge::start(&cfg, &[("control-plane", ps_srv.url())], &up_srv.url(), 2);
    // The first answer (the empty policy, version 0, or version 1) is enforced...
    eventually("the edge holds a policy", Duration::from_secs(10), || {
        let n = edge.proc.count_lines("enforcing policy version");
        async move { n >= 2 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ... then nothing changes for `watch`. Counted by the server: what the edge sends.
    let before = ps.sync_calls();
    tokio::time::sleep(watch).await;
    let sent = ps.sync_calls() - before;
    drop(edge);
    (sent, watch.as_secs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_edge_long_polls_at_most_once_per_wait_at_version_0_too() {
    // Version 0 held by a server that holds long-polls: one per wait (2 s).
    let (sent, secs) = idle_sync_calls(Behaviour::Normal, false, Duration::from_secs(6)).await;
    assert!(
        sent <= secs / 2 + 1,
        "{sent} long-polls in {secs} s at version 0"
    );
    // A server that answers "nothing new" at once (a proxy in between that does not hold
    // the poll): the edge still waits out each wait instead of re-polling in a loop.
    for publish in [false, true] {
        let (sent, secs) =
            idle_sync_calls(Behaviour::NoWait, publish, Duration::from_secs(6)).await;
        assert!(
            sent <= secs / 2 + 1,
            "{sent} polls in {secs} s against a server that answers at once (published: {publish})"
        );
    }
}
