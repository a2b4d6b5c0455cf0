//! State shared by every VM of one plugin: shared data with CAS, shared queues, metrics and
//! the captured log lines. Each structure sits behind its own mutex; no lock is held while
//! guest code runs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::options::LogLevel;
use crate::status::{AbiResult, Status};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of plain data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shared key/value store with a per-key CAS counter.
#[derive(Default)]
pub(crate) struct SharedData {
    map: Mutex<HashMap<String, (Vec<u8>, u32)>>,
}

impl SharedData {
    pub fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        lock(&self.map).get(key).cloned()
    }

    /// Envoy semantics: cas 0 is unconditional; a non-zero cas must match the key's current
    /// counter (a missing key accepts any cas). `strict`: cas 0 on an existing key fails.
    pub fn set(&self, key: &str, value: &[u8], cas: u32, strict: bool) -> AbiResult {
        let mut map = lock(&self.map);
        match map.get_mut(key) {
            Some((v, current)) => {
                if (cas == 0 && strict) || (cas != 0 && cas != *current) {
                    return Err(Status::CasMismatch);
                }
                *v = value.to_vec();
                *current = current.wrapping_add(1).max(1);
            }
            None => {
                map.insert(key.to_string(), (value.to_vec(), 1));
            }
        }
        Ok(())
    }
}

struct Queue {
    vm_id: String,
    name: String,
    owner_vm: u64,
    owner_context: u32,
    items: VecDeque<Vec<u8>>,
}

/// Called when an item lands in a queue owned by a VM: (queue id, owner root context).
pub(crate) type QueueWaker = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct QueuesInner {
    queues: Vec<Queue>,
    /// Pending `on_queue_ready` notifications per VM instance: (root context, queue id).
    ready: HashMap<u64, Vec<(u32, u32)>>,
    wakers: HashMap<u64, QueueWaker>,
}

/// Shared queues. Queue ids are 1-based indexes.
#[derive(Default)]
pub(crate) struct Queues {
    inner: Mutex<QueuesInner>,
}

impl Queues {
    pub fn register(&self, vm_id: &str, name: &str, owner_vm: u64, owner_context: u32) -> u32 {
        let mut q = lock(&self.inner);
        if let Some(pos) = q
            .queues
            .iter()
            .position(|x| x.vm_id == vm_id && x.name == name)
        {
            q.queues[pos].owner_vm = owner_vm;
            q.queues[pos].owner_context = owner_context;
            return pos as u32 + 1;
        }
        q.queues.push(Queue {
            vm_id: vm_id.to_string(),
            name: name.to_string(),
            owner_vm,
            owner_context,
            items: VecDeque::new(),
        });
        q.queues.len() as u32
    }

    pub fn resolve(&self, vm_id: &str, name: &str) -> Option<u32> {
        let q = lock(&self.inner);
        q.queues
            .iter()
            .position(|x| x.vm_id == vm_id && x.name == name)
            .map(|p| p as u32 + 1)
    }

    pub fn enqueue(&self, id: u32, value: &[u8]) -> AbiResult {
        let waker = {
            let mut guard = lock(&self.inner);
            let inner = &mut *guard;
            let queue = (id as usize)
                .checked_sub(1)
                .and_then(|i| inner.queues.get_mut(i))
                .ok_or(Status::NotFound)?;
            queue.items.push_back(value.to_vec());
            let (vm, ctx) = (queue.owner_vm, queue.owner_context);
            inner.ready.entry(vm).or_default().push((ctx, id));
            inner.wakers.get(&vm).cloned()
        };
        if let Some(w) = waker {
            w();
        }
        Ok(())
    }

    pub fn dequeue(&self, id: u32) -> AbiResult<Vec<u8>> {
        let mut q = lock(&self.inner);
        let queue = (id as usize)
            .checked_sub(1)
            .and_then(|i| q.queues.get_mut(i))
            .ok_or(Status::NotFound)?;
        queue.items.pop_front().ok_or(Status::Empty)
    }

