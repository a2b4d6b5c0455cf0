//! Property tests of the dense IP layout (issue #15): matchers compiled with it agree with
//! the hashed layout it replaced and with the naive reference, on network-heavy policies
//! with repeated ids, IPv4-mapped IPv6 addresses, overlapping prefixes and /0, through
//! deltas and merges of the hashed networks into the dense arrays.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use edge_policy::{
    naive, Delta, Facts, IpNet, Ipv4Net, Ipv6Net, Matcher, Mode, Rule, RuleKind, Snapshot, Target,
};
use proptest::prelude::*;

use crate::props::{arb_kind, arb_rule};

/// The IPv4-mapped IPv6 prefix `::ffff:0:0/96`.
const MAPPED: u128 = 0xffff_0000_0000;

fn v4_addr() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => (prop::sample::select(&[0x0a00_0000u32, 0xc000_0200, 0xffff_fff0][..]), any::<u8>())
            .prop_map(|(b, n)| b ^ u32::from(n & 0x3f)),
        1 => any::<u32>(),
    ]
}

/// IPv6 addresses: near a base, or IPv4-mapped near the IPv4 bases.
fn v6_addr() -> impl Strategy<Value = u128> {
    prop_oneof![
        2 => v4_addr().prop_map(|a| MAPPED | u128::from(a)),
        2 => (prop::sample::select(&[0x2001_0db8u128 << 96, 0][..]), any::<u16>())
            .prop_map(|(b, n)| b ^ u128::from(n & 0x3ff)),
        1 => any::<u128>(),
    ]
}

fn arb_ip_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (
            v4_addr(),
            prop_oneof![Just(32u8), Just(0u8), 24u8..=32, 0u8..=32]
        )
            .prop_filter_map("len", |(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l)
                .ok()
                .map(IpNet::V4)),
        (
            v6_addr(),
            prop_oneof![Just(128u8), Just(0u8), Just(96u8), 96u8..=128, 0u8..=128]
        )
            .prop_filter_map("len", |(a, l)| Ipv6Net::new(Ipv6Addr::from(a), l)
                .ok()
                .map(IpNet::V6)),
    ]
}

/// Mostly network rules, any class, mode, expiry, incident; ids from a small range so that
/// they repeat.
fn arb_ip_rule(ids: std::ops::Range<u64>) -> impl Strategy<Value = Rule> {
    prop_oneof![
        4 => (ids.clone(), prop::option::of(0u64..3), any::<bool>(), any::<bool>(), prop::option::of(0u64..100), arb_ip_net())
            .prop_map(|(id, incident, allow, sim, expires_at_ms, net)| Rule {
                id,
                incident,
                mode: if sim { Mode::Simulate } else { Mode::Enforce },
                expires_at_ms,
                kind: if allow { RuleKind::Allow(Target::Ip(net)) } else { RuleKind::Block(Target::Ip(net)) },
            }),
        1 => arb_rule(ids),
    ]
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        v4_addr().prop_map(|a| IpAddr::V4(a.into())),
        v6_addr().prop_map(|a| IpAddr::V6(a.into())),
    ]
}

/// The rules a snapshot with repeated ids means: the last rule with each id.
fn last_per_id(rules: &[Rule]) -> Vec<Rule> {
    let by_id: BTreeMap<u64, Rule> = rules.iter().map(|r| (r.id, r.clone())).collect();
    by_id.into_values().collect()
}

fn facts(ip: IpAddr) -> Facts<'static> {
    Facts {
        client_ip: Some(ip),
        method: "POST",
        host: "ex.com",
        path: "/a/b",
        ..Facts::default()
    }
}

