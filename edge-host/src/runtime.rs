//! What every VM of one plugin shares, below the ABI and the per-VM state: options, engine,
//! shared data, queues, metrics, logs, the callback deadline. `state.rs` and `abi/` depend on
//! this module; it depends on neither (the linked module lives in [`crate::Plugin`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;

use crate::httpcall::Clusters;
use crate::options::HostOptions;
use crate::shared::{LogRing, Metrics, Queues, SharedData};

/// Interval of the epoch ticker that enforces callback deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

pub(crate) struct PluginInner {
    pub opts: HostOptions,
    pub engine: Engine,
    pub shared: SharedData,
    pub queues: Queues,
    pub metrics: Metrics,
    pub logs: LogRing,
    /// The clusters HTTP calls name, with their endpoints' health.
    pub clusters: Clusters,
    /// Epoch ticks granted to each callback.
    pub deadline_ticks: u64,
    next_vm: AtomicU64,
    ticker_stop: Arc<AtomicBool>,
}

impl PluginInner {
    /// Shared state for a plugin of `engine`; `ticker_stop` is set when it is dropped.
    pub fn new(opts: HostOptions, engine: Engine, ticker_stop: Arc<AtomicBool>) -> Self {
        let deadline_ticks = (opts.callback_deadline.as_micros() / EPOCH_TICK.as_micros())
            .try_into()
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        PluginInner {
            logs: LogRing::new(opts.log_capacity),
            clusters: Clusters::new(&opts),
            opts,
            engine,
            shared: SharedData::default(),
            queues: Queues::default(),
            metrics: Metrics::default(),
            deadline_ticks,
            next_vm: AtomicU64::new(1),
            ticker_stop,
        }
    }

    /// A fresh VM instance id, unique within this plugin.
    pub fn next_vm_id(&self) -> u64 {
        self.next_vm.fetch_add(1, Ordering::Relaxed)
    }
}

impl Drop for PluginInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
