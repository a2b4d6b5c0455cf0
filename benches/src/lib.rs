//! Shared by the benchmarks and load generators: realistic, deterministic rule sets, the
//! filter's wasm files, a typical request, and small statistics helpers.

pub mod stack;
pub mod vmkit;

use edge_policy::{IpNet, Ipv4Net, Ipv6Net, KeyHash, Mode, Rule, RuleKind, Snapshot, Target};
use std::net::{Ipv4Addr, Ipv6Addr};

/// A small deterministic generator (xorshift64*), so every run benchmarks the same policy.
pub struct Gen(u64);

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Prefix lengths as block lists have them: mostly host routes, some /24s and wider.
fn v4_len(g: &mut Gen) -> u8 {
    match g.next_u64() % 100 {
        0..=69 => 32,
        70..=89 => 24,
        90..=96 => 16 + (g.next_u64() % 8) as u8,
        _ => 8 + (g.next_u64() % 8) as u8,
    }
}

fn v6_len(g: &mut Gen) -> u8 {
    match g.next_u64() % 100 {
        0..=59 => 128,
        60..=84 => 64,
        _ => 32 + (g.next_u64() % 32) as u8,
    }
}

/// `n_cidrs` IP rules (80% IPv4, 20% IPv6, avoiding 10.0.0.0/8 and fd00::/8 so the
/// "allowed" probe addresses stay unmatched), `n_keys` API key blocks, `n_pixels` pixel blocks.
pub fn policy(n_cidrs: usize, n_keys: usize, n_pixels: usize) -> Snapshot {
    let mut g = Gen::new(0x5eed_0000 + n_cidrs as u64);
    let mut rules = Vec::with_capacity(n_cidrs + n_keys + n_pixels);
    let mut id = 1u64;
    let mut push = |kind: RuleKind, rules: &mut Vec<Rule>| {
        rules.push(Rule {
            id,
            incident: Some(1),
            mode: Mode::Enforce,
            expires_at_ms: None,
            kind,
        });
        id += 1;
    };
    for i in 0..n_cidrs {
        let net = if i % 5 == 4 {
            let mut a = (g.next_u64() as u128) << 64 | g.next_u64() as u128;
            if a >> 120 == 0xfd {
                a ^= 1 << 127;
            }
            IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(a), v6_len(&mut g))
                    .unwrap_or_default()
                    .trunc(),
            )
        } else {
            let mut a = g.next_u64() as u32;
            if a >> 24 == 10 || (v4_len(&mut g) < 8) {
                a ^= 0x8000_0000;
            }
            let len = v4_len(&mut g);
            let net = Ipv4Net::new(Ipv4Addr::from(a), len)
                .unwrap_or_default()
                .trunc();
            if net.contains(&Ipv4Addr::new(10, 1, 2, 3)) {
                continue;
            }
            IpNet::V4(net)
        };
        push(RuleKind::Block(Target::Ip(net)), &mut rules);
    }
    for i in 0..n_keys {
        push(
            RuleKind::Block(Target::ApiKey(KeyHash::of(&format!("leaked-key-{i}")))),
            &mut rules,
        );
    }
    for i in 0..n_pixels {
        push(
            RuleKind::Block(Target::Pixel(format!("px-{i}"))),
            &mut rules,
        );
    }
    Snapshot { version: 1, rules }
}

/// `snap` with `n` path-prefix blocks (`/blocked-{i}`) and `n / 10` path isolations
/// (`/isolated-{i}/area`) added, so the request path canonicalises and looks up its path.
pub fn with_paths(mut snap: Snapshot, n: usize) -> Snapshot {
    let first = snap.rules.iter().map(|r| r.id).max().unwrap_or(0) + 1;
    for (i, id) in (0..n).zip(first..) {
        let kind = if i % 10 == 9 {
            RuleKind::Isolate {
                scope: edge_policy::Scope::PathPrefix(format!("/isolated-{i}/area")),
                action: edge_policy::Isolation::Block,
            }
        } else {
            RuleKind::Block(Target::PathPrefix(format!("/blocked-{i}")))
        };
        snap.rules.push(Rule {
            id,
            incident: Some(1),
            mode: Mode::Enforce,
            expires_at_ms: None,
            kind,
        });
    }
    snap
}

/// An address the generated IP rules of [`policy`] block (the first IPv4 host route).
pub fn blocked_v4(s: &Snapshot) -> std::net::IpAddr {
    s.rules
        .iter()
        .find_map(|r| match &r.kind {
            RuleKind::Block(Target::Ip(IpNet::V4(n))) if n.prefix_len() == 32 => {
                Some(n.addr().into())
            }
            _ => None,
        })
        .unwrap_or_else(|| Ipv4Addr::new(10, 1, 2, 3).into())
}

/// An address no generated rule covers.
pub const ALLOWED_V4: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 3);

/// Percentile (nearest rank) of sorted samples; `p` in 0..=100.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Median of unsorted samples (sorts them).
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    percentile(samples, 50.0).unwrap_or(f64::NAN)
}
