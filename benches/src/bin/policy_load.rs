//! Policy load inside the VM: a snapshot delivered to the filter's sync callout (host copy,
//! decode, index, publish to shared data), the VM's linear memory afterwards, a 100-rule
//! delta, and the other VMs adopting the shared policy. Also the wire encodings compared.
//!
//!   cargo run --release -p edge-benches --bin policy_load [-- --sizes 100000,1000000 --repeat 3 --strict-cas]
//!
//! `EDGE_FILTER_WASM=old.wasm EDGE_BENCH_UNSEALED=1` measures a filter built before policy
//! answers were signed, for a side-by-side baseline.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use edge_benches::vmkit::{
    filter_plugin_with, run_request, typical_request, DELTAS_KEY, VERSION_KEY,
};
use edge_benches::{blocked_v4, median, policy, Gen};
use edge_host::{HttpCallResponse, Plugin, Vm};
use edge_policy::{wire, IpNet, Ipv4Net, Matcher, Mode, Rule, RuleKind, Target};
use std::net::Ipv4Addr;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// The token of the sync callout the leader VM has dispatched (after a timer run).
fn sync_token(vm: &mut Vm) -> anyhow::Result<u32> {
    for attempt in 1..=3 {
        let calls = vm.take_http_calls();
        if let Some(c) = calls.iter().find(|c| {
            c.headers
                .iter()
                .any(|(k, v)| k == ":path" && v.contains("/v1/edge/policy"))
        }) {
            return Ok(c.token);
        }
        // Each run schedules the next tick one period after the time given, so a later call
        // must give a later time (an hour more per attempt) or the tick is not due yet.
        vm.run_due_timers(Instant::now() + Duration::from_secs(3600 * attempt))?;
    }
    bail!("the filter dispatched no policy sync call")
}

/// Deliver `body` (a bare policy message) as the control plane answers it: sealed (unless
/// `EDGE_BENCH_UNSEALED` is set, for a filter built before answers were signed). The time
/// measured includes the seal's checks (signature, digest) as well as the decoding.
fn deliver(vm: &mut Vm, body: Vec<u8>) -> anyhow::Result<Duration> {
    let body = if std::env::var_os("EDGE_BENCH_UNSEALED").is_some() {
        body
    } else {
        edge_testkit::sealed(&body)
    };
    let token = sync_token(vm)?;
    let resp = HttpCallResponse::new(
        200,
        vec![("content-type".into(), wire::CONTENT_TYPE.into())],
        body,
    );
    let t = Instant::now();
    vm.deliver_http_call_response(token, Some(resp))?;
    Ok(t.elapsed())
}

fn shared_version(p: &Plugin) -> u64 {
    p.shared_data_get(VERSION_KEY)
        .and_then(|(v, _)| edge_policy::shared::Announcement::decode(&v))
        .map_or(0, |a| a.version)
}

fn delta_100(since: u64, first_id: u64, remove_from: u64) -> Vec<u8> {
    let mut g = Gen::new(since + 7);
    let upserts = (0..50)
        .map(|i| Rule {
            id: first_id + i,
            incident: Some(2),
            mode: Mode::Enforce,
            expires_at_ms: None,
            kind: RuleKind::Block(Target::Ip(IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(0xc000_0000 | (g.next_u64() as u32 >> 2)), 32)
                    .unwrap_or_default(),
            ))),
        })
        .collect();
    let removed = (remove_from..remove_from + 50).collect();
    wire::encode_delta(&wire::Delta {
        since,
        version: since + 1,
        upserts,
        removed,
    })
}

struct Row {
    n: usize,
    bytes: usize,
    load: Vec<f64>,
    mem_before: usize,
    mem_after: usize,
    delta: Vec<f64>,
    follower_delta: Vec<f64>,
    adopt_start: Vec<f64>,
    mem_after_delta: usize,
    mem_follower: usize,
}

