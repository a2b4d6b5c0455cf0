//! Propagation: "POST a block → first 403 at the edge", N trials, with long-poll and with a
//! plain fixed-interval poll (the baseline), against the real `control-plane` and
//! `edge-proxy` binaries on 127.0.0.1.
//!
//!   cargo build --release --bins
//!   cargo build --profile wasm-release --target wasm32-wasip1 -p edge-filter
//!   cargo run --release -p edge-benches --bin propagation [-- --trials 100]

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use edge_benches::percentile;
use edge_benches::stack::{
    block, create_token, open_incident, start_control_plane, start_edge, start_upstream,
};

/// How often the prober asks the edge while waiting for the 403.
const PROBE_EVERY: Duration = Duration::from_millis(2);
/// A trial that sees no 403 within this long counts as failed.
const TRIAL_LIMIT: Duration = Duration::from_secs(10);

async fn status_for(c: &reqwest::Client, edge: &str, ip: &str) -> Option<u16> {
    c.get(format!("{edge}/api/orders"))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn run(
    label: &str,
    long_poll_wait_s: u32,
    poll_interval_ms: u32,
    trials: usize,
) -> anyhow::Result<Vec<f64>> {
    let dir = edge_testkit::temp_dir("bench-prop")?;
    let (_cp_proc, cp, admin) = start_control_plane(dir.path())?;
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(8)
        .build()?;
    let edge_token = create_token(&c, &cp, &admin, "bench-edge", "edge").await?;
    let responder = create_token(&c, &cp, &admin, "bench-responder", "responder").await?;
    let incident = open_incident(&c, &cp, &responder).await?;
    let upstream = start_upstream().await?;
    let (_edge_proc, edge) = start_edge(
        dir.path(),
        &cp,
        &edge_token,
        upstream,
        long_poll_wait_s,
        poll_interval_ms,
    )?;
    // Wait until the edge enforces a policy: one action, seen as 403.
    let warm = "198.18.255.1";
    if !block(&c, &cp, &responder, incident, warm)
        .await?
        .is_success()
    {
        bail!("warm-up block refused");
    }
    let t = Instant::now();
    while status_for(&c, &edge, warm).await != Some(403) {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("edge never enforced the warm-up block");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut samples = Vec::with_capacity(trials);
    for i in 0..trials {
        let ip = format!("198.18.{}.{}", i / 250, i % 250 + 1);
        if status_for(&c, &edge, &ip).await != Some(200) {
            bail!("{ip} not allowed before its block");
        }
        // Start at a random phase relative to the poll cycle.
        tokio::time::sleep(Duration::from_millis((i as u64 * 37) % 250)).await;
        let t0 = Instant::now();
        let st = block(&c, &cp, &responder, incident, &ip).await?;
        if !st.is_success() {
            bail!("block {ip}: HTTP {st}");
        }
        loop {
            if status_for(&c, &edge, &ip).await == Some(403) {
                samples.push(t0.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if t0.elapsed() > TRIAL_LIMIT {
                bail!("{label}: trial {i} ({ip}) saw no 403 within {TRIAL_LIMIT:?}");
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }
    Ok(samples)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let trials: usize = args
        .iter()
        .position(|a| a == "--trials")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse())
        .transpose()
        .context("--trials")?
        .unwrap_or(100);
    println!("| sync | trials | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) |");
    println!("|---|---|---|---|---|---|");
    for (label, lp, interval) in [
        ("long-poll (wait 20 s)", 20, 1000),
        ("fixed poll every 1000 ms (long_poll_wait_s 0)", 0, 1000),
    ] {
        let mut s = run(label, lp, interval, trials).await?;
        s.sort_by(f64::total_cmp);
        let p = |q| percentile(&s, q).unwrap_or(f64::NAN);
        println!(
            "| {label} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            s.len(),
            p(50.0),
            p(95.0),
            p(99.0),
            p(100.0)
        );
    }
    Ok(())
}
