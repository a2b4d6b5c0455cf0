//! Property tests: the compiled matcher against the naive reference, and deltas against
//! rebuilding from `Snapshot::apply`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use edge_policy::{
    naive, Delta, Facts, IpNet, Ipv4Net, Ipv6Net, Isolation, KeyHash, Matcher, Mode, PixelCase,
    PixelKind, PixelRef, Rule, RuleKind, Scope, Snapshot, Target,
};
use proptest::prelude::*;

const V4_BASES: [u32; 5] = [
    0x0a00_0000,
    0x0a01_0203,
    0xc000_0200,
    0xc000_0280,
    0xffff_ffff,
];
const V6_BASES: [u128; 4] = [
    0x2001_0db8_0000_0000_0000_0000_0000_0000,
    0x2001_0db8_0000_0000_0000_0000_0000_0001,
    0x2001_0db8_0001_0000_0000_0000_0000_0000,
    0xfe80_0000_0000_0000_0000_0000_0000_0000,
];
const KEYS: [&str; 3] = ["k1", "k2", "k3"];
const ACCOUNTS: [&str; 3] = ["a", "b", "A"];
/// Pixel ids in rules and requests: `Px1` is `px1` on a case-insensitive route only.
const PIXELS: [&str; 3] = ["px1", "px2", "Px1"];
const HOSTS: [&str; 4] = ["ex.com", "EX.com", "b.org", ""];
const PREFIXES: [&str; 9] = ["", "/", "/a", "/a/", "/a/b", "/ab", "//", "a", "/a/b/"];
const PATHS: [&str; 12] = [
    "", "/", "/a", "/a/", "/a/b", "/a/b/c", "/ab", "//", "//x", "a", "a/b", "/x",
];
const METHODS: [&str; 4] = ["GET", "POST", "OPTIONS", "DELETE"];

fn v4_near() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => (prop::sample::select(&V4_BASES[..]), any::<u16>()).prop_map(|(b, n)| b ^ u32::from(n & 0x1ff)),
        1 => any::<u32>(),
    ]
}

fn v6_near() -> impl Strategy<Value = u128> {
    prop_oneof![
        3 => (prop::sample::select(&V6_BASES[..]), any::<u32>()).prop_map(|(b, n)| b ^ u128::from(n & 0x1_ffff)),
        1 => any::<u128>(),
    ]
}

fn prefix_len(max: u8) -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(vec![0, max, max - 1, max - 8, max / 2]),
        0..=max
    ]
}

pub fn arb_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (v4_near(), prefix_len(32)).prop_filter_map("len", |(a, l)| Ipv4Net::new(
            Ipv4Addr::from(a),
            l
        )
        .ok()
        .map(IpNet::V4)),
        (v6_near(), prefix_len(128)).prop_filter_map("len", |(a, l)| Ipv6Net::new(
            Ipv6Addr::from(a),
            l
        )
        .ok()
        .map(IpNet::V6)),
    ]
}

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(pool).prop_map(String::from)
}

pub fn arb_target() -> impl Strategy<Value = Target> {
    prop_oneof![
        3 => arb_net().prop_map(Target::Ip),
        1 => pick(&KEYS).prop_map(|k| Target::ApiKey(KeyHash::of(&k))),
        1 => pick(&ACCOUNTS).prop_map(Target::Account),
        1 => pick(&PIXELS).prop_map(Target::Pixel),
        1 => pick(&HOSTS).prop_map(Target::Host),
        1 => pick(&PREFIXES).prop_map(Target::PathPrefix),
    ]
}

pub fn arb_kind() -> impl Strategy<Value = RuleKind> {
    let scope = prop_oneof![
        pick(&HOSTS).prop_map(Scope::Host),
        pick(&PREFIXES).prop_map(Scope::PathPrefix),
        pick(&PIXELS).prop_map(Scope::Pixel),
    ];
    prop_oneof![
        3 => arb_target().prop_map(RuleKind::Block),
        1 => arb_target().prop_map(RuleKind::Allow),
        2 => (scope, prop::sample::select(&Isolation::ALL[..]))
            .prop_map(|(scope, action)| RuleKind::Isolate { scope, action }),
    ]
}

