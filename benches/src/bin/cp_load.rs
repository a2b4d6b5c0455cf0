//! Control-plane load: N concurrent long-polling edges plus a fixed rate of containment
//! writes against the real `control-plane` binary on 127.0.0.1, on SQLite (one process) or
//! on PostgreSQL (a throwaway cluster, several replicas on one database).
//!
//!   cargo build --release --bins
//!   target/release/cp_load [--edges 100,1000,5000] [--rate 50] [--secs 60]
//!       [--backends sqlite,postgres | --backend sqlite] [--replicas 2] [--drain-secs 10]
//!
//! Each edge loops `GET /v1/edge/policy?since=V&wait=30` with an edge token, as the filter's
//! sync leader does (next poll at once after an answer). Writes are open-loop: one
//! `POST /v1/incidents/{id}/actions` (block a fresh address) every 1/rate s, each timed on
//! its own, from a thread and runtime of its own (so a write is not queued behind the
//! generator's poll tasks). Errors: any write that is not 201/200, any poll that is not
//! 200/304, any transport error.
//!
//! On PostgreSQL, `--replicas` control planes serve the same database; edge i polls replica
//! i mod R and write i goes to replica i mod R (round-robin both), so most changes reach
//! most edges through the other replica (LISTEN/NOTIFY).
//!
//! Propagation: each write's `created_version` and the instant its 201 arrived; each edge's
//! answers (the `x-policy-version` header, the instant the body was read). For each write,
//! the time from its 201 until the last edge has an answer with a version at least that
//! write's (0 when every edge had it before the 201 arrived). After the last write the
//! edges go on polling until each has the last version (at most `--drain-secs`); a write
//! some edge never saw is counted as unreached, not timed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_benches::percentile;
use edge_benches::stack::{
    block, block_versioned, cpu_secs, create_token, open_incident, own_cpu_secs, postmaster_pid,
    pss_kib, raise_fd_limit, rss_kib, start_control_plane, start_control_plane_replicas,
    with_children,
};
use edge_testkit::postgres::PgCluster;
use edge_testkit::Proc;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Default)]
struct Counters {
    polls_200: AtomicU64,
    polls_304: AtomicU64,
    poll_errors: AtomicU64,
    write_errors: AtomicU64,
}

struct Report {
    backend: Backend,
    replicas: usize,
    edges: usize,
    writes: usize,
    p50: f64,
    p99: f64,
    max: f64,
    write_errors: u64,
    poll_errors: u64,
    polls_200: u64,
    polls_304: u64,
    /// Per replica: (start, peak) in MiB.
    rss_mib: Vec<(f64, f64)>,
    /// PostgreSQL's processes, PSS summed: (start, peak) in MiB.
    pg_pss_mib: Option<(f64, f64)>,
    connected: u64,
    /// Propagation to the last edge, ms: p50, p99, max (over writes every edge saw).
    prop: (f64, f64, f64),
    /// Writes some edge never saw, and (write, edge) pairs missing.
    unreached_writes: usize,
    unreached_pairs: u64,
    /// CPU seconds from the first write to the end of the drain: generator, replicas
    /// (each), PostgreSQL (all its processes).
    cpu_gen: f64,
    cpu_cp: Vec<f64>,
    cpu_pg: Option<f64>,
    window_s: f64,
    first_error: Option<String>,
}

/// Answers of one edge: (policy version, instant the answer was read), versions rising.
type Seen = Vec<(u64, Instant)>;

