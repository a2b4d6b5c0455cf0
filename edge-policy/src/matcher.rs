//! The compiled matcher. PLACEHOLDER: a linear scan until the indexed version lands.

use crate::model::{Rule, Version};
use crate::verdict::{Facts, Verdict};
use crate::wire::{ApplyError, Delta, Snapshot};

/// A policy compiled for lookups.
#[derive(Debug, Default, Clone)]
pub struct Matcher {
    version: Version,
    rules: Vec<Rule>,
}

impl Matcher {
    /// Compile a snapshot.
    pub fn new(snapshot: &Snapshot) -> Matcher {
        let mut s = snapshot.clone();
        s.canonicalize();
        Matcher { version: s.version, rules: s.rules }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Apply a delta in place.
    pub fn apply_delta(&mut self, delta: &Delta) -> Result<(), ApplyError> {
        let s = self.to_snapshot().apply(delta)?;
        *self = Matcher::new(&s);
        Ok(())
    }

    /// The policy this matcher enforces, rules sorted by id.
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot { version: self.version, rules: self.rules.clone() }
    }

    /// Decide on a request. `now_ms` is Unix time in milliseconds.
    pub fn evaluate(&self, facts: &Facts<'_>, now_ms: u64) -> Verdict {
        crate::naive::evaluate(&self.rules, facts, now_ms)
    }
}
