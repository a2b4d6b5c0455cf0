//! The edge policy as the sync endpoint serves it, without a database query per poll:
//!
//! - **the committed version** comes from the store's watch channel
//!   ([`Store::watch_version`], updated after every commit that bumps it);
//! - **wake-ups are coalesced**: long-polls wait on a second channel that republishes the
//!   committed version at most once per `interval`. The first commit after a quiet interval is
//!   published at once (a single change still reaches every edge within milliseconds); later
//!   commits within the interval are published together at its end, so a burst of writes
//!   wakes every waiting edge once, with the latest version, instead of once per commit
//!   (and those woken edges answer spread over a quarter of the interval, see
//!   [`PolicyFeed::spread`]);
//! - **encoded answers are cached**: the snapshot and the delta for each `since` asked for are
//!   computed once per version, by the first request that needs them, while every other
//!   request for the same answer waits for that one computation and shares its bytes
//!   (single-flight, a [`tokio::sync::OnceCell`] per answer). When a newer version is asked
//!   for, every cached answer of the older one is dropped.
//!
//! An answer is computed from the database as it is at that moment, so its version can be
//! newer than the one asked for: every answer is a valid reply to "anything newer than
//! `since`", and it says which version it brings.
//!
//! Nothing here is the only copy of anything (the store is the one source of truth): every
//! answer is recomputed from the store after a restart, and on another replica from its own
//! store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use edge_policy::{wire, Version};
use prometheus::{IntCounter, IntCounterVec};
use sha2::Digest as _;
use tokio::sync::{watch, OnceCell};

use crate::domain::CoreResult;
use crate::metrics::Metrics;
use crate::store::{PolicyAnswer, Store};

/// Most deltas (distinct `since` values) cached for one version; further ones are computed
/// per request, uncached.
pub const MAX_CACHED_DELTAS: usize = 1024;
/// Delta bytes cached for one version before further deltas are computed uncached (the
/// snapshot is always cached).
pub const MAX_CACHED_DELTA_BYTES: usize = 64 << 20;

/// What an answer carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerKind {
    Snapshot,
    Delta,
}

impl AnswerKind {
    pub const ALL: [AnswerKind; 2] = [AnswerKind::Snapshot, AnswerKind::Delta];
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerKind::Snapshot => "snapshot",
            AnswerKind::Delta => "delta",
        }
    }
}

/// An encoded policy answer (`wire::encode_snapshot` / `wire::encode_delta` bytes), before
/// its seal: the seal carries the time it is sent, so it is made per request
/// ([`crate::signing::Signer`]) from the digest computed here once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub kind: AnswerKind,
    /// The version the answer brings the edge to.
    pub version: Version,
    pub body: Bytes,
    /// SHA-256 of `body`.
    pub digest: [u8; 32],
}

impl Answer {
    pub fn encode(a: &PolicyAnswer) -> Answer {
        let (kind, version, body) = match a {
            PolicyAnswer::Snapshot(s) => {
                (AnswerKind::Snapshot, s.version, wire::encode_snapshot(s))
            }
            PolicyAnswer::Delta(d) => (AnswerKind::Delta, d.version, wire::encode_delta(d)),
        };
        let digest = sha2::Sha256::digest(&body).into();
        Answer {
            kind,
            version,
            body: Bytes::from(body),
            digest,
        }
    }
}

type Cell = Arc<OnceCell<Answer>>;

/// The answers cached for one version.
struct Cached {
    version: Version,
    snapshot: Cell,
    deltas: HashMap<Version, Cell>,
    /// Body bytes of the deltas computed so far.
    delta_bytes: Arc<AtomicUsize>,
}

impl Cached {
    fn new(version: Version) -> Cached {
        Cached {
            version,
            snapshot: Cell::default(),
            deltas: HashMap::new(),
            delta_bytes: Arc::default(),
        }
    }
}

/// Whether an answer came from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    /// Already computed (or being computed) by another request.
    Hit,
    /// Computed by this request and kept for the others.
    Miss,
    /// Computed by this request alone: the cache for this version is full.
    Uncached,
}

impl CacheResult {
    pub const ALL: [CacheResult; 3] = [CacheResult::Hit, CacheResult::Miss, CacheResult::Uncached];
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Uncached => "uncached",
        }
    }
}

pub struct PolicyFeed {
    store: Arc<dyn Store>,
    committed: watch::Receiver<Version>,
    interval: Duration,
    published: Arc<watch::Sender<Version>>,
    /// Whether the latest publication ended an interval (a burst) rather than a quiet spell.
    coalesced: Arc<AtomicBool>,
    started: OnceLock<()>,
    cache: Mutex<Cached>,
    cache_results: IntCounterVec,
    wakeups: IntCounter,
}

impl PolicyFeed {
    /// A feed over `store` that publishes to long-polls at most once per `interval` (zero:
    /// on every commit). The publishing task starts with the first long-poll.
    pub fn new(store: Arc<dyn Store>, interval: Duration, metrics: &Metrics) -> PolicyFeed {
        let committed = store.watch_version();
        let now = *committed.borrow();
        let (published, _) = watch::channel(now);
        PolicyFeed {
            store,
            committed,
            interval,
            published: Arc::new(published),
            coalesced: Arc::default(),
            started: OnceLock::new(),
            cache: Mutex::new(Cached::new(now)),
            cache_results: metrics.policy_cache.clone(),
            wakeups: metrics.policy_wakeups.clone(),
        }
    }

