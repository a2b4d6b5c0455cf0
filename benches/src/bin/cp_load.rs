//! Control-plane load: N concurrent long-polling edges plus a fixed rate of containment
//! writes against the real `control-plane` binary (SQLite) on 127.0.0.1.
//!
//!   cargo build --release --bins
//!   cargo run --release -p edge-benches --bin cp_load [-- --edges 100,1000,5000 --rate 50 --secs 60]
//!
//! Each edge loops `GET /v1/edge/policy?since=V&wait=30` with an edge token, as the filter's
//! sync leader does (next poll at once after an answer). Writes are open-loop: one
//! `POST /v1/incidents/{id}/actions` (block a fresh address) every 1/rate s, each timed on
//! its own, from a thread and runtime of its own (so a write is not queued behind the
//! generator's poll tasks). Errors: any write that is not 201/200, any poll that is not
//! 200/304, any transport error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_benches::percentile;
use edge_benches::stack::{
    block, create_token, open_incident, raise_fd_limit, rss_kib, start_control_plane,
};

#[derive(Default)]
struct Counters {
    polls_200: AtomicU64,
    polls_304: AtomicU64,
    poll_errors: AtomicU64,
    write_errors: AtomicU64,
}

struct Report {
    edges: usize,
    writes: usize,
    p50: f64,
    p99: f64,
    max: f64,
    write_errors: u64,
    poll_errors: u64,
    polls_200: u64,
    polls_304: u64,
    rss_start_mib: f64,
    rss_peak_mib: f64,
    connected: u64,
    first_error: Option<String>,
}

