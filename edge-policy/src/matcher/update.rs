//! Changes in place: upserts and removals of deltas, and the merge of the hashed layout's
//! networks into the dense one (see the module docs of [`super`]).

use std::hash::BuildHasher;

use super::dense::Entry;
use super::index::{path_key, Bits, PrefixTables, StrKind};
use super::slab::{self, Meta, Slab};
use super::{
    flags_of, hash_loc, id_at, key_of, loc, Key, Matcher, SLOT_MASK, TAG_KEY, TAG_STR, TAG_V4,
    TAG_V6,
};
use crate::model::{Rule, RuleId};
use crate::wire::{ApplyError, Delta};

impl Matcher {
    /// Apply a delta in place. Costs O(delta size) hash operations and binary searches, not
    /// a rebuild, except when it brings the rules outside the dense layout past an eighth of
    /// it: then they are merged in (a sort of the networks; see the module docs).
    ///
    /// The delta applies only when `delta.since` equals [`Matcher::version`]; otherwise the
    /// matcher is left unchanged and [`ApplyError::VersionMismatch`] is returned. Removals go
    /// first, then upserts (an upsert replaces any rule with the same id, wherever it was
    /// indexed), as in [`Snapshot::apply`].
    pub fn apply_delta(&mut self, delta: &Delta) -> Result<(), ApplyError> {
        if delta.since != self.version {
            return Err(ApplyError::VersionMismatch {
                have: self.version,
                since: delta.since,
            });
        }
        for &id in &delta.removed {
            self.remove(id);
        }
        for r in &delta.upserts {
            self.upsert(r);
        }
        self.version = delta.version;
        if self.dense && self.needs_compaction() {
            self.compact();
        }
        Ok(())
    }

    /// Whether the hashed networks and dead dense entries outnumber an eighth of the dense
    /// layout's live entries (and 1024).
    fn needs_compaction(&self) -> bool {
        let live = self.v4d.alive + self.v6d.alive;
        let pending = self.hashed_ips + self.v4d.dead() + self.v6d.dead();
        pending > (live / 8).max(1024)
    }

    /// Move the hashed layout's networks into the dense one and drop dead entries.
    fn compact(&mut self) {
        let (mut e4, mut x4, mut e6, mut x6, mut moved) = (vec![], vec![], vec![], vec![], vec![]);
        let slots: Vec<u32> = self.v4.live_slots().collect();
        for s in slots {
            let (Some(&a), Some(len), Some(m)) = (self.v4.key(s), self.v4.aux(s), self.v4.meta(s))
            else {
                continue;
            };
            if let Some(e) = self.dense_entry(a, len, m, &mut x4) {
                e4.push(e);
                moved.push(m.id);
            }
        }
        let slots: Vec<u32> = self.v6.live_slots().collect();
        for s in slots {
            let (Some(&a), Some(len), Some(m)) = (self.v6.key(s), self.v6.aux(s), self.v6.meta(s))
            else {
                continue;
            };
            if let Some(e) = self.dense_entry(a, len, m, &mut x6) {
                e6.push(e);
                moved.push(m.id);
            }
        }
        for id in moved {
            self.remove_hashed(id);
        }
        self.v4d.merge(e4, x4);
        self.v6d.merge(e6, x6);
        if self.hashed_ips == 0 {
            (self.v4, self.v4_index) = (Slab::default(), PrefixTables::default());
            (self.v6, self.v6_index) = (Slab::default(), PrefixTables::default());
        }
    }

    /// A hashed network as a dense entry (its expiry pushed to `expiries`); `None` when
    /// its attributes cannot be interned (it stays hashed).
    fn dense_entry<A: Bits>(
        &mut self,
        addr: A,
        len: u8,
        m: Meta,
        expiries: &mut Vec<(u64, u64)>,
    ) -> Option<Entry<A>> {
        let incident = self
            .incidents
            .get(m.incident)
            .filter(|_| m.incident != slab::NO_INCIDENT);
        let attr = self.attrs.intern(&self.hasher, m.flags, incident)?;
        if m.flags & slab::FLAG_EXPIRES != 0 {
            expiries.push((m.id, m.expires_at_ms));
        }
        Some(Entry::new(addr, len, attr, m.id))
    }

