//! The native matcher: the floor for the filter's per-request cost. `hashed_*`: the same
//! policy with every network in the hashed layout (as before issue #15), for comparison.
//!   cargo bench -p edge-benches --bench matcher

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use edge_benches::{blocked_v4, policy, ALLOWED_V4};
use edge_policy::{Facts, Matcher};
use std::hint::black_box;

fn facts(ip: std::net::IpAddr) -> Facts<'static> {
    Facts {
        client_ip: Some(ip),
        method: "GET",
        host: "shop.example",
        path: "/api/v1/orders",
        api_key: Some("a-key-that-is-not-blocked"),
        account: None,
        pixel: None,
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("native_matcher");
    for n in [0usize, 1_000, 100_000, 1_000_000] {
        let snap = policy(n, 10_000, 1_000);
        let m = Matcher::new(&snap);
        let blocked = blocked_v4(&snap);
        group.bench_with_input(BenchmarkId::new("allowed", n), &m, |b, m| {
            b.iter(|| m.evaluate(black_box(&facts(ALLOWED_V4.into())), 1))
        });
        group.bench_with_input(BenchmarkId::new("blocked", n), &m, |b, m| {
            b.iter(|| m.evaluate(black_box(&facts(blocked)), 1))
        });
        drop(m);
        let h = Matcher::new_hashed_layout(&snap);
        group.bench_with_input(BenchmarkId::new("hashed_allowed", n), &h, |b, m| {
            b.iter(|| m.evaluate(black_box(&facts(ALLOWED_V4.into())), 1))
        });
        group.bench_with_input(BenchmarkId::new("hashed_blocked", n), &h, |b, m| {
            b.iter(|| m.evaluate(black_box(&facts(blocked)), 1))
        });
    }
    group.finish();

    // The path canonicaliser alone: an already canonical path (borrowed, the common case),
    // one to rewrite, and an ambiguous one with several readings.
    let mut canon = c.benchmark_group("canonical_path");
    for (name, path) in [
        ("canonical", "/api/v1/orders"),
        ("rewritten", "//api/./v1/%6Frders"),
        ("ambiguous", "/public/..%2Fadmin/%252e%252e/x"),
    ] {
        canon.bench_function(name, |b| {
            b.iter(|| edge_policy::canon::canonical_path(black_box(path)))
        });
    }
    canon.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