fn run(n: usize, repeat: usize, strict_cas: bool) -> anyhow::Result<Row> {
    let snap = policy(n, 10_000, 1_000);
    let body = wire::encode_snapshot(&snap);
    let blocked = typical_request(blocked_v4(&snap));
    let total_rules = snap.rules.len() as u64;
    drop(snap);
    let mut row = Row {
        n,
        bytes: body.len(),
        load: vec![],
        mem_before: 0,
        mem_after: 0,
        delta: vec![],
        follower_delta: vec![],
        adopt_start: vec![],
        mem_after_delta: 0,
        mem_follower: 0,
    };
    for _ in 0..repeat {
        // Long callbacks allowed here so the measurement shows the time, not a trap.
        let plugin = filter_plugin_with(|o| {
            o.callback_deadline = Duration::from_secs(30);
            o.strict_cas = strict_cas;
        })?;
        let mut leader = Vm::start(&plugin)?;
        row.mem_before = leader.memory_bytes();
        row.load.push(ms(deliver(&mut leader, body.clone())?));
        row.mem_after = leader.memory_bytes();
        if shared_version(&plugin) != 1 || (n > 0 && run_request(&mut leader, &blocked) != 403) {
            bail!("snapshot not enforced / not published");
        }
        // Another worker starting now adopts the shared snapshot in on_configure.
        let t = Instant::now();
        let mut follower = Vm::start(&plugin)?;
        row.adopt_start.push(ms(t.elapsed()));
        row.mem_follower = follower.memory_bytes();
        if n > 0 && run_request(&mut follower, &blocked) != 403 {
            bail!("follower does not enforce the shared policy");
        }
        // A 100-rule delta (50 upserts, 50 removals) at the leader...
        let d = delta_100(1, total_rules + 1_000, 1_000);
        row.delta
            .push(ms(deliver(&mut leader, d).context("delta")?));
        row.mem_after_delta = leader.memory_bytes();
        if shared_version(&plugin) != 2 {
            bail!("delta not published");
        }
        if std::env::var_os("POLICY_LOAD_DEBUG").is_some() {
            let d = plugin
                .shared_data_get(DELTAS_KEY)
                .map(|(v, c)| (v.len(), c));
            let v = plugin.shared_data_get(VERSION_KEY);
            eprintln!("deltas key: {d:?}, version key: {v:?}");
            for l in plugin.logs().iter().rev().take(8) {
                eprintln!("  [{:?}] {}", l.level, l.message);
            }
        }
        // ... and the follower picking it up on its next tick.
        let t = Instant::now();
        follower.run_due_timers(Instant::now() + Duration::from_secs(3600))?;
        row.follower_delta.push(ms(t.elapsed()));
        let _ = follower.take_http_calls();
    }
    Ok(row)
}

fn encodings(n: usize) -> anyhow::Result<()> {
    let snap = policy(n, 10_000, 1_000);
    let bin = wire::encode_snapshot(&snap);
    let t = Instant::now();
    let json = serde_json::to_vec(&snap)?;
    let json_enc = t.elapsed();
    let t = Instant::now();
    let _ = Matcher::decode_update(&bin)?;
    let bin_dec = t.elapsed();
    let t = Instant::now();
    let back: edge_policy::Snapshot = serde_json::from_slice(&json)?;
    let m = Matcher::from_snapshot(back);
    let json_dec = t.elapsed();
    println!(
        "| {n} CIDR + 11k | {:.1} MiB | {:.0} ms | {:.1} MiB | {:.0} ms (encode {:.0} ms) | native |",
        mib(bin.len()),
        ms(bin_dec),
        mib(json.len()),
        ms(json_dec),
        ms(json_enc)
    );
    drop(m);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let sizes: Vec<usize> = arg("--sizes")
        .unwrap_or_else(|| "0,1000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    // --strict-cas: shared data as in Kong's ngx_wasm_module (CAS 0 on an existing key fails).
    let strict_cas = args.iter().any(|a| a == "--strict-cas");
    let repeat: usize = arg("--repeat").and_then(|s| s.parse().ok()).unwrap_or(3);

    println!("## wire encodings (native decode+index into a Matcher)\n");
    println!("| policy | binary (postcard) | decode+index | JSON | decode+index | where |");
    println!("|---|---|---|---|---|---|");
    for &n in sizes.iter().filter(|&&n| n >= 100_000) {
        encodings(n)?;
    }
    println!("\n## policy load in the VM (edge_filter.wasm in edge-host), median of {repeat}\n");
    println!("| CIDR rules (+10k keys, 1k pixels) | snapshot bytes | snapshot fetched→enforced (ms) | VM memory before → after load | 100-rule delta at leader (ms) | follower adopts delta on tick (ms) | new VM start adopting snapshot (ms) | its VM memory | leader VM memory after delta |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let mut r = run(n, repeat, strict_cas)?;
        println!(
            "| {} | {:.1} MiB | {:.1} (runs {:?}) | {:.1} → {:.1} MiB | {:.2} (runs {:?}) | {:.2} | {:.1} | {:.1} MiB | {:.1} MiB |",
            r.n,
            mib(r.bytes),
            median(&mut r.load),
            r.load.iter().map(|x| x.round() as i64).collect::<Vec<_>>(),
            mib(r.mem_before),
            mib(r.mem_after),
            median(&mut r.delta),
            r.delta.iter().map(|x| (x * 100.0).round() / 100.0).collect::<Vec<_>>(),
            median(&mut r.follower_delta),
            median(&mut r.adopt_start),
            mib(r.mem_follower),
            mib(r.mem_after_delta),
        );
    }
    Ok(())
}