#[allow(clippy::too_many_arguments)]
async fn edge_loop(
    c: reqwest::Client,
    url: String,
    token: Arc<str>,
    stop: Arc<AtomicBool>,
    k: Arc<Counters>,
    connected: Arc<AtomicU64>,
    latest: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
) -> Seen {
    let mut since = 0u64;
    let mut counted = false;
    let mut seen = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let r = c
            .get(format!("{url}/v1/edge/policy?since={since}&wait=30"))
            .bearer_auth(&*token)
            .send()
            .await;
        match r {
            Ok(r) if r.status().as_u16() == 200 => {
                let v: Option<u64> = r
                    .headers()
                    .get("x-policy-version")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let _ = r.bytes().await;
                if let Some(v) = v {
                    if v > since || seen.is_empty() {
                        seen.push((v, Instant::now()));
                        latest.store(v, Ordering::Relaxed);
                    }
                    since = v;
                }
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
    seen
}

/// A successful write: latency (ms), instant of its 201, the version it created.
type Written = (f64, Instant, Option<u64>);

/// Open-loop writes: one block every 1/rate s for `secs`, write i to replica i mod R, each
/// timed on its own; returns the successful ones.
async fn write_loop(
    cps: Vec<String>,
    responder: String,
    incident: u64,
    rate: u32,
    secs: u64,
    k: Arc<Counters>,
    first_error: Arc<Mutex<Option<String>>>,
) -> anyhow::Result<Vec<Written>> {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(45))
        .build()?;
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = rate as u64 * secs;
    let mut writes = Vec::with_capacity(total as usize);
    for i in 0..total {
        tick.tick().await;
        let (c, cp, responder, done, k, fe) = (
            c.clone(),
            cps[i as usize % cps.len()].clone(),
            responder.clone(),
            done.clone(),
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
            match block_versioned(&c, &cp, &responder, incident, &ip).await {
                Ok((s, at, v)) if s.is_success() => done
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(((at - t).as_secs_f64() * 1e3, at, v)),
                Ok((s, _, _)) => {
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
    let l = std::mem::take(&mut *done.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(l)
}

/// The control planes under test. Fields drop in order: the replicas before the cluster.
struct Deployment {
    procs: Vec<Proc>,
    urls: Vec<String>,
    admin: String,
    pg: Option<PgCluster>,
    _dir: edge_testkit::TempDir,
}

fn deploy(backend: Backend, replicas: usize) -> anyhow::Result<Deployment> {
    let dir = edge_testkit::temp_dir("bench-cpload")?;
    match backend {
        Backend::Sqlite => {
            let (p, url, admin) = start_control_plane(dir.path())?;
            Ok(Deployment {
                procs: vec![p],
                urls: vec![url],
                admin,
                pg: None,
                _dir: dir,
            })
        }
        Backend::Postgres => {
            let pg = PgCluster::start().context("starting a PostgreSQL cluster")?;
            let db = pg.create_database()?;
            let (procs, urls, admin) = start_control_plane_replicas(&db, replicas)?;
            Ok(Deployment {
                procs,
                urls,
                admin,
                pg: Some(pg),
                _dir: dir,
            })
        }
    }
}

fn pg_pss_kib(postmaster: u32) -> u64 {
    with_children(postmaster)
        .into_iter()
        .filter_map(pss_kib)
        .sum()
}

fn pg_cpu_secs(postmaster: u32) -> f64 {
    with_children(postmaster)
        .into_iter()
        .filter_map(cpu_secs)
        .sum()
}

async fn run(
    backend: Backend,
    replicas: usize,
    edges: usize,
    rate: u32,
    secs: u64,
    drain_secs: u64,
) -> anyhow::Result<Report> {
    let mut d = deploy(backend, replicas)?;
    let pids: Vec<u32> = d.procs.iter().map(|p| p.pid()).collect();
    let postmaster = match &d.pg {
        Some(pg) => Some(postmaster_pid(pg)?),
        None => None,
    };
    let cp0 = d.urls[0].clone();
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(edges + 64)
        .timeout(Duration::from_secs(45))
        .build()?;
    let edge_token: Arc<str> = create_token(&c, &cp0, &d.admin, "bench-edge", "edge")
        .await?
        .into();
    let responder = create_token(&c, &cp0, &d.admin, "bench-responder", "responder").await?;
    let incident = open_incident(&c, &cp0, &responder).await?;
    // A first action so there is a policy version to long-poll on.
    block(&c, &cp0, &responder, incident, "198.19.255.254").await?;
    let rss_start: Vec<u64> = pids
        .iter()
        .map(|&p| rss_kib(p).map_or(0, |r| r.0))
        .collect();
    let pg_pss_start = postmaster.map(pg_pss_kib);

    let stop = Arc::new(AtomicBool::new(false));
    let k = Arc::new(Counters::default());
    let connected = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None));
    let latest: Vec<Arc<AtomicU64>> = (0..edges).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut pollers = Vec::with_capacity(edges);
    for (i, l) in latest.iter().enumerate() {
        pollers.push(tokio::spawn(edge_loop(
            c.clone(),
            d.urls[i % d.urls.len()].clone(),
            edge_token.clone(),
            stop.clone(),
            k.clone(),
            connected.clone(),
            l.clone(),
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

    let cpu0 = (
        own_cpu_secs(),
        pids.iter()
            .map(|&p| cpu_secs(p).unwrap_or(f64::NAN))
            .collect::<Vec<_>>(),
        postmaster.map(pg_cpu_secs),
    );
    let window = Instant::now();
    // The writer runs on its own thread and runtime with its own client, so a write's
    // time is not spent queued behind the generator's own 1,000+ poll tasks (which share
    // the same two cores); it is still open-loop and times every write.
    let writer = {
        let (cps, responder, k, fe) = (
            d.urls.clone(),
            responder.clone(),
            k.clone(),
            first_error.clone(),
        );
        std::thread::Builder::new()
            .name("cp-load-writer".into())
            .spawn(move || -> anyhow::Result<Vec<Written>> {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(write_loop(cps, responder, incident, rate, secs, k, fe))
            })?
    };
    let mut rss_peak = rss_start.clone();
    let mut pg_pss_peak = pg_pss_start.unwrap_or(0);
    let sample = |rss_peak: &mut Vec<u64>, pg_pss_peak: &mut u64| {
        for (i, &p) in pids.iter().enumerate() {
            if let Some((rss, hwm)) = rss_kib(p) {
                rss_peak[i] = rss_peak[i].max(rss).max(hwm);
            }
        }
        if let Some(pm) = postmaster {
            *pg_pss_peak = (*pg_pss_peak).max(pg_pss_kib(pm));
        }
    };
    while !writer.is_finished() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sample(&mut rss_peak, &mut pg_pss_peak);
    }
    let mut w = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
    // Drain: until every edge has the last version written (or `drain_secs`).
    let last = w.iter().filter_map(|x| x.2).max().unwrap_or(0);
    let t = Instant::now();
    while latest.iter().any(|l| l.load(Ordering::Relaxed) < last)
        && t.elapsed() < Duration::from_secs(drain_secs)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sample(&mut rss_peak, &mut pg_pss_peak);
    let window_s = window.elapsed().as_secs_f64();
    let cpu_gen = own_cpu_secs() - cpu0.0;
    let cpu_cp: Vec<f64> = pids
        .iter()
        .zip(&cpu0.1)
        .map(|(&p, c0)| cpu_secs(p).unwrap_or(f64::NAN) - c0)
        .collect();
    let cpu_pg = postmaster.zip(cpu0.2).map(|(pm, c0)| pg_cpu_secs(pm) - c0);
    stop.store(true, Ordering::Relaxed);
    drop(std::mem::take(&mut d.procs)); // ends the long-polls
    let mut seen: Vec<Seen> = Vec::with_capacity(edges);
    for p in pollers {
        seen.push(p.await.unwrap_or_default());
    }
    drop(d);

    // Propagation: for each write, its 201 to the last edge's first answer at or above it.
    let mut prop = Vec::with_capacity(w.len());
    let (mut unreached_writes, mut unreached_pairs) = (0usize, 0u64);
    for &(_, at, v) in &w {
        let Some(v) = v else {
            unreached_writes += 1;
            continue;
        };
        let mut worst = 0f64;
        let mut missing = 0u64;
        for s in &seen {
            let i = s.partition_point(|(sv, _)| *sv < v);
            match s.get(i) {
                Some((_, t)) => {
                    worst = worst.max(t.saturating_duration_since(at).as_secs_f64() * 1e3)
                }
                None => missing += 1,
            }
        }
        if missing > 0 {
            unreached_writes += 1;
            unreached_pairs += missing;
        } else {
            prop.push(worst);
        }
    }
    prop.sort_by(f64::total_cmp);
    let pp = |q| percentile(&prop, q).unwrap_or(f64::NAN);

    let mut l: Vec<f64> = w.drain(..).map(|x| x.0).collect();
    l.sort_by(f64::total_cmp);
    let p = |q| percentile(&l, q).unwrap_or(f64::NAN);
    let first_error = first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mib = |k: u64| k as f64 / 1024.0;
    Ok(Report {
        backend,
        replicas: pids.len(),
        edges,
        writes: l.len(),
        p50: p(50.0),
        p99: p(99.0),
        max: p(100.0),
        write_errors: k.write_errors.load(Ordering::Relaxed),
        poll_errors: k.poll_errors.load(Ordering::Relaxed),
        polls_200: k.polls_200.load(Ordering::Relaxed),
        polls_304: k.polls_304.load(Ordering::Relaxed),
        rss_mib: rss_start
            .iter()
            .zip(&rss_peak)
            .map(|(&a, &b)| (mib(a), mib(b)))
            .collect(),
        pg_pss_mib: pg_pss_start.map(|s| (mib(s), mib(pg_pss_peak))),
        connected: connected_n,
        prop: (pp(50.0), pp(99.0), pp(100.0)),
        unreached_writes,
        unreached_pairs,
        cpu_gen,
        cpu_cp,
        cpu_pg,
        window_s,
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
    let drain_secs: u64 = arg("--drain-secs")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10);
    let replicas: usize = arg("--replicas")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2)
        .max(1);
    let backends: Vec<Backend> = arg("--backends")
        .or_else(|| arg("--backend"))
        .unwrap_or_else(|| "sqlite".into())
        .split(',')
        .map(|s| match s.trim() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            o => Err(anyhow::anyhow!(
                "--backends: unknown backend {o:?} (sqlite, postgres)"
            )),
        })
        .collect::<Result<_, _>>()?;
    let fds = raise_fd_limit();
    eprintln!("open-file limit {fds}");
    println!("| backend (replicas) | edges (long-polling) | writes/s × s | writes ok | write p50 (ms) | write p99 (ms) | write max (ms) | write errors | poll errors | policy answers 200 / 304 | propagation to last edge p50 / p99 / max (ms) | writes not seen by every edge | CP RSS start → peak (MiB), per replica | PostgreSQL PSS start → peak (MiB) | CPU s over the run: generator / CP / PostgreSQL |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for n in edges {
        for &b in &backends {
            let reps = if b == Backend::Sqlite { 1 } else { replicas };
            eprintln!("running {} ({reps}) with {n} edges", b.name());
            let r = run(b, reps, n, rate, secs, drain_secs).await?;
            let rss = r
                .rss_mib
                .iter()
                .map(|(a, b)| format!("{a:.0} → {b:.0}"))
                .collect::<Vec<_>>()
                .join("; ");
            let pg = r
                .pg_pss_mib
                .map_or("–".into(), |(a, b)| format!("{a:.0} → {b:.0}"));
            let cpu_cp = r
                .cpu_cp
                .iter()
                .map(|c| format!("{c:.1}"))
                .collect::<Vec<_>>()
                .join(" + ");
            let cpu_pg = r.cpu_pg.map_or("–".into(), |c| format!("{c:.1}"));
            let unreached = if r.unreached_writes == 0 {
                "0".to_string()
            } else {
                format!(
                    "{} ({} write × edge pairs)",
                    r.unreached_writes, r.unreached_pairs
                )
            };
            println!(
                "| {} ({}) | {} ({} connected) | {rate} × {secs} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} / {} | {:.0} / {:.0} / {:.0} | {unreached} | {rss} | {pg} | {:.1} / {cpu_cp} / {cpu_pg} (in {:.0} s) |",
                r.backend.name(), r.replicas, r.edges, r.connected, r.writes, r.p50, r.p99, r.max, r.write_errors, r.poll_errors, r.polls_200, r.polls_304, r.prop.0, r.prop.1, r.prop.2, r.cpu_gen, r.window_s
            );
            if let Some(e) = r.first_error {
                println!("|  first error: {e} ||||||||||||||");
            }
        }
    }
    Ok(())
}