pub fn arb_rule(ids: std::ops::Range<u64>) -> impl Strategy<Value = Rule> {
    (
        ids,
        prop::option::of(0u64..4),
        prop::sample::select(&Mode::ALL[..]),
        prop::option::of(0u64..100),
        arb_kind(),
    )
        .prop_map(|(id, incident, mode, expires_at_ms, kind)| Rule {
            id,
            incident,
            mode,
            expires_at_ms,
            kind,
        })
}

/// Rules with unique ids (in random order).
pub fn arb_rules(max: usize) -> impl Strategy<Value = Vec<Rule>> {
    prop::collection::vec(arb_rule(0..200), 0..max).prop_map(|mut rules| {
        let mut seen = std::collections::HashSet::new();
        rules.retain(|r| seen.insert(r.id));
        rules
    })
}

/// Owned request facts (Facts borrows).
#[derive(Clone, Debug)]
pub struct Req {
    ip: Option<IpAddr>,
    method: &'static str,
    host: &'static str,
    path: &'static str,
    api_key: Option<&'static str>,
    account: Option<&'static str>,
    pixel: Option<(&'static str, PixelKind, PixelCase)>,
}

impl Req {
    pub fn facts(&self) -> Facts<'static> {
        Facts {
            client_ip: self.ip,
            method: self.method,
            host: self.host,
            path: self.path,
            api_key: self.api_key,
            account: self.account,
            pixel: self
                .pixel
                .map(|(id, kind, case)| PixelRef { id, kind, case }),
        }
    }
}

pub fn arb_req() -> impl Strategy<Value = Req> {
    let ip = prop::option::weighted(
        0.9,
        prop_oneof![
            v4_near().prop_map(|a| IpAddr::V4(a.into())),
            v6_near().prop_map(|a| IpAddr::V6(a.into())),
        ],
    );
    let kind = prop::sample::select(vec![PixelKind::Script, PixelKind::Beacon]);
    let case = prop::sample::select(vec![PixelCase::Insensitive, PixelCase::Sensitive]);
    (
        ip,
        prop::sample::select(&METHODS[..]),
        prop::sample::select(&HOSTS[..]),
        prop::sample::select(&PATHS[..]),
        prop::option::of(prop::sample::select(&["k1", "k2", "k4"][..])),
        prop::option::of(prop::sample::select(&ACCOUNTS[..])),
        prop::option::of((prop::sample::select(&PIXELS[..]), kind, case)),
    )
        .prop_map(|(ip, method, host, path, api_key, account, pixel)| Req {
            ip,
            method,
            host,
            path,
            api_key,
            account,
            pixel,
        })
}