    pub fn take_ready(&self, vm: u64) -> Vec<(u32, u32)> {
        lock(&self.inner).ready.remove(&vm).unwrap_or_default()
    }

    pub fn has_ready(&self, vm: u64) -> bool {
        lock(&self.inner)
            .ready
            .get(&vm)
            .is_some_and(|v| !v.is_empty())
    }

    pub fn set_waker(&self, vm: u64, waker: QueueWaker) {
        lock(&self.inner).wakers.insert(vm, waker);
    }

    pub fn forget_vm(&self, vm: u64) {
        let mut q = lock(&self.inner);
        q.wakers.remove(&vm);
        q.ready.remove(&vm);
    }
}

/// Kind of a metric defined with `proxy_define_metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    pub(crate) fn from_u32(v: u32) -> Option<MetricKind> {
        match v {
            0 => Some(MetricKind::Counter),
            1 => Some(MetricKind::Gauge),
            2 => Some(MetricKind::Histogram),
            _ => None,
        }
    }
}

/// A metric's value at one point in time. For histograms `value` is the number of samples
/// and `sum` their sum; for counters and gauges `sum` equals `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSnapshot {
    pub name: String,
    pub kind: MetricKind,
    pub value: u64,
    pub sum: u64,
}

struct Metric {
    name: String,
    kind: MetricKind,
    value: i64,
    sum: u64,
}

/// Metrics, shared by all VMs like Envoy's stats. Ids are 1-based indexes.
#[derive(Default)]
pub(crate) struct Metrics {
    inner: Mutex<Vec<Metric>>,
}

impl Metrics {
    pub fn define(&self, kind: MetricKind, name: &str) -> AbiResult<u32> {
        let mut m = lock(&self.inner);
        if let Some(pos) = m.iter().position(|x| x.name == name) {
            if m[pos].kind != kind {
                return Err(Status::BadArgument);
            }
            return Ok(pos as u32 + 1);
        }
        m.push(Metric {
            name: name.to_string(),
            kind,
            value: 0,
            sum: 0,
        });
        Ok(m.len() as u32)
    }

    fn with<R>(&self, id: u32, f: impl FnOnce(&mut Metric) -> AbiResult<R>) -> AbiResult<R> {
        let mut m = lock(&self.inner);
        let metric = (id as usize)
            .checked_sub(1)
            .and_then(|i| m.get_mut(i))
            .ok_or(Status::NotFound)?;
        f(metric)
    }

    pub fn increment(&self, id: u32, offset: i64) -> AbiResult {
        self.with(id, |m| match m.kind {
            MetricKind::Counter if offset < 0 => Err(Status::BadArgument),
            MetricKind::Counter | MetricKind::Gauge => {
                m.value = m.value.saturating_add(offset);
                Ok(())
            }
            MetricKind::Histogram => Err(Status::BadArgument),
        })
    }

    pub fn record(&self, id: u32, value: u64) -> AbiResult {
        self.with(id, |m| {
            match m.kind {
                MetricKind::Counter | MetricKind::Gauge => {
                    m.value = i64::try_from(value).unwrap_or(i64::MAX)
                }
                MetricKind::Histogram => {
                    m.value = m.value.saturating_add(1);
                    m.sum = m.sum.saturating_add(value);
                }
            }
            Ok(())
        })
    }

    pub fn get(&self, id: u32) -> AbiResult<u64> {
        self.with(id, |m| match m.kind {
            MetricKind::Histogram => Err(Status::BadArgument),
            _ => Ok(u64::try_from(m.value).unwrap_or(0)),
        })
    }

    pub fn snapshot(&self) -> Vec<MetricSnapshot> {
        lock(&self.inner)
            .iter()
            .map(|m| {
                let value = u64::try_from(m.value).unwrap_or(0);
                MetricSnapshot {
                    name: m.name.clone(),
                    kind: m.kind,
                    value,
                    sum: if m.kind == MetricKind::Histogram {
                        m.sum
                    } else {
                        value
                    },
                }
            })
            .collect()
    }
}

/// One captured guest log line (`proxy_log`, or WASI stdout/stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// Bounded ring buffer of log lines.
pub(crate) struct LogRing {
    lines: Mutex<VecDeque<LogLine>>,
    capacity: usize,
}

