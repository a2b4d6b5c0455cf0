//! The real filter's worker VMs sharing a big policy, driven in-process in `edge-host`
//! (sync calls answered by the test): the snapshot goes to shared data in parts, other VMs
//! decode it part by part, a full delta log makes the leader publish a fresh snapshot from
//! its matcher, and a damaged or replaced snapshot is never half adopted. Run under every
//! host profile (Envoy; Kong, with strict CAS and dispatch only from ticks).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use edge_host::{
    FilterOutcome, HostOptions, HostProfile, HttpCallResponse, HttpContextId, Plugin, RequestHead,
    Vm,
};
use edge_policy::shared::{part_key, Announcement, DELTAS_MAX_BYTES, PART_LEN, VERSION_KEY};
use edge_policy::{wire, Delta, IpNet, Ipv4Net, Rule, Snapshot};

use crate::common::{block_ip, config_for, plugin_config};

pub(crate) fn plugin(profile: HostProfile) -> Plugin {
    plugin_with(profile, |_| {})
}

/// [`plugin`] with the configuration changed by `edit` first.
pub(crate) fn plugin_with(
    profile: HostProfile,
    edit: impl FnOnce(&mut edge_policy::config::FilterConfig),
) -> Plugin {
    let clusters = [("cp", "http://127.0.0.1:9".to_string())];
    let mut cfg = plugin_config("cp", "edge-token");
    cfg.fail_mode = edge_policy::config::FailMode::Open;
    edit(&mut cfg);
    let cfg = config_for(profile, &cfg, &clusters);
    let opts = HostOptions {
        plugin_config: serde_json::to_vec(&cfg).unwrap(),
        clusters: clusters.map(|(n, u)| (n.to_string(), vec![u])).into(),
        // Generous: this is about sharing, not speed (the debug-free build is fast anyway).
        callback_deadline: Duration::from_secs(30),
        ..profile.options()
    };
    Plugin::load_file(&edge_testkit::filter_wasm().unwrap(), opts).unwrap()
}

/// `n` /32 blocks from `first_id`, addresses `a.x.y.z` counting up.
fn blocks(first_id: u64, n: u64, a: u8) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            let ip = Ipv4Addr::from(u32::from(a) << 24 | i as u32);
            let mut r = block_ip(first_id + i, "0.0.0.0/32");
            r.kind = edge_policy::RuleKind::Block(edge_policy::Target::Ip(IpNet::V4(
                Ipv4Net::new(ip, 32).unwrap(),
            )));
            r
        })
        .collect()
}

fn addr(a: u8, i: u32) -> String {
    Ipv4Addr::from(u32::from(a) << 24 | i).to_string()
}

/// A request to `shop.example` from 127.0.0.1 with these headers, through the filter: the
/// local reply's status and headers (0 and none when forwarded) and the context, still
/// open (call `vm.finish` after looking at it).
pub(crate) fn decide(
    vm: &mut Vm,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, HttpContextId) {
    let mut head = RequestHead::get(
        path,
        "shop.example",
        SocketAddr::from(([127, 0, 0, 1], 5000)),
    );
    head.method = method.into();
    for (k, v) in headers {
        head = head.header(k, v);
    }
    match vm.on_request(&head).unwrap() {
        FilterOutcome::LocalResponse {
            status,
            headers,
            context,
            ..
        } => (status, headers, context),
        FilterOutcome::Continue { context, .. } | FilterOutcome::Paused { context } => {
            (0, vec![], context)
        }
    }
}

/// The status of a GET with these headers (0: forwarded).
pub(crate) fn status_of(vm: &mut Vm, path: &str, headers: &[(&str, &str)]) -> u16 {
    let (status, _, ctx) = decide(vm, "GET", path, headers);
    vm.finish(ctx);
    status
}

/// The status a client from `ip` gets (0: forwarded).
fn status(vm: &mut Vm, ip: &str) -> u16 {
    status_of(vm, "/x", &[("x-forwarded-for", ip)])
}

/// Answer the leader's next policy sync call with `body` (a bare message), sealed as the
/// control plane seals it.
pub(crate) fn answer_sync(vm: &mut Vm, body: Vec<u8>) {
    answer_sync_raw(vm, edge_testkit::sealed(&body));
}

/// Answer the leader's next policy sync call with exactly `body`.
fn answer_sync_raw(vm: &mut Vm, body: Vec<u8>) {
    for attempt in 1..=3 {
        let calls = vm.take_http_calls();
        if let Some(c) = calls.iter().find(|c| {
            c.headers
                .iter()
                .any(|(k, v)| k == ":path" && v.contains("/v1/edge/policy"))
        }) {
            let resp = HttpCallResponse::new(200, vec![], body);
            vm.deliver_http_call_response(c.token, Some(resp)).unwrap();
            return;
        }
        // The host schedules the next tick one period after the time given: a later call
        // must give a later time, or the tick is not due yet.
        vm.run_due_timers(Instant::now() + Duration::from_secs(3600 * attempt))
            .unwrap();
    }
    panic!("the leader dispatched no policy sync call");
}

fn announced(p: &Plugin) -> Announcement {
    let (v, _) = p.shared_data_get(VERSION_KEY).expect("announcement");
    Announcement::decode(&v).expect("28-byte announcement")
}

