//! Per-VM state shared by the root context and the HTTP contexts of one worker.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use edge_policy::config::FilterConfig;
use edge_policy::facts::Extractor;
use edge_policy::matcher::KeyHashCache;
use edge_policy::seal::TrustedKeys;
use edge_policy::{Matcher, RuleId, Version};

use crate::metrics::Metrics;

/// Configuration compiled in `on_configure`; immutable afterwards.
pub struct Runtime {
    pub cfg: FilterConfig,
    pub extractor: Extractor,
    /// The control plane's keys, parsed from `control_plane.trusted_keys`.
    pub trust: TrustedKeys,
    pub metrics: Metrics,
}

/// API keys whose SHA-256 a VM remembers.
const KEY_CACHE_SLOTS: usize = 1024;

/// What one VM knows.
pub struct VmState {
    pub runtime: RefCell<Option<Rc<Runtime>>>,
    /// The compiled policy; None until a policy was received.
    pub matcher: RefCell<Option<Rc<Matcher>>>,
    /// Requests decided per rule since the last report.
    pub hits: RefCell<HashMap<RuleId, u64>>,
    /// SHA-256 of recently seen API keys.
    pub key_cache: RefCell<KeyHashCache>,
}

impl Default for VmState {
    fn default() -> Self {
        VmState {
            runtime: RefCell::default(),
            matcher: RefCell::default(),
            hits: RefCell::default(),
            key_cache: RefCell::new(KeyHashCache::new(KEY_CACHE_SLOTS)),
        }
    }
}

impl VmState {
    pub fn runtime(&self) -> Option<Rc<Runtime>> {
        self.runtime.borrow().clone()
    }

    pub fn matcher(&self) -> Option<Rc<Matcher>> {
        self.matcher.borrow().clone()
    }

    /// The version enforced, `None` before any policy arrived (0 is a version: empty).
    pub fn held_version(&self) -> Option<Version> {
        self.matcher.borrow().as_ref().map(|m| m.version())
    }

    pub fn version(&self) -> Version {
        self.matcher.borrow().as_ref().map_or(0, |m| m.version())
    }

    pub fn count(&self, rule: RuleId) {
        *self.hits.borrow_mut().entry(rule).or_insert(0) += 1;
    }
}
