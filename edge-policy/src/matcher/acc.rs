//! The running decision of one evaluation: each matching rule is considered, the best
//! enforced and simulated ones kept (the precedence of [`crate::naive`]).

use super::slab::{self, Meta};
use crate::model::RuleId;
use crate::naive::is_read_method;
use crate::verdict::{Action, Facts, PixelKind, Verdict};

/// The running decision of one evaluation: the best enforced and the best simulated
/// (level, id), as in [`crate::naive::evaluate`].
pub(super) struct Acc<'f, 'a> {
    pub facts: &'f Facts<'a>,
    pub now_ms: u64,
    pub best: Option<(u8, RuleId, Action)>,
    pub best_sim: Option<(u8, RuleId)>,
}

impl Acc<'_, '_> {
    pub fn consider(&mut self, m: Option<Meta>) {
        let Some(m) = m else { return };
        if !m.is_live(self.now_ms) {
            return;
        }
        let f = self.facts;
        let (level, action) = match m.class() {
            slab::CLASS_ALLOW => (0, Action::AllowListed),
            slab::CLASS_BLOCK => (1, Action::Block),
            slab::CLASS_ISO_BLOCK => (2, Action::Isolate),
            slab::CLASS_ISO_READ_ONLY if !is_read_method(f.method) => (3, Action::ReadOnlyRefused),
            slab::CLASS_ISO_PIXEL_KILL => match f.pixel {
                Some(px) if px.kind == PixelKind::Script => (4, Action::PixelNoopScript),
                Some(_) => (4, Action::PixelDropBeacon),
                None => return,
            },
            _ => return,
        };
        let enforced = m.class() == slab::CLASS_ALLOW || m.flags & slab::FLAG_SIMULATE == 0;
        if enforced {
            if self.best.is_none_or(|(l, id, _)| (level, m.id) < (l, id)) {
                self.best = Some((level, m.id, action));
            }
        } else if self.best_sim.is_none_or(|(l, id)| (level, m.id) < (l, id)) {
            self.best_sim = Some((level, m.id));
        }
    }

    pub fn verdict(&self) -> Verdict {
        match self.best {
            Some((_, id, action)) => Verdict {
                action,
                rule: Some(id),
                simulated: None,
            },
            None => Verdict {
                action: Action::Allow,
                rule: None,
                simulated: self.best_sim.map(|(_, id)| id),
            },
        }
    }
}
