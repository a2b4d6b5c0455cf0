//! Issue #11, verdict visibility: the deciding rule is on every local reply (a header) and,
//! for the proxy's access log, in a property the filter sets on the request (Envoy keeps it
//! as filter state `wasm.edge_containment_rule`; Kong's host only takes new properties under
//! `wasmx.`), also for requests an allow-list entry let through and for `simulate` rules.

use edge_host::{HostProfile, Vm};
use edge_policy::reply::{RULE_HEADER, RULE_PROPERTY, SIMULATED_PROPERTY};
use edge_policy::{wire, Isolation, Mode, RuleKind, Scope, Snapshot, Target};

use crate::common::{block_ip, rule};
use crate::sharing::{answer_sync, decide, plugin};

/// The property as the host holds it under `profile`.
fn property_name(profile: HostProfile, name: &str) -> String {
    match profile {
        HostProfile::Envoy => name.to_string(),
        HostProfile::Kong => format!("wasmx.{name}"),
    }
}

struct Seen {
    status: u16,
    header: Option<String>,
    rule: Option<String>,
    simulated: Option<String>,
}

fn send(vm: &mut Vm, profile: HostProfile, ip: &str, method: &str, path: &str) -> Seen {
    let (status, headers, ctx) = decide(vm, method, path, &[("x-forwarded-for", ip)]);
    let prop = |name| {
        vm.context_property(ctx, &property_name(profile, name))
            .map(|v| String::from_utf8(v).unwrap())
    };
    let seen = Seen {
        status,
        header: headers
            .iter()
            .find(|(k, _)| k == RULE_HEADER)
            .map(|(_, v)| v.clone()),
        rule: prop(RULE_PROPERTY),
        simulated: prop(SIMULATED_PROPERTY),
    };
    vm.finish(ctx);
    seen
}

fn the_deciding_rule_is_in_the_reply_and_in_a_property(profile: HostProfile) {
    let p = plugin(profile);
    let mut vm = Vm::start(&p).unwrap();
    let mut sim = block_ip(8, "198.51.100.8");
    sim.mode = Mode::Simulate;
    let snap = Snapshot {
        version: 3,
        rules: vec![
            block_ip(7, "203.0.113.7"),
            sim,
            rule(
                9,
                RuleKind::Allow(Target::Ip("192.0.2.9/32".parse().unwrap())),
            ),
            rule(
                10,
                RuleKind::Isolate {
                    scope: Scope::PathPrefix("/checkout".into()),
                    action: Isolation::ReadOnly,
                },
            ),
        ],
    };
    answer_sync(&mut vm, wire::encode_snapshot(&snap));

    let blocked = send(&mut vm, profile, "203.0.113.7", "GET", "/x");
    assert_eq!(blocked.status, 403);
    assert_eq!(blocked.header.as_deref(), Some("7"));
    assert_eq!(blocked.rule.as_deref(), Some("7"));

    let read_only = send(&mut vm, profile, "203.0.113.50", "POST", "/checkout/pay");
    assert_eq!(read_only.status, 503);
    assert_eq!(read_only.header.as_deref(), Some("10"));
    assert_eq!(read_only.rule.as_deref(), Some("10"));

    let simulated = send(&mut vm, profile, "198.51.100.8", "GET", "/x");
    assert_eq!(simulated.status, 0, "simulate lets the request through");
    assert_eq!(simulated.rule, None);
    assert_eq!(simulated.simulated.as_deref(), Some("8"));

    let allowed = send(&mut vm, profile, "192.0.2.9", "POST", "/checkout/pay");
    assert_eq!(
        allowed.status, 0,
        "the allow-list entry wins over the isolation"
    );
    assert_eq!(allowed.rule.as_deref(), Some("9"));

    let plain = send(&mut vm, profile, "203.0.113.50", "GET", "/x");
    assert_eq!((plain.status, plain.rule, plain.simulated), (0, None, None));

    // Verdicts are counted in the VM and reach the host's counters on the next tick.
    let verdicts = |p: &edge_host::Plugin| {
        ["block", "read_only", "allow", "allow_listed"].map(|a| {
            p.metric(&format!("edge_containment.verdict.{a}"))
                .unwrap_or(0)
        })
    };
    let tick = |vm: &mut Vm| {
        let due = vm.next_deadline().expect("the filter set a tick period");
        vm.run_due_timers(due).unwrap();
    };
    tick(&mut vm);
    assert_eq!(verdicts(&p), [1, 1, 2, 1], "each request above once");
    for _ in 0..3 {
        send(&mut vm, profile, "203.0.113.7", "GET", "/x");
    }
    tick(&mut vm);
    assert_eq!(verdicts(&p), [4, 1, 2, 1], "three more blocks");
}

#[test]
fn the_deciding_rule_is_in_the_reply_and_in_a_property_envoy() {
    the_deciding_rule_is_in_the_reply_and_in_a_property(HostProfile::Envoy);
}

#[test]
fn the_deciding_rule_is_in_the_reply_and_in_a_property_kong() {
    the_deciding_rule_is_in_the_reply_and_in_a_property(HostProfile::Kong);
}