    /// The latest committed version (no database query).
    pub fn committed(&self) -> Version {
        *self.committed.borrow()
    }

    /// The version long-polls see: the committed version, republished at most once per
    /// interval. Never ahead of [`PolicyFeed::committed`].
    pub fn subscribe(&self) -> watch::Receiver<Version> {
        self.started.get_or_init(|| self.start());
        self.published.subscribe()
    }

    fn start(&self) {
        // Subscribe here, not in the task: a commit made before the task first runs is
        // then still seen (the task also compares against the published value first).
        let rx = self.store.watch_version();
        let task = publish(
            rx,
            self.published.clone(),
            self.coalesced.clone(),
            self.interval,
            self.wakeups.clone(),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(task);
            }
            Err(_) => tracing::error!("no async runtime: long-polls will not be woken"),
        }
    }

    /// How long a long-poll woken by the latest publication should hold its answer: after a
    /// coalesced publication (the end of a burst's interval), a random delay within the
    /// first quarter of the interval, so a thousand woken edges do not all answer, and poll
    /// again, in the same millisecond while writes wait behind them; after a quiet spell,
    /// none (a single change reaches every edge at once).
    pub fn spread(&self) -> Duration {
        let max = self.interval / 4;
        if !self.coalesced.load(Ordering::Relaxed) || max < Duration::from_millis(1) {
            return Duration::ZERO;
        }
        let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(0..=ms))
    }

    fn lock(&self) -> MutexGuard<'_, Cached> {
        // Nothing panics while holding the lock; if something did, the map is still valid.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer for an edge at `since` that should get `version` or newer: a snapshot when
    /// `since` is 0 or not older than the cached version, else a delta (or a snapshot, when
    /// the store cannot give a delta from that far back). Computed once per (since, version).
    pub async fn answer(&self, since: Version, version: Version) -> CoreResult<Answer> {
        let (cell, key, cached, delta_bytes) = {
            let mut c = self.lock();
            if version > c.version {
                *c = Cached::new(version); // drops the older version's answers
            }
            let key = (since != 0 && since < c.version).then_some(since);
            match key {
                None => (c.snapshot.clone(), None, true, None),
                Some(s) => {
                    let bytes = c.delta_bytes.clone();
                    if let Some(cell) = c.deltas.get(&s) {
                        (cell.clone(), key, true, Some(bytes))
                    } else if c.deltas.len() < MAX_CACHED_DELTAS
                        && bytes.load(Ordering::Relaxed) < MAX_CACHED_DELTA_BYTES
                    {
                        let cell = Cell::default();
                        c.deltas.insert(s, cell.clone());
                        (cell, key, true, Some(bytes))
                    } else {
                        (Cell::default(), key, false, None)
                    }
                }
            }
        };
        let mut computed = false;
        let answer = cell
            .get_or_try_init(|| {
                computed = true;
                async move {
                    // `policy(0)` for the snapshot: `since` may be ahead of the cached
                    // version, and the store answers a delta for anything it can.
                    let a = Answer::encode(&self.store.policy(key.unwrap_or(0)).await?);
                    if let Some(b) = &delta_bytes {
                        b.fetch_add(a.body.len(), Ordering::Relaxed);
                    }
                    Ok::<_, crate::domain::CoreError>(a)
                }
            })
            .await?
            .clone();
        let result = match (computed, cached) {
            (false, _) => CacheResult::Hit,
            (true, true) => CacheResult::Miss,
            (true, false) => CacheResult::Uncached,
        };
        self.cache_results
            .with_label_values(&[result.as_str()])
            .inc();
        Ok(answer)
    }

    /// The version whose answers are cached and how many deltas are held (tests, debugging).
    pub fn cached(&self) -> (Version, usize) {
        let c = self.lock();
        (c.version, c.deltas.len())
    }
}

/// Republish `committed` to `out`: at once after a quiet `interval`, else at the end of the
/// interval that began with the previous publication. Ends when the store is dropped.
async fn publish(
    mut committed: watch::Receiver<Version>,
    out: Arc<watch::Sender<Version>>,
    coalesced: Arc<AtomicBool>,
    interval: Duration,
    wakeups: IntCounter,
) {
    let mut trailing = false;
    loop {
        let v = *committed.borrow_and_update();
        if v > *out.borrow() {
            coalesced.store(trailing, Ordering::Relaxed);
            out.send_if_modified(|cur| {
                let moved = v > *cur;
                if moved {
                    *cur = v;
                }
                moved
            });
            wakeups.inc();
            if !interval.is_zero() {
                // Commits during this interval are published together when it ends.
                tokio::time::sleep(interval).await;
                trailing = true;
                continue;
            }
        }
        trailing = false;
        if committed.changed().await.is_err() {
            return;
        }
    }
}
