//! The filter's counters. In Envoy they appear under the `wasmcustom.` prefix.
//!
//! Verdict counters are the only ones a request touches; they are counted in the VM and
//! added to the host's counters on the next tick (`shared_check_ms` later at most), which
//! keeps a host call off every request.

use std::cell::Cell;

use edge_policy::Action;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Metric ids, defined once per VM in `on_configure`.
#[derive(Debug, Default)]
pub struct Metrics {
    verdicts: [Option<u32>; Action::ALL.len()],
    /// Verdicts counted since the last [`Metrics::flush`], per [`Action::ALL`] index.
    pending: [Cell<u64>; Action::ALL.len()],
    pub simulated: Option<u32>,
    pub no_policy: Option<u32>,
    /// Requests refused as ambiguous (`ambiguous_path: reject`).
    pub ambiguous: Option<u32>,
    pub sync_ok: Option<u32>,
    pub sync_failed: Option<u32>,
    pub sync_unauthorized: Option<u32>,
    /// Policy answers refused by their seal (unsigned, unknown key, forged, altered,
    /// truncated, replayed).
    pub policy_rejected: Option<u32>,
    pub policy_version: Option<u32>,
    pub reports_failed: Option<u32>,
    /// Sync calls sent (long-polls or polls) by this proxy's VMs.
    pub sync_sent: Option<u32>,
    /// Times a VM took the sync lease it did not hold (the first one included).
    pub lease_moves: Option<u32>,
    /// The low 32 bits of the id of the VM that last took the lease (matches the
    /// `boot_id` of its hit reports).
    pub leader: Option<u32>,
}

fn define(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name).ok()
}

impl Metrics {
    pub fn define() -> Metrics {
        let mut verdicts = [None; Action::ALL.len()];
        for (slot, action) in verdicts.iter_mut().zip(Action::ALL) {
            *slot = define(
                MetricType::Counter,
                &format!("edge_containment.verdict.{}", action.as_str()),
            );
        }
        Metrics {
            verdicts,
            pending: Default::default(),
            simulated: define(MetricType::Counter, "edge_containment.simulated"),
            no_policy: define(MetricType::Counter, "edge_containment.no_policy"),
            ambiguous: define(MetricType::Counter, "edge_containment.ambiguous_path"),
            sync_ok: define(MetricType::Counter, "edge_containment.sync.ok"),
            sync_failed: define(MetricType::Counter, "edge_containment.sync.failed"),
            sync_unauthorized: define(MetricType::Counter, "edge_containment.sync.unauthorized"),
            policy_rejected: define(MetricType::Counter, "edge_containment.sync.rejected"),
            policy_version: define(MetricType::Gauge, "edge_containment.policy_version"),
            reports_failed: define(MetricType::Counter, "edge_containment.report.failed"),
            sync_sent: define(MetricType::Counter, "edge_containment.sync.sent"),
            lease_moves: define(MetricType::Counter, "edge_containment.sync.lease_moves"),
            leader: define(MetricType::Gauge, "edge_containment.sync.leader"),
        }
    }

    /// Count a verdict (added to the host's counter on the next flush).
    pub fn verdict(&self, action: Action) {
        if let Some(c) = Action::ALL
            .iter()
            .position(|a| *a == action)
            .and_then(|i| self.pending.get(i))
        {
            c.set(c.get() + 1);
        }
    }

    /// Add the verdicts counted since the last flush to the host's counters.
    pub fn flush(&self) {
        for (id, pending) in self.verdicts.iter().zip(&self.pending) {
            let n = pending.take();
            if let (Some(id), true) = (id, n > 0) {
                let _ = hostcalls::increment_metric(*id, n as i64);
            }
        }
    }
}

pub fn inc(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

pub fn set(id: Option<u32>, value: u64) {
    if let Some(id) = id {
        let _ = hostcalls::record_metric(id, value);
    }
}