fn arb_delta_parts() -> impl Strategy<Value = (Vec<Rule>, Vec<u64>)> {
    (
        prop::collection::vec(arb_rule(0..200), 0..12),
        prop::collection::vec(0u64..200, 0..12),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn matcher_agrees_with_naive(
        rules in arb_rules(40),
        reqs in prop::collection::vec(arb_req(), 1..16),
        now in 0u64..120,
    ) {
        let m = Matcher::new(&Snapshot { version: 1, rules: rules.clone() });
        for r in &reqs {
            let f = r.facts();
            prop_assert_eq!(m.evaluate(&f, now), naive::evaluate(&rules, &f, now), "{:?}", f);
        }
    }

    #[test]
    fn to_snapshot_gives_back_the_rules(rules in arb_rules(40), version in any::<u64>()) {
        let mut s = Snapshot { version, rules };
        let m = Matcher::from_snapshot(s.clone());
        s.canonicalize();
        prop_assert_eq!(m.len(), s.rules.len());
        prop_assert_eq!(m.to_snapshot(), s);
    }

    #[test]
    fn deltas_equal_rebuilding(
        rules in arb_rules(40),
        deltas in prop::collection::vec(arb_delta_parts(), 1..4),
        reqs in prop::collection::vec(arb_req(), 1..12),
        now in 0u64..120,
    ) {
        let mut snap = Snapshot { version: 3, rules };
        let mut m = Matcher::new(&snap);
        for (i, (upserts, removed)) in deltas.into_iter().enumerate() {
            let d = Delta { since: snap.version, version: snap.version + 1 + i as u64, upserts, removed };
            snap = snap.apply(&d).map_err(|e| TestCaseError::fail(e.to_string()))?;
            m.apply_delta(&d).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let rebuilt = Matcher::new(&snap);
        prop_assert_eq!(m.version(), snap.version);
        prop_assert_eq!(m.to_snapshot(), rebuilt.to_snapshot());
        prop_assert_eq!(m.to_snapshot(), snap.clone());
        for r in &reqs {
            let f = r.facts();
            let v = m.evaluate(&f, now);
            prop_assert_eq!(v, rebuilt.evaluate(&f, now));
            prop_assert_eq!(v, naive::evaluate(&snap.rules, &f, now), "{:?}", f);
        }
    }
}

/// Past a few thousand addresses per family the prefix tables add a /16 filter: check it
/// against naive, also after removals (which leave stale filter bits) and re-adds.
#[test]
fn large_ip_sets_agree_with_naive() {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let bases4: Vec<u32> = (0..40).map(|_| next() as u32).collect();
    let bases6: Vec<u128> = (0..40)
        .map(|_| (u128::from(next()) << 64) | u128::from(next()))
        .collect();
    let near4 = |r: u64| bases4[(r % 40) as usize] ^ ((r >> 8) as u32 & 0x00ff_ffff);
    let mut rules = Vec::new();
    for id in 0..12_000u64 {
        let r = next();
        let len_pick = (r >> 40) as u8;
        let net = if r % 2 == 0 {
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(near4(next())), len_pick % 33).expect("len"))
        } else {
            let a = bases6[(r % 40) as usize] ^ u128::from(next() & 0xffff_ffff);
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len_pick % 129).expect("len"))
        };
        let mode = if r % 7 == 1 {
            Mode::Simulate
        } else {
            Mode::Enforce
        };
        let kind = if r % 11 == 1 {
            RuleKind::Allow(Target::Ip(net))
        } else {
            RuleKind::Block(Target::Ip(net))
        };
        rules.push(Rule {
            id,
            incident: None,
            mode,
            expires_at_ms: None,
            kind,
        });
    }
    let mut snap = Snapshot { version: 1, rules };
    let mut m = Matcher::new(&snap);
    let probes: Vec<IpAddr> = (0..300)
        .map(|i| {
            let r = next();
            match i % 3 {
                0 => IpAddr::V4(Ipv4Addr::from(near4(r))),
                1 => IpAddr::V6(Ipv6Addr::from(
                    bases6[(r % 40) as usize] ^ u128::from(next() & 0xffff),
                )),
                _ => IpAddr::V6(Ipv6Addr::from((u128::from(r) << 64) | u128::from(next()))),
            }
        })
        .collect();
    let check = |m: &Matcher, snap: &Snapshot| {
        for &ip in &probes {
            let f = Facts {
                client_ip: Some(ip),
                method: "GET",
                ..Facts::default()
            };
            assert_eq!(
                m.evaluate(&f, 0),
                naive::evaluate(&snap.rules, &f, 0),
                "{ip}"
            );
        }
    };
    check(&m, &snap);
    let d = Delta {
        since: 1,
        version: 2,
        upserts: snap
            .rules
            .iter()
            .step_by(3)
            .take(500)
            .map(|r| Rule {
                id: r.id + 100_000,
                ..r.clone()
            })
            .collect(),
        removed: (0..12_000).filter(|i| i % 2 == 0).collect(),
    };
    m.apply_delta(&d).expect("applies");
    snap = snap.apply(&d).expect("applies");
    check(&m, &snap);
}