fn tick(vm: &mut Vm) {
    vm.run_due_timers(Instant::now() + Duration::from_secs(3600))
        .unwrap();
}

fn no_errors(p: &Plugin) {
    let bad: Vec<_> = p
        .logs()
        .into_iter()
        .filter(|l| l.message.contains("malformed") || l.message.contains("could not share"))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
}

fn big_snapshot_is_shared_in_parts_and_republished_from_the_matcher(profile: HostProfile) {
    let p = plugin(profile);
    let mut leader = Vm::start(&p).unwrap();
    let snap = Snapshot {
        version: 1,
        rules: blocks(1, 150_000, 10),
    };
    let body = wire::encode_snapshot(&snap);
    assert!(
        body.len() > PART_LEN,
        "the test needs a snapshot of several parts"
    );
    answer_sync(&mut leader, body.clone());
    let a1 = announced(&p);
    assert_eq!((a1.version, a1.base), (1, 1));
    assert_eq!(a1.parts as usize, body.len().div_ceil(PART_LEN));
    // The parts put together are the message as received.
    let joined: Vec<u8> = (0..a1.parts as usize)
        .flat_map(|i| p.shared_data_get(&part_key(a1.snapshot, i)).unwrap().0)
        .collect();
    assert_eq!(joined, body);

    // A VM starting now adopts it from the parts.
    let mut follower = Vm::start(&p).unwrap();
    for vm in [&mut leader, &mut follower] {
        assert_eq!(status(vm, &addr(10, 0)), 403);
        assert_eq!(status(vm, &addr(10, 149_999)), 403);
        assert_eq!(status(vm, &addr(10, 150_000)), 0);
    }

    // A delta bigger than the delta log: the leader publishes its matcher as a new snapshot.
    let delta = Delta {
        since: 1,
        version: 2,
        upserts: blocks(1_000_000, 90_000, 11),
        removed: (1..=1_000).collect(),
    };
    let delta_bytes = wire::encode_delta(&delta);
    assert!(delta_bytes.len() > DELTAS_MAX_BYTES);
    answer_sync(&mut leader, delta_bytes);
    let a2 = announced(&p);
    assert_eq!((a2.version, a2.base), (2, 2));
    assert_ne!(a2.snapshot, a1.snapshot, "a new publication");
    assert!(a2.parts >= 2);
    // The old parts are freed.
    for i in 0..a1.parts as usize {
        let old = p.shared_data_get(&part_key(a1.snapshot, i));
        assert!(old.is_none_or(|(v, _)| v.is_empty()), "part {i} kept");
    }
    tick(&mut follower);
    let mut late = Vm::start(&p).unwrap();
    for vm in [&mut leader, &mut follower, &mut late] {
        assert_eq!(status(vm, &addr(10, 0)), 0, "rule 1 was removed");
        assert_eq!(status(vm, &addr(10, 1_000)), 403, "rule 1001 stays");
        assert_eq!(status(vm, &addr(11, 89_999)), 403, "added by the delta");
    }
    no_errors(&p);
    let enforcing = p
        .logs()
        .iter()
        .filter(|l| {
            l.message
                .contains("enforcing policy version 2 (239000 rules)")
        })
        .count();
    assert_eq!(enforcing, 3, "{:?}", p.logs());
}

#[test]
fn big_snapshot_is_shared_in_parts_envoy_host() {
    big_snapshot_is_shared_in_parts_and_republished_from_the_matcher(HostProfile::Envoy);
}

#[test]
fn big_snapshot_is_shared_in_parts_kong_host() {
    big_snapshot_is_shared_in_parts_and_republished_from_the_matcher(HostProfile::Kong);
}

#[test]
fn a_damaged_shared_snapshot_is_not_half_adopted() {
    for profile in HostProfile::ALL {
        a_damaged_shared_snapshot_is_not_half_adopted_under(profile);
    }
}

fn a_damaged_shared_snapshot_is_not_half_adopted_under(profile: HostProfile) {
    let p = plugin(profile);
    let mut leader = Vm::start(&p).unwrap();
    let body = wire::encode_snapshot(&Snapshot {
        version: 1,
        rules: blocks(1, 120_000, 10),
    });
    answer_sync(&mut leader, body);
    let a1 = announced(&p);
    // Damage the second part, as a broken host or a stray writer would.
    let garbage = vec![0xff; 4096];
    p.shared_data_set(&part_key(a1.snapshot, 1), &garbage, 0)
        .unwrap();
    let mut follower = Vm::start(&p).unwrap();
    // Nothing half-built is enforced: no policy at all yet (fail open), and it says why.
    assert_eq!(status(&mut follower, &addr(10, 0)), 0);
    assert!(
        p.logs()
            .iter()
            .any(|l| l.message.contains("shared policy is malformed")),
        "{:?}",
        p.logs()
    );
    // The next publication repairs it.
    let body = wire::encode_snapshot(&Snapshot {
        version: 2,
        rules: blocks(1, 120_000, 10),
    });
    answer_sync(&mut leader, body);
    tick(&mut follower);
    assert_eq!(status(&mut follower, &addr(10, 0)), 403);
    assert_eq!(status(&mut follower, &addr(10, 119_999)), 403);
}