    /// Insert a rule, replacing any rule with the same id.
    pub(super) fn upsert(&mut self, r: &Rule) {
        self.remove(r.id);
        let bh = &self.hasher;
        let meta = Meta {
            id: r.id,
            expires_at_ms: r.expires_at_ms.unwrap_or(0),
            incident: self.incidents.intern(bh, r.incident),
            flags: flags_of(r),
        };
        let placed = match key_of(&r.kind) {
            Key::V4(n) => self
                .v4
                .alloc(u32::from(n.addr()), n.prefix_len(), meta)
                .map(|s| {
                    self.v4_index.insert(bh, &self.v4, s, n.prefix_len());
                    loc(TAG_V4, s)
                }),
            Key::V6(n) => self
                .v6
                .alloc(u128::from(n.addr()), n.prefix_len(), meta)
                .map(|s| {
                    self.v6_index.insert(bh, &self.v6, s, n.prefix_len());
                    loc(TAG_V6, s)
                }),
            Key::Hash(h) => self.keys.alloc(h.0, 0, meta).map(|s| {
                let ks = &self.keys;
                self.key_index.insert_unique(bh.hash_one(h.0), s, |&x| {
                    ks.key(x).map_or(0, |k| bh.hash_one(k))
                });
                loc(TAG_KEY, s)
            }),
            Key::Str(kind, text) => {
                let key = path_key(text).len();
                self.strs.alloc(Box::from(text), kind as u8, meta).map(|s| {
                    let table = match kind {
                        StrKind::Account => &mut self.accounts,
                        StrKind::Pixel => &mut self.pixels,
                        StrKind::Host => &mut self.hosts,
                        StrKind::Path => {
                            *self.path_lens.entry(key).or_insert(0) += 1;
                            &mut self.paths
                        }
                    };
                    table.insert(bh, kind, &self.strs, s);
                    loc(TAG_STR, s)
                })
            }
        };
        match placed {
            Some(l) => {
                if meta.flags & slab::FLAG_EXPIRES != 0 {
                    self.expiring += 1;
                }
                if l >> 30 <= TAG_V6 {
                    self.hashed_ips += 1;
                }
                let (v4, v6, ks, ss) = (&self.v4, &self.v6, &self.keys, &self.strs);
                self.ids
                    .insert_unique(bh.hash_one(r.id), l, |&x| hash_loc(bh, v4, v6, ks, ss, x));
            }
            // Only past 2^30 rules of one kind, which no memory holds: drop the rule.
            None => self.incidents.release(bh, meta.incident),
        }
    }

    /// Remove the rule with this id, if any.
    pub(super) fn remove(&mut self, id: RuleId) -> bool {
        if self.remove_hashed(id) {
            return true;
        }
        let killed = match self.v4d.find_alive(id) {
            Some(p) => self.v4d.kill(p).map(|e| (e.attr(), &mut self.v4d.expiring)),
            None => self
                .v6d
                .find_alive(id)
                .and_then(|p| self.v6d.kill(p))
                .map(|e| (e.attr(), &mut self.v6d.expiring)),
        };
        let Some((attr, expiring)) = killed else {
            return false;
        };
        if self.attrs.flags(attr) & slab::FLAG_EXPIRES != 0 {
            *expiring = expiring.saturating_sub(1);
        }
        true
    }

    /// Remove the rule with this id from the hashed layout, if it is there.
    pub(super) fn remove_hashed(&mut self, id: RuleId) -> bool {
        let bh = &self.hasher;
        let (v4, v6, ks, ss) = (&self.v4, &self.v6, &self.keys, &self.strs);
        let Ok(e) = self
            .ids
            .find_entry(bh.hash_one(id), |&l| id_at(v4, v6, ks, ss, l) == Some(id))
        else {
            return false;
        };
        let (l, _) = e.remove();
        let slot = l & SLOT_MASK;
        if l >> 30 <= TAG_V6 {
            self.hashed_ips -= 1;
        }
        let meta = match l >> 30 {
            TAG_V4 => {
                let len = self.v4.aux(slot).unwrap_or(0);
                self.v4_index.remove(bh, &self.v4, slot, len);
                let m = self.v4.meta(slot);
                self.v4.release(slot, 0);
                m
            }
            TAG_V6 => {
                let len = self.v6.aux(slot).unwrap_or(0);
                self.v6_index.remove(bh, &self.v6, slot, len);
                let m = self.v6.meta(slot);
                self.v6.release(slot, 0);
                m
            }
            TAG_KEY => {
                if let Some(&k) = self.keys.key(slot) {
                    if let Ok(e) = self.key_index.find_entry(bh.hash_one(k), |&x| x == slot) {
                        e.remove();
                    }
                }
                let m = self.keys.meta(slot);
                self.keys.release(slot, [0; 32]);
                m
            }
            _ => {
                if let Some(kind) = self.strs.aux(slot).and_then(StrKind::from_aux) {
                    let table = match kind {
                        StrKind::Account => &mut self.accounts,
                        StrKind::Pixel => &mut self.pixels,
                        StrKind::Host => &mut self.hosts,
                        StrKind::Path => {
                            let key = self.strs.key(slot).map_or(0, |k| path_key(k).len());
                            if let Some(c) = self.path_lens.get_mut(&key) {
                                *c -= 1;
                                if *c == 0 {
                                    self.path_lens.remove(&key);
                                }
                            }
                            &mut self.paths
                        }
                    };
                    table.remove(bh, kind, &self.strs, slot);
                }
                let m = self.strs.meta(slot);
                self.strs.release(slot, Box::default());
                m
            }
        };
        if let Some(m) = meta {
            self.incidents.release(bh, m.incident);
            if m.flags & slab::FLAG_EXPIRES != 0 {
                self.expiring = self.expiring.saturating_sub(1);
            }
        }
        true
    }
}

impl Matcher {
    /// Merge the hashed layout's networks into the dense one now, whatever their number
    /// (tests use it to exercise the merge on small policies). No effect on a matcher made
    /// by [`Matcher::new_hashed_layout`].
    #[doc(hidden)]
    pub fn compact_now(&mut self) {
        if self.dense {
            self.compact();
        }
    }
}
