//! Sizing run, ignored by default (needs a release build to mean anything):
//!
//! `CARGO_TARGET_DIR=/work/tgt-policy cargo test --release -p edge-policy --test policy -- --ignored --nocapture million`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use edge_policy::{
    wire, Action, Facts, IpNet, Ipv4Net, Ipv6Net, Matcher, Mode, Rule, RuleKind, Snapshot, Target,
};

/// Counts live and peak heap bytes, so the figures are exact rather than RSS guesses.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn rng(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// `n` IP rules: 70% IPv4 (60% /32, 25% /24, 15% /16../32), 30% IPv6 (40% /128, 30% /64,
/// 20% /48, 10% /16../128). When `uniform`, lengths are uniform over /16../32 and /16../128
/// (every length in use: the slowest lookups).
fn rules(n: u64, uniform: bool) -> Vec<Rule> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (1..=n)
        .map(|id| {
            let r = rng(&mut s);
            let pick = r % 100;
            let net = if r % 10 < 7 {
                let len = if uniform {
                    16 + (r >> 32) as u8 % 17
                } else {
                    match pick {
                        0..60 => 32,
                        60..85 => 24,
                        _ => 16 + (r >> 32) as u8 % 17,
                    }
                };
                IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::from(rng(&mut s) as u32), len)
                        .unwrap_or_default()
                        .trunc(),
                )
            } else {
                let len = if uniform {
                    16 + (r >> 32) as u8 % 113
                } else {
                    match pick {
                        0..40 => 128,
                        40..70 => 64,
                        70..90 => 48,
                        _ => 16 + (r >> 32) as u8 % 113,
                    }
                };
                let a = (u128::from(rng(&mut s)) << 64) | u128::from(rng(&mut s));
                IpNet::V6(
                    Ipv6Net::new(Ipv6Addr::from(a), len)
                        .unwrap_or_default()
                        .trunc(),
                )
            };
            Rule {
                id,
                incident: Some(r % 12),
                mode: if r % 17 == 3 {
                    Mode::Simulate
                } else {
                    Mode::Enforce
                },
                expires_at_ms: (r & 1 == 0).then_some(1_900_000_000_000 + r % 1_000_000),
                kind: RuleKind::Block(Target::Ip(net)),
            }
        })
        .collect()
}

fn ns_per_op(m: &Matcher, f: &Facts<'_>) -> f64 {
    let iters = 1_000_000u32;
    let t = Instant::now();
    for _ in 0..iters {
        black_box(m.evaluate(black_box(f), 1_800_000_000_000));
    }
    t.elapsed().as_nanos() as f64 / f64::from(iters)
}

