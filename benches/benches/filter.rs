//! Per-request cost of the real `edge_filter.wasm` in `edge-host`, side by side with the
//! native matcher on the same facts (the floor) and a no-op proxy-wasm filter in the same
//! host (the host's own cost).
//!
//!   cargo build --profile wasm-release --target wasm32-wasip1 -p edge-filter -p conformance-filter
//!   cargo bench -p edge-benches --bench filter
//!
//! Policies: N CIDR rules (80% IPv4, 20% IPv6, realistic prefix lengths) + 10k API keys +
//! 1k pixels + 1k path prefixes (blocks and isolations), N in {0, 1k, 100k, 1M}. One request = `on_request` (context create + request
//! headers + verdict) + `finish` (done/log/delete), as a proxy runs it.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use edge_benches::vmkit::{filter_plugin, noop_plugin, run_request, seed_policy, typical_request};
use edge_benches::{blocked_v4, policy, with_paths, ALLOWED_V4};
use edge_host::Vm;
use edge_policy::{wire, Facts, Matcher};
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

fn sizes() -> Vec<usize> {
    // EDGE_BENCH_SIZES=0,1000 for a quick run.
    match std::env::var("EDGE_BENCH_SIZES") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![0, 1_000, 100_000, 1_000_000],
    }
}

fn bench(c: &mut Criterion) {
    let noop = noop_plugin().unwrap_or_else(|e| panic!("{e:#}"));
    let mut noop_vm = Vm::start(&noop).expect("no-op VM starts");
    let allowed_head = typical_request(ALLOWED_V4.into());
    assert_eq!(run_request(&mut noop_vm, &allowed_head), 0);

    let mut group = c.benchmark_group("per_request");
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function(BenchmarkId::new("noop_filter", "any"), |b| {
        b.iter(|| run_request(&mut noop_vm, black_box(&allowed_head)))
    });

    for n in sizes() {
        let snap = with_paths(policy(n, 10_000, 1_000), 1_000);
        let blocked = blocked_v4(&snap);
        let blocked_head = typical_request(blocked);
        let m = Matcher::new(&snap);
        group.bench_with_input(BenchmarkId::new("native_allowed", n), &m, |b, m| {
            b.iter(|| m.evaluate(black_box(&facts(ALLOWED_V4.into())), 1))
        });
        if n > 0 {
            group.bench_with_input(BenchmarkId::new("native_blocked", n), &m, |b, m| {
                b.iter(|| m.evaluate(black_box(&facts(blocked)), 1))
            });
        }
        drop(m);

        let plugin = filter_plugin().unwrap_or_else(|e| panic!("{e:#}"));
        seed_policy(&plugin, &wire::encode_snapshot(&snap), snap.version).expect("seed");
        drop(snap);
        let mut vm = Vm::start(&plugin).expect("filter VM starts");
        assert_eq!(
            run_request(&mut vm, &allowed_head),
            0,
            "allowed request forwarded"
        );
        group.bench_function(BenchmarkId::new("filter_allowed", n), |b| {
            b.iter(|| run_request(&mut vm, black_box(&allowed_head)))
        });
        if n == 1_000 {
            // The same request without an API key: what hashing the key (SHA-256 in wasm) costs.
            let mut no_key = allowed_head.clone();
            no_key.headers.retain(|(k, _)| k != "x-api-key");
            group.bench_function(BenchmarkId::new("filter_allowed_no_api_key", n), |b| {
                b.iter(|| run_request(&mut vm, black_box(&no_key)))
            });
        }
        if n == 1_000 {
            // A spelling of the same path that needs canonicalising (`//api/./v1/%6Frders`).
            let mut odd = allowed_head.clone();
            odd.path = "//api/./v1/%6Frders?page=2".into();
            assert_eq!(run_request(&mut vm, &odd), 0, "still forwarded");
            group.bench_function(BenchmarkId::new("filter_allowed_obfuscated_path", n), |b| {
                b.iter(|| run_request(&mut vm, black_box(&odd)))
            });
        }
        if n > 0 {
            assert_eq!(
                run_request(&mut vm, &blocked_head),
                403,
                "blocked request gets 403"
            );
            group.bench_function(BenchmarkId::new("filter_blocked", n), |b| {
                b.iter(|| run_request(&mut vm, black_box(&blocked_head)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
