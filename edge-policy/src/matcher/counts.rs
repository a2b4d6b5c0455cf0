//! How many rules go to each index of a [`super::Matcher`], counted before building so
//! every column and table is allocated once at its final size.

use super::{key_of, Key};
use crate::model::Rule;

/// How many rules go to each index (to size them before building).
#[derive(Debug, Clone)]
pub(super) struct Counts {
    pub(super) v4: [usize; 33],
    pub(super) v6: [usize; 129],
    pub(super) keys: usize,
    pub(super) strs: [usize; 4],
    pub(super) total: usize,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            v4: [0; 33],
            v6: [0; 129],
            keys: 0,
            strs: [0; 4],
            total: 0,
        }
    }
}

impl Counts {
    pub(super) fn of(rules: &[Rule]) -> Counts {
        let mut c = Counts::default();
        rules.iter().for_each(|r| c.add(r));
        c
    }

    pub(super) fn add(&mut self, r: &Rule) {
        self.total += 1;
        let slot = match key_of(&r.kind) {
            Key::V4(n) => self.v4.get_mut(usize::from(n.prefix_len())),
            Key::V6(n) => self.v6.get_mut(usize::from(n.prefix_len())),
            Key::Hash(_) => Some(&mut self.keys),
            Key::Str(k, _) => self.strs.get_mut(k as usize),
        };
        if let Some(c) = slot {
            *c += 1;
        }
    }
}