fn proc_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn run(uniform: bool) {
    let n = 1_000_000;
    let base = LIVE.load(Ordering::Relaxed);
    let snapshot = Snapshot {
        version: 1,
        rules: rules(n, uniform),
    };
    let snapshot_bytes = LIVE.load(Ordering::Relaxed) - base;
    let encoded = wire::encode_snapshot(&snapshot);
    let t = Instant::now();
    let decoded = wire::decode(&encoded);
    let decode_time = t.elapsed();
    drop(decoded);
    let probe_blocked = snapshot.rules.iter().find_map(|r| match (&r.kind, r.mode) {
        (RuleKind::Block(Target::Ip(IpNet::V4(n))), Mode::Enforce) if n.prefix_len() == 32 => {
            Some(IpAddr::V4(n.addr()))
        }
        _ => None,
    });
    let probe_blocked6 = snapshot.rules.iter().find_map(|r| match (&r.kind, r.mode) {
        (RuleKind::Block(Target::Ip(IpNet::V6(n))), Mode::Enforce) if n.prefix_len() == 128 => {
            Some(IpAddr::V6(n.addr()))
        }
        _ => None,
    });
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let t = Instant::now();
    let m = Matcher::new(&snapshot);
    let build = t.elapsed();
    let matcher_bytes = LIVE.load(Ordering::Relaxed) - before;
    let build_peak = PEAK.load(Ordering::Relaxed) - before;
    // The hashed layout (before issue #15), for comparison.
    let before_h = LIVE.load(Ordering::Relaxed);
    PEAK.store(before_h, Ordering::Relaxed);
    let t = Instant::now();
    let h = Matcher::new_hashed_layout(&snapshot);
    println!(
        "hashed layout: Matcher::new_hashed_layout {:?}; heap {:.1} MiB; peak {:.1} MiB",
        t.elapsed(),
        mib(LIVE.load(Ordering::Relaxed) - before_h),
        mib(PEAK.load(Ordering::Relaxed) - before_h)
    );
    drop(h);
    drop(snapshot);

    println!(
        "--- 1M IP rules ({}) ---",
        if uniform {
            "uniform lengths"
        } else {
            "realistic lengths"
        }
    );
    println!("size_of::<Rule>() = {} bytes", std::mem::size_of::<Rule>());
    println!(
        "decoded Snapshot: {:.1} MiB; encoded: {:.1} MiB, decode {:?}",
        mib(snapshot_bytes),
        mib(encoded.len()),
        decode_time
    );
    println!("Matcher::new: {build:?}; matcher heap {:.1} MiB ({:.1} B/rule; heap_bytes() says {:.1} MiB); peak during build {:.1} MiB over the snapshot", mib(matcher_bytes), matcher_bytes as f64 / n as f64, mib(m.heap_bytes()), mib(build_peak));
    println!(
        "process VmHWM {} VmRSS {}",
        proc_status("VmHWM"),
        proc_status("VmRSS")
    );
    drop(m);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let t = Instant::now();
    let m = match Matcher::decode_update(&encoded) {
        Ok(edge_policy::matcher::Update::Snapshot(m)) => *m,
        other => panic!("not a snapshot: {:?}", other.map(|_| ())),
    };
    println!(
        "Matcher::decode_update (streaming, from {:.1} MiB of bytes): {:?}; peak {:.1} MiB over the bytes; matcher {:.1} MiB",
        mib(encoded.len()),
        t.elapsed(),
        mib(PEAK.load(Ordering::Relaxed) - before),
        mib(LIVE.load(Ordering::Relaxed) - before),
    );
    drop(m);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let t = Instant::now();
    let mut pieces = edge_policy::matcher::SlicePieces {
        bytes: &encoded,
        len: edge_policy::shared::PART_LEN,
    };
    let m = match Matcher::decode_pieces(&mut pieces) {
        Ok(edge_policy::matcher::Update::Snapshot(m)) => *m,
        other => panic!("not a snapshot: {:?}", other.map(|_| ())),
    };
    println!(
        "Matcher::decode_pieces (1 MiB parts): {:?}; peak {:.1} MiB over the bytes; matcher {:.1} MiB",
        t.elapsed(),
        mib(PEAK.load(Ordering::Relaxed) - before),
        mib(LIVE.load(Ordering::Relaxed) - before),
    );
    drop(encoded);
    let mut s = 42u64;
    let mut allowed4 = None;
    let mut allowed6 = None;
    for _ in 0..100_000 {
        if allowed4.is_some() && allowed6.is_some() {
            break;
        }
        let a4 = IpAddr::V4(Ipv4Addr::from(rng(&mut s) as u32));
        let a6 = IpAddr::V6(Ipv6Addr::from(
            (u128::from(rng(&mut s)) << 64) | u128::from(rng(&mut s)),
        ));
        for (a, slot) in [(a4, &mut allowed4), (a6, &mut allowed6)] {
            let f = Facts {
                client_ip: Some(a),
                method: "GET",
                host: "h",
                path: "/a/b",
                ..Facts::default()
            };
            if slot.is_none() && m.evaluate(&f, 1_800_000_000_000).action == Action::Allow {
                *slot = Some(a);
            }
        }
    }
    for (label, a) in [
        ("allowed v4", allowed4),
        ("blocked v4", probe_blocked),
        ("allowed v6", allowed6),
        ("blocked v6", probe_blocked6),
    ] {
        let f = Facts {
            client_ip: a,
            method: "GET",
            host: "h",
            path: "/a/b",
            ..Facts::default()
        };
        let v = m.evaluate(&f, 1_800_000_000_000);
        println!(
            "evaluate {label} {a:?}: {:?} {:.0} ns/op",
            v.action,
            ns_per_op(&m, &f)
        );
    }
    let t = Instant::now();
    let back = m.to_snapshot();
    println!(
        "to_snapshot: {:?} ({} rules)",
        t.elapsed(),
        back.rules.len()
    );
    drop(back);
    let mut m2 = m.clone();
    let d = edge_policy::Delta {
        since: 1,
        version: 2,
        upserts: rules(1000, false)
            .into_iter()
            .map(|mut r| {
                r.id += 2_000_000;
                r
            })
            .collect(),
        removed: (1..=1000).collect(),
    };
    let t = Instant::now();
    let ok = m2.apply_delta(&d).is_ok();
    println!(
        "apply_delta (1000 upserts + 1000 removals): {:?} ok={ok}",
        t.elapsed()
    );
}

#[test]
#[ignore = "sizing run: a million rules; run with --release --ignored --nocapture"]
fn million_rules() {
    run(false);
    run(true);
}