impl LogRing {
    pub fn new(capacity: usize) -> Self {
        LogRing {
            lines: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
        }
    }

    pub fn push(&self, plugin: &str, level: LogLevel, message: String) {
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error | LogLevel::Critical => tracing::error!(plugin, "{message}"),
        }
        let mut l = lock(&self.lines);
        if l.len() >= self.capacity {
            l.pop_front();
        }
        l.push_back(LogLine { level, message });
    }

    pub fn all(&self) -> Vec<LogLine> {
        lock(&self.lines).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_cas_semantics() {
        let d = SharedData::default();
        assert_eq!(d.get("k"), None);
        assert_eq!(d.set("k", b"a", 0, false), Ok(()));
        let (_, cas) = d.get("k").expect("set");
        assert_ne!(cas, 0);
        assert_eq!(d.set("k", b"b", 0, false), Ok(()), "cas 0 unconditional");
        assert_eq!(
            d.set("k", b"c", cas, false),
            Err(Status::CasMismatch),
            "stale cas"
        );
        let (v, cas2) = d.get("k").expect("set");
        assert_eq!(v, b"b");
        assert_eq!(d.set("k", b"c", cas2, false), Ok(()));
        assert_eq!(d.get("k").map(|x| x.0), Some(b"c".to_vec()));
    }

    #[test]
    fn strict_cas_semantics() {
        let d = SharedData::default();
        assert_eq!(d.set("k", b"a", 0, true), Ok(()), "new key with cas 0");
        assert_eq!(d.set("k", b"b", 0, true), Err(Status::CasMismatch));
        let (_, cas) = d.get("k").expect("set");
        assert_eq!(d.set("k", b"b", cas, true), Ok(()));
    }

    #[test]
    fn queues_notify_their_owner() {
        let q = Queues::default();
        let id = q.register("", "q", 7, 1);
        assert_eq!(q.register("", "q", 7, 1), id, "re-register keeps the id");
        assert_eq!(q.resolve("", "q"), Some(id));
        assert_eq!(q.resolve("", "other"), None);
        assert_eq!(q.dequeue(id), Err(Status::Empty));
        assert_eq!(q.enqueue(99, b"x"), Err(Status::NotFound));
        assert_eq!(q.enqueue(id, b"x"), Ok(()));
        assert!(q.has_ready(7));
        assert_eq!(q.take_ready(7), vec![(1, id)]);
        assert_eq!(q.dequeue(id), Ok(b"x".to_vec()));
        assert_eq!(q.dequeue(id), Err(Status::Empty));
    }

    #[test]
    fn metrics_by_kind() {
        let m = Metrics::default();
        let c = m.define(MetricKind::Counter, "c").expect("define");
        assert_eq!(m.define(MetricKind::Counter, "c"), Ok(c));
        assert_eq!(m.define(MetricKind::Gauge, "c"), Err(Status::BadArgument));
        assert_eq!(m.increment(c, 3), Ok(()));
        assert_eq!(m.increment(c, -1), Err(Status::BadArgument));
        assert_eq!(m.get(c), Ok(3));
        let g = m.define(MetricKind::Gauge, "g").expect("define");
        m.increment(g, 5).expect("inc");
        m.increment(g, -2).expect("dec");
        assert_eq!(m.get(g), Ok(3));
        let h = m.define(MetricKind::Histogram, "h").expect("define");
        m.record(h, 10).expect("record");
        m.record(h, 5).expect("record");
        assert_eq!(m.get(h), Err(Status::BadArgument));
        assert_eq!(m.get(99), Err(Status::NotFound));
        let snap = m.snapshot();
        assert_eq!(snap[2].value, 2);
        assert_eq!(snap[2].sum, 15);
    }

    #[test]
    fn log_ring_is_bounded() {
        let r = LogRing::new(2);
        for i in 0..5 {
            r.push("p", LogLevel::Info, format!("{i}"));
        }
        let all = r.all();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].message, "4");
    }
}
