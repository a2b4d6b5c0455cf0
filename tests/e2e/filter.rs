//! Issue #2 acceptance: the filter against a stand-in policy server.

use std::time::Duration;

use edge_e2e::policy_server::{Behaviour, PolicyServer};
use edge_e2e::serve::Server;
use edge_e2e::upstream::Upstream;
use edge_policy::config::{FailMode, FilterConfig};
use edge_policy::reply::NOOP_SCRIPT;
use edge_policy::{IpNet, Isolation, KeyHash, Mode, Rule, RuleKind, Scope, Target};
use serde_json::{json, Value};

use crate::common::*;

const TOKEN: &str = "edge-token-for-tests";
/// Every rig's policy blocks this address, so tests can tell when a policy is enforced.
const SENTINEL_IP: &str = "198.51.100.254";
const SENTINEL_RULE: u64 = 999_999;

pub(crate) struct Rig {
    pub ps: PolicyServer,
    pub ps_srv: Server,
    pub up: Upstream,
    _up_srv: Server,
    pub edge: Edge,
}

/// A policy server publishing `rules` (and the sentinel), an upstream, and an edge whose
/// [`plugin_config`] `tweak` adjusts, enforcing that policy on `workers` workers.
pub(crate) async fn rig(
    rules: Vec<Rule>,
    tweak: impl FnOnce(&mut FilterConfig),
    workers: u32,
) -> Rig {
    let (up, up_srv) = Upstream::start().await;
    let (ps, ps_srv) = PolicyServer::start(TOKEN).await;
    let mut rules = rules;
    rules.push(block_ip(SENTINEL_RULE, SENTINEL_IP));
    ps.publish(rules);
    let mut cfg = plugin_config("control-plane", TOKEN);
    tweak(&mut cfg);
    let edge = Edge::start(
        &cfg,
        &[("control-plane", ps_srv.url())],
        &up_srv.url(),
        workers,
    );
    wait_enforced(&edge).await;
    Rig {
        ps,
        ps_srv,
        up,
        _up_srv: up_srv,
        edge,
    }
}