fn check(
    m: &Matcher,
    hashed: &Matcher,
    rules: &[Rule],
    ips: &[IpAddr],
    now: u64,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(m.len(), rules.len());
    prop_assert_eq!(m.to_snapshot().rules, rules.to_vec());
    prop_assert_eq!(m.to_snapshot(), hashed.to_snapshot());
    prop_assert_eq!(
        m.has_expiring(),
        rules.iter().any(|r| r.expires_at_ms.is_some())
    );
    for &ip in ips {
        let f = facts(ip);
        let v = m.evaluate(&f, now);
        prop_assert_eq!(v, naive::evaluate(rules, &f, now), "{}", ip);
        prop_assert_eq!(v, hashed.evaluate(&f, now), "{}", ip);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn dense_agrees_with_hashed_and_naive(
        rules in prop::collection::vec(arb_ip_rule(0..40), 0..80),
        ips in prop::collection::vec(arb_ip(), 1..24),
        now in 0u64..120,
    ) {
        let snap = Snapshot { version: 1, rules: rules.clone() };
        let live = last_per_id(&rules);
        let hashed = Matcher::new_hashed_layout(&snap);
        check(&Matcher::new(&snap), &hashed, &live, &ips, now)?;
        check(&Matcher::from_snapshot(snap.clone()), &hashed, &live, &ips, now)?;
        let bytes = edge_policy::wire::encode_snapshot(&snap);
        match Matcher::decode_update(&bytes) {
            Ok(edge_policy::matcher::Update::Snapshot(m)) => check(&m, &hashed, &live, &ips, now)?,
            other => prop_assert!(false, "not a snapshot: {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn dense_deltas_and_merges_agree(
        rules in prop::collection::vec(arb_ip_rule(0..60), 0..60),
        deltas in prop::collection::vec(
            (prop::collection::vec(arb_ip_rule(0..80), 0..16), prop::collection::vec(0u64..80, 0..16), any::<bool>()),
            1..5,
        ),
        ips in prop::collection::vec(arb_ip(), 1..16),
        now in 0u64..120,
    ) {
        let mut snap = Snapshot { version: 3, rules: last_per_id(&rules) };
        let mut m = Matcher::new(&Snapshot { version: 3, rules });
        let mut hashed = Matcher::new_hashed_layout(&snap);
        for (i, (upserts, removed, merge)) in deltas.into_iter().enumerate() {
            let d = Delta { since: snap.version, version: snap.version + 1 + i as u64, upserts, removed };
            snap = snap.apply(&d).map_err(|e| TestCaseError::fail(e.to_string()))?;
            m.apply_delta(&d).map_err(|e| TestCaseError::fail(e.to_string()))?;
            hashed.apply_delta(&d).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if merge {
                m.compact_now();
            }
            check(&m, &hashed, &snap.rules, &ips, now)?;
        }
        // A matcher that started empty and got everything by deltas, then merged.
        let mut from_empty = Matcher::default();
        let d = Delta { since: 0, version: snap.version, upserts: snap.rules.clone(), removed: vec![] };
        from_empty.apply_delta(&d).map_err(|e| TestCaseError::fail(e.to_string()))?;
        from_empty.compact_now();
        check(&from_empty, &hashed, &snap.rules, &ips, now)?;
    }

    /// Repeated ids across families and kinds: whichever came last wins, as in an upsert.
    #[test]
    fn repeated_ids_across_kinds_keep_the_last(
        kinds in prop::collection::vec((0u64..4, prop_oneof![arb_ip_net().prop_map(|n| RuleKind::Block(Target::Ip(n))), arb_kind()]), 1..24),
        ips in prop::collection::vec(arb_ip(), 1..8),
    ) {
        let rules: Vec<Rule> = kinds.into_iter().map(|(id, kind)| Rule { id, incident: None, mode: Mode::Enforce, expires_at_ms: None, kind }).collect();
        let snap = Snapshot { version: 1, rules: rules.clone() };
        let hashed = Matcher::new_hashed_layout(&snap);
        check(&Matcher::new(&snap), &hashed, &last_per_id(&rules), &ips, 0)?;
    }
}

/// Past 1024 pending changes a delta merges the hashed networks by itself.
#[test]
fn a_large_delta_merges_by_itself() {
    let rules: Vec<Rule> = (0..3000u32)
        .map(|i| Rule {
            id: u64::from(i),
            incident: Some(u64::from(i % 3)),
            mode: if i % 5 == 0 {
                Mode::Simulate
            } else {
                Mode::Enforce
            },
            expires_at_ms: (i % 7 == 0).then_some(u64::from(i)),
            kind: RuleKind::Block(Target::Ip(IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(0xc000_0000 | (i << 4)), 28 + (i % 5) as u8)
                    .expect("len"),
            ))),
        })
        .collect();
    let mut snap = Snapshot { version: 1, rules };
    let mut m = Matcher::new(&snap);
    let d = Delta {
        since: 1,
        version: 2,
        upserts: snap
            .rules
            .iter()
            .take(1500)
            .map(|r| Rule {
                id: r.id + 10_000,
                ..r.clone()
            })
            .collect(),
        removed: (0..1500).collect(),
    };
    snap = snap.apply(&d).expect("applies");
    m.apply_delta(&d).expect("applies");
    assert_eq!(m.to_snapshot(), snap);
    // Merged: denser than the hashed layout again (unmerged it would hold 1500 hashed
    // networks besides 3000 dense entries).
    let hashed = Matcher::new_hashed_layout(&snap);
    assert!(
        m.heap_bytes() < hashed.heap_bytes(),
        "{} >= {}",
        m.heap_bytes(),
        hashed.heap_bytes()
    );
    for i in (0..3000u32).step_by(7) {
        for now in [0, 2000] {
            let f = facts(IpAddr::V4(Ipv4Addr::from(
                0xc000_0000 | (i << 4) | (i % 16),
            )));
            assert_eq!(m.evaluate(&f, now), naive::evaluate(&snap.rules, &f, now));
            assert_eq!(m.evaluate(&f, now), hashed.evaluate(&f, now));
        }
    }
}