async fn edge_loop(
    c: reqwest::Client,
    url: String,
    token: Arc<str>,
    stop: Arc<AtomicBool>,
    k: Arc<Counters>,
    connected: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
) {
    let mut since = 0u64;
    let mut counted = false;
    while !stop.load(Ordering::Relaxed) {
        let r = c
            .get(format!("{url}/v1/edge/policy?since={since}&wait=30"))
            .bearer_auth(&*token)
            .send()
            .await;
        match r {
            Ok(r) if r.status().as_u16() == 200 => {
                if let Some(v) = r
                    .headers()
                    .get("x-policy-version")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                {
                    since = v;
                }
                let _ = r.bytes().await;
                k.polls_200.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) if r.status().as_u16() == 304 => {
                k.polls_304.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                k.poll_errors.fetch_add(1, Ordering::Relaxed);
                first_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(format!("poll HTTP {}", r.status()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                k.poll_errors.fetch_add(1, Ordering::Relaxed);
                first_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(format!("poll: {e:#}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if !counted && since > 0 {
            counted = true;
            connected.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Open-loop writes: one block every 1/rate s for `secs`, each timed on its own; returns the
/// latencies (ms) of the successful ones.
async fn write_loop(
    cp: String,
    responder: String,
    incident: u64,
    rate: u32,
    secs: u64,
    k: Arc<Counters>,
    first_error: Arc<Mutex<Option<String>>>,
) -> anyhow::Result<Vec<f64>> {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(45))
        .build()?;
    let lat = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = rate as u64 * secs;
    let mut writes = Vec::with_capacity(total as usize);
    for i in 0..total {
        tick.tick().await;
        let (c, cp, responder, lat, k, fe) = (
            c.clone(),
            cp.clone(),
            responder.clone(),
            lat.clone(),
            k.clone(),
            first_error.clone(),
        );
        writes.push(tokio::spawn(async move {
            let ip = format!(
                "100.{}.{}.{}",
                64 + i / 65_000,
                (i / 250) % 260 % 256,
                i % 250 + 1
            );
            let t = Instant::now();
            match block(&c, &cp, &responder, incident, &ip).await {
                Ok(s) if s.is_success() => lat
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(t.elapsed().as_secs_f64() * 1e3),
                Ok(s) => {
                    k.write_errors.fetch_add(1, Ordering::Relaxed);
                    fe.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(format!("write {ip}: HTTP {s}"));
                }
                Err(e) => {
                    k.write_errors.fetch_add(1, Ordering::Relaxed);
                    fe.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(format!("write {ip}: {e:#}"));
                }
            }
        }));
    }
    for w in writes {
        let _ = w.await;
    }
    let l = std::mem::take(&mut *lat.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(l)
}

async fn run(edges: usize, rate: u32, secs: u64) -> anyhow::Result<Report> {
    let dir = edge_testkit::temp_dir("bench-cpload")?;
    let (cp_proc, cp, admin) = start_control_plane(dir.path())?;
    let pid = cp_proc.pid();
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(edges + 64)
        .timeout(Duration::from_secs(45))
        .build()?;
    let edge_token: Arc<str> = create_token(&c, &cp, &admin, "bench-edge", "edge")
        .await?
        .into();
    let responder = create_token(&c, &cp, &admin, "bench-responder", "responder").await?;
    let incident = open_incident(&c, &cp, &responder).await?;
    // A first action so there is a policy version to long-poll on.
    block(&c, &cp, &responder, incident, "198.19.255.254").await?;
    let rss_start = rss_kib(pid).map_or(0, |r| r.0);

    let stop = Arc::new(AtomicBool::new(false));
    let k = Arc::new(Counters::default());
    let connected = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None));
    let mut pollers = Vec::with_capacity(edges);
    for _ in 0..edges {
        pollers.push(tokio::spawn(edge_loop(
            c.clone(),
            cp.clone(),
            edge_token.clone(),
            stop.clone(),
            k.clone(),
            connected.clone(),
            first_error.clone(),
        )));
    }
    // Let every edge reach its long-poll.
    let t = Instant::now();
    while (connected.load(Ordering::Relaxed) as usize) < edges
        && t.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connected_n = connected.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The writer runs on its own thread and runtime with its own client, so a write's
    // time is not spent queued behind the generator's own 1,000+ poll tasks (which share
    // the same two cores); it is still open-loop and times every write.
    let writer = {
        let (cp, responder, k, fe) = (
            cp.clone(),
            responder.clone(),
            k.clone(),
            first_error.clone(),
        );
        std::thread::Builder::new()
            .name("cp-load-writer".into())
            .spawn(move || -> anyhow::Result<Vec<f64>> {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(write_loop(cp, responder, incident, rate, secs, k, fe))
            })?
    };
    let mut rss_peak = rss_start;
    while !writer.is_finished() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some((rss, _)) = rss_kib(pid) {
            rss_peak = rss_peak.max(rss);
        }
    }
    let mut l = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
    if let Some((rss, hwm)) = rss_kib(pid) {
        rss_peak = rss_peak.max(rss).max(hwm);
    }
    stop.store(true, Ordering::Relaxed);
    drop(cp_proc); // ends the long-polls
    for p in pollers {
        let _ = p.await;
    }
    l.sort_by(f64::total_cmp);
    let p = |q| percentile(&l, q).unwrap_or(f64::NAN);
    let first_error = first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(Report {
        edges,
        writes: l.len(),
        p50: p(50.0),
        p99: p(99.0),
        max: p(100.0),
        write_errors: k.write_errors.load(Ordering::Relaxed),
        poll_errors: k.poll_errors.load(Ordering::Relaxed),
        polls_200: k.polls_200.load(Ordering::Relaxed),
        polls_304: k.polls_304.load(Ordering::Relaxed),
        rss_start_mib: rss_start as f64 / 1024.0,
        rss_peak_mib: rss_peak as f64 / 1024.0,
        connected: connected_n,
        first_error,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let edges: Vec<usize> = arg("--edges")
        .unwrap_or_else(|| "100,1000,5000".into())
        .split(',')
        .map(|s| s.parse().context("--edges"))
        .collect::<Result<_, _>>()?;
    let rate: u32 = arg("--rate")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50)
        .max(1);
    let secs: u64 = arg("--secs")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(60)
        .clamp(1, 600);
    let fds = raise_fd_limit();
    eprintln!("open-file limit {fds}");
    println!("| edges (long-polling) | writes/s × s | writes ok | write p50 (ms) | write p99 (ms) | write max (ms) | write errors | poll errors | policy answers 200 / 304 | CP RSS start → peak (MiB) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for n in edges {
        let r = run(n, rate, secs).await?;
        println!(
            "| {} ({} connected) | {rate} × {secs} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} / {} | {:.0} → {:.0} |",
            r.edges, r.connected, r.writes, r.p50, r.p99, r.max, r.write_errors, r.poll_errors, r.polls_200, r.polls_304, r.rss_start_mib, r.rss_peak_mib
        );
        if let Some(e) = r.first_error {
            println!("|  first error: {e} |||||||||");
        }
    }
    Ok(())
}