/// Wait until several consecutive requests (new connections, so every worker) see the policy.
async fn wait_enforced(edge: &Edge) {
    let streak = std::cell::Cell::new(0u32);
    eventually(
        "the edge enforces the policy on every worker",
        Duration::from_secs(20),
        || {
            let fut = get_as(edge, SENTINEL_IP, "/sentinel");
            let streak = &streak;
            async move {
                let r = fut.await;
                streak.set(if r.status == 403 { streak.get() + 1 } else { 0 });
                streak.get() >= 6
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_blocks_v4_v6_addresses_and_cidrs() {
    let rig = rig(
        vec![
            block_ip(1, "203.0.113.7"),
            block_ip(2, "192.0.2.0/24"),
            block_ip(3, "2001:db8::7"),
            block_ip(4, "2001:db8:bad::/48"),
        ],
        |_| {},
        1,
    )
    .await;
    let e = &rig.edge;
    expect_blocked(&get_as(e, "203.0.113.7", "/a").await, 1);
    expect_blocked(&get_as(e, "192.0.2.99", "/b").await, 2);
    expect_blocked(&get_as(e, "2001:db8::7", "/c").await, 3);
    expect_blocked(&get_as(e, "2001:db8:bad:1::5", "/d").await, 4);
    expect_upstream(&get_as(e, "203.0.113.8", "/ok1").await);
    expect_upstream(&get_as(e, "192.0.3.1", "/ok2").await);
    expect_upstream(&get_as(e, "2001:db8::8", "/ok3").await);
    expect_upstream(&get_as(e, "2001:db8:bae::1", "/ok4").await);
    for blocked in ["/a", "/b", "/c", "/d"] {
        assert_eq!(rig.up.count(blocked), 0, "{blocked} reached the upstream");
    }
    for ok in ["/ok1", "/ok2", "/ok3", "/ok4"] {
        assert_eq!(rig.up.count(ok), 1, "{ok} did not reach the upstream");
    }
    // The 403 body carries the rule id and nothing about the incident.
    let r = get_as(e, "203.0.113.7", "/a").await;
    assert!(!r.body.contains("incident"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarded_for_does_not_evade_a_block() {
    // One trusted hop: only the last X-Forwarded-For entry (written by that hop) is believed.
    let rig = rig(vec![block_ip(1, "203.0.113.7")], |c| c.trusted_hops = 1, 1).await;
    let e = &rig.edge;
    // The client put an innocent address first; the trusted hop appended the real one.
    let r = send(
        client()
            .get(format!("{}/x", e.url))
            .header("x-forwarded-for", "8.8.8.8, 203.0.113.7"),
    )
    .await;
    expect_blocked(&r, 1);
    let r = send(
        client()
            .get(format!("{}/x", e.url))
            .header("x-forwarded-for", "1.1.1.1, 9.9.9.9, 203.0.113.7"),
    )
    .await;
    expect_blocked(&r, 1);
    assert_eq!(rig.up.count("/x"), 0);

    // No trusted hop: X-Forwarded-For is ignored and the peer (127.0.0.1) is the client.
    let rig0 = rig_with_peer_block().await;
    let r = send(
        client()
            .get(format!("{}/y", rig0.edge.url))
            .header("x-forwarded-for", "8.8.8.8"),
    )
    .await;
    expect_blocked(&r, 7);
    assert_eq!(rig0.up.count("/y"), 0);
}

async fn rig_with_peer_block() -> Rig {
    let (up, up_srv) = Upstream::start().await;
    let (ps, ps_srv) = PolicyServer::start(TOKEN).await;
    ps.publish(vec![block_ip(7, "127.0.0.0/8")]);
    let mut cfg = plugin_config("control-plane", TOKEN);
    cfg.trusted_hops = 0;
    let edge = Edge::start(&cfg, &[("control-plane", ps_srv.url())], &up_srv.url(), 1);
    eventually("peer block enforced", Duration::from_secs(20), || {
        let fut = send(client().get(format!("{}/probe", edge.url)));
        async move { fut.await.status == 403 }
    })
    .await;
    Rig {
        ps,
        ps_srv,
        up,
        _up_srv: up_srv,
        edge,
    }
}

fn jwt_with_sub(sub: &str) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "Bearer {}.{}.c2ln",
        e.encode(r#"{"alg":"RS256"}"#),
        e.encode(json!({"sub": sub}).to_string())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_account_and_pixel_blocks() {
    let rig = rig(
        vec![
            rule(
                10,
                RuleKind::Block(Target::ApiKey(KeyHash::of("leaked-key"))),
            ),
            rule(11, RuleKind::Block(Target::Account("acct-evil".into()))),
            rule(12, RuleKind::Block(Target::Pixel("px-bad".into()))),
        ],
        |_| {},
        1,
    )
    .await;
    let e = &rig.edge;
    let c = client();
    expect_blocked(
        &send(
            c.get(format!("{}/api/1", e.url))
                .header("x-api-key", "leaked-key"),
        )
        .await,
        10,
    );
    expect_upstream(
        &send(
            c.get(format!("{}/api/2", e.url))
                .header("x-api-key", "other-key"),
        )
        .await,
    );
    expect_blocked(
        &send(
            c.get(format!("{}/api/3", e.url))
                .header("x-account-id", "acct-evil"),
        )
        .await,
        11,
    );
    expect_blocked(
        &send(
            c.get(format!("{}/api/4", e.url))
                .header("authorization", jwt_with_sub("acct-evil")),
        )
        .await,
        11,
    );
    expect_upstream(
        &send(
            c.get(format!("{}/api/5", e.url))
                .header("authorization", jwt_with_sub("acct-good")),
        )
        .await,
    );
    expect_blocked(&send(c.get(format!("{}/p/px-bad.gif", e.url))).await, 12);
    expect_blocked(&send(c.get(format!("{}/px/px-bad.js", e.url))).await, 12);
    expect_blocked(
        &send(c.get(format!("{}/collect?x=1&pid=px-bad", e.url))).await,
        12,
    );
    expect_upstream(&send(c.get(format!("{}/p/px-good.gif", e.url))).await);
    for p in [
        "/api/1",
        "/api/3",
        "/api/4",
        "/p/px-bad.gif",
        "/px/px-bad.js",
    ] {
        assert_eq!(rig.up.count(p), 0, "{p} reached the upstream");
    }
    assert_eq!(
        rig.up.count("/api/2") + rig.up.count("/api/5") + rig.up.count("/p/px-good.gif"),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pixel_kill_switch_serves_noop_script_and_drops_beacons() {
    let kill = RuleKind::Isolate {
        scope: Scope::Pixel("px-1".into()),
        action: Isolation::PixelKill,
    };
    let rig = rig(vec![rule(20, kill)], |_| {}, 1).await;
    let e = &rig.edge;
    let script = send(client().get(format!("{}/px/px-1.js", e.url))).await;
    assert_eq!(script.status, 200, "{}", script.body);
    assert_eq!(script.body, NOOP_SCRIPT);
    let ct = script
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(ct.starts_with("application/javascript"), "{ct}");
    let beacon = send(client().get(format!("{}/p/px-1.gif?e=view", e.url))).await;
    assert_eq!(beacon.status, 204);
    assert!(beacon.body.is_empty());
    let beacon_q = send(client().get(format!("{}/collect?pid=px-1", e.url))).await;
    assert_eq!(beacon_q.status, 204);
    // Nothing of the killed pixel was ingested.
    assert!(
        rig.up.seen().iter().all(|s| !s.path.contains("px-1")),
        "{:?}",
        rig.up.seen()
    );
    // Other pixels are untouched.
    expect_upstream(&send(client().get(format!("{}/px/px-2.js", e.url))).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_and_block_isolation() {
    let rig = rig(
        vec![
            rule(
                30,
                RuleKind::Isolate {
                    scope: Scope::Host("shop.example".into()),
                    action: Isolation::ReadOnly,
                },
            ),
            rule(
                31,
                RuleKind::Isolate {
                    scope: Scope::PathPrefix("/admin".into()),
                    action: Isolation::Block,
                },
            ),
        ],
        |_| {},
        1,
    )
    .await;
    let e = &rig.edge;
    let c = client();
    expect_upstream(
        &send(
            c.get(format!("{}/cart", e.url))
                .header("host", "shop.example"),
        )
        .await,
    );
    let head = send(
        c.head(format!("{}/cart", e.url))
            .header("host", "shop.example"),
    )
    .await;
    assert_eq!(head.status, 200);
    let post = send(
        c.post(format!("{}/cart", e.url))
            .header("host", "SHOP.example:8080")
            .body("x"),
    )
    .await;
    assert_eq!(post.status, 503, "{}", post.body);
    assert!(post.headers.contains_key("retry-after"));
    assert_eq!(
        serde_json::from_str::<Value>(&post.body).unwrap()["error"],
        "read_only"
    );
    expect_upstream(
        &send(
            c.post(format!("{}/cart2", e.url))
                .header("host", "other.example")
                .body("x"),
        )
        .await,
    );
    assert_eq!(
        rig.up
            .seen()
            .iter()
            .filter(|s| s.method == "POST" && s.path == "/cart")
            .count(),
        0
    );

    let iso = send(c.get(format!("{}/admin/users", e.url))).await;
    assert_eq!(iso.status, 503);
    assert!(iso.headers.contains_key("retry-after"));
    assert_eq!(
        serde_json::from_str::<Value>(&iso.body).unwrap()["rule"],
        31
    );
    expect_upstream(&send(c.get(format!("{}/administrator", e.url))).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_passes_but_counts_and_reports() {
    let mut sim = block_ip(40, "203.0.113.50");
    sim.mode = Mode::Simulate;
    let rig = rig(vec![sim, block_ip(41, "203.0.113.51")], |_| {}, 1).await;
    let e = &rig.edge;
    let before = e.stat("simulated").await;
    for i in 0..3 {
        expect_upstream(&get_as(e, "203.0.113.50", &format!("/sim{i}")).await);
    }
    expect_blocked(&get_as(e, "203.0.113.51", "/enf").await, 41);
    let after = e.stat("simulated").await;
    assert_eq!(after - before, 3, "simulate counter");
    eventually(
        "hit reports for rules 40 and 41",
        Duration::from_secs(10),
        || {
            let ps = rig.ps.clone();
            async move { ps.reported_hits(40) == 3 && ps.reported_hits(41) == 1 }
        },
    )
    .await;
    let r = rig.ps.reports();
    assert!(
        r.iter()
            .all(|r| r.edge_id == "edge-test-1" && r.policy_version >= 1),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_beats_block_and_isolation() {
    let office: IpNet = "192.0.2.10/32".parse().unwrap();
    let rig = rig(
        vec![
            block_ip(50, "192.0.2.0/24"),
            rule(51, RuleKind::Allow(Target::Ip(office))),
            rule(
                52,
                RuleKind::Isolate {
                    scope: Scope::PathPrefix("/ops".into()),
                    action: Isolation::Block,
                },
            ),
        ],
        |_| {},
        1,
    )
    .await;
    let e = &rig.edge;
    expect_upstream(&get_as(e, "192.0.2.10", "/home").await);
    expect_upstream(&get_as(e, "192.0.2.10", "/ops/status").await);
    expect_blocked(&get_as(e, "192.0.2.11", "/home").await, 50);
    assert_eq!(get_as(e, "203.0.113.1", "/ops/status").await.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_rule_stops_matching_without_a_new_policy() {
    let rig = rig(vec![], |_| {}, 1).await;
    // Published once the edge is up, so a slow start does not eat the rule's lifetime.
    let mut r = block_ip(60, "203.0.113.60");
    r.expires_at_ms = Some(now_ms() + 4_000);
    let v = rig
        .ps
        .publish(vec![r, block_ip(SENTINEL_RULE, SENTINEL_IP)]);
    let e = &rig.edge;
    eventually("the expiring rule applies", Duration::from_secs(4), || {
        let fut = get_as(e, "203.0.113.60", "/before");
        async move { fut.await.status == 403 }
    })
    .await;
    expect_blocked(&get_as(e, "203.0.113.60", "/before").await, 60);
    let polls_before = rig.ps.sync_calls();
    eventually(
        "the expired rule stops matching",
        Duration::from_secs(10),
        || {
            let fut = get_as(e, "203.0.113.60", "/after");
            async move { fut.await.status == 200 }
        },
    )
    .await;
    // Still the last policy version published: the edge expired the rule by itself.
    let next = format!("enforcing policy version {}", v + 1);
    assert!(rig.edge.proc.count_lines(&next) == 0);
    assert!(rig.ps.sync_calls() >= polls_before);
    expect_blocked(&get_as(e, SENTINEL_IP, "/still").await, SENTINEL_RULE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_vms_converge_on_one_policy_version_via_deltas() {
    let rig = rig(
        vec![block_ip(70, "203.0.113.70"), block_ip(71, "203.0.113.71")],
        |_| {},
        2,
    )
    .await;
    let e = &rig.edge;
    // Version 2 drops rule 70 and adds 72; the policy server sends it as a delta.
    let v2 = rig.ps.publish(vec![
        block_ip(71, "203.0.113.71"),
        block_ip(72, "203.0.113.72"),
        block_ip(SENTINEL_RULE, SENTINEL_IP),
    ]);
    assert_eq!(v2, 2);
    let needle = "enforcing policy version 2";
    eventually(
        "both worker VMs enforce version 2",
        Duration::from_secs(10),
        || {
            let n = e.proc.count_lines(needle);
            async move { n >= 2 }
        },
    )
    .await;
    for i in 0..8 {
        expect_blocked(&get_as(e, "203.0.113.72", &format!("/n{i}")).await, 72);
        expect_upstream(&get_as(e, "203.0.113.70", &format!("/o{i}")).await);
    }
    // Deltas applied cleanly: nothing was rejected on the way.
    assert_eq!(
        rig.edge.proc.count_lines("rejected"),
        0,
        "{}",
        rig.edge.proc.output_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_good_policy_survives_garbage_errors_and_a_dead_policy_server() {
    let rig = rig(vec![block_ip(80, "203.0.113.80")], |_| {}, 2).await;
    let e = &rig.edge;
    rig.ps.set_behaviour(Behaviour::Garbage);
    // Wake the long-poll so the edge fetches the garbage now.
    rig.ps.publish(vec![]);
    eventually(
        "the edge refused the garbage",
        Duration::from_secs(10),
        || {
            let n = e.proc.count_lines("answer is not a sealed policy");
            async move { n >= 1 }
        },
    )
    .await;
    expect_blocked(&get_as(e, "203.0.113.80", "/g").await, 80);

    rig.ps.set_behaviour(Behaviour::Status(500));
    eventually("the edge saw the 500", Duration::from_secs(10), || {
        let n = e.proc.count_lines("answered 500");
        async move { n >= 1 }
    })
    .await;
    expect_blocked(&get_as(e, "203.0.113.80", "/s").await, 80);

    rig.ps_srv.stop();
    eventually(
        "the edge saw the control plane go away",
        Duration::from_secs(15),
        || {
            let n = e.proc.count_lines("no response from the control plane");
            async move { n >= 1 }
        },
    )
    .await;
    for i in 0..6 {
        expect_blocked(&get_as(e, "203.0.113.80", &format!("/d{i}")).await, 80);
    }
    assert_eq!(
        rig.up
            .seen()
            .iter()
            .filter(|s| s.path.starts_with("/d"))
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_mode_decides_before_any_policy() {
    let (up, up_srv) = Upstream::start().await;
    // A control plane that never answers with a policy.
    let (ps, ps_srv) = PolicyServer::start(TOKEN).await;
    ps.set_behaviour(Behaviour::Status(503));
    let clusters = [("control-plane", ps_srv.url())];
    let mut cfg = plugin_config("control-plane", TOKEN);
    cfg.fail_mode = FailMode::Closed;
    let closed = Edge::start(&cfg, &clusters, &up_srv.url(), 1);
    let r = send(client().get(format!("{}/x", closed.url))).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap()["error"],
        "no_policy"
    );
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(up.count("/x"), 0);

    cfg.fail_mode = FailMode::Open;
    let open = Edge::start(&cfg, &clusters, &up_srv.url(), 1);
    expect_upstream(&send(client().get(format!("{}/y", open.url))).await);
    assert!(closed.stat("no_policy").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_edge_token_is_logged_and_the_last_policy_kept() {
    let (_up, up_srv) = Upstream::start().await;
    let (ps, ps_srv) = PolicyServer::start(TOKEN).await;
    ps.publish(vec![block_ip(90, "203.0.113.90")]);
    let cfg = plugin_config("control-plane", "wrong-token");
    let edge = Edge::start(&cfg, &[("control-plane", ps_srv.url())], &up_srv.url(), 1);
    eventually("the refusal is logged", Duration::from_secs(10), || {
        let n = edge.proc.count_lines("refused the edge token (HTTP 401)");
        async move { n >= 1 }
    })
    .await;
    // Logged once per streak, not once per retry.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        edge.proc.count_lines("refused the edge token"),
        1,
        "{}",
        edge.proc.output_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_plugin_configuration_names_the_field() {
    let (_up, up_srv) = Upstream::start().await;
    // The input under test is malformed on purpose: a valid configuration with one field
    // of the wrong type, written as JSON.
    let mut cfg = serde_json::to_value(plugin_config("control-plane", TOKEN)).unwrap();
    cfg["trusted_hops"] = json!("two");
    let dir = temp_dir("badcfg");
    let path = dir.path().join("plugin.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let out = std::process::Command::new(edge_testkit::bin("edge-proxy").unwrap())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &up_srv.url(),
            "--cluster",
            "control-plane=http://127.0.0.1:9",
        ])
        .arg("--wasm")
        .arg(edge_testkit::filter_wasm().unwrap())
        .arg("--plugin-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "edge-proxy started with a bad configuration"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("field `trusted_hops`"), "{text}");
}
