//! Compact rule storage: one slab per key type, columns instead of structs.
//!
//! A rule in the matcher is a slot in a slab: its key (an address, a key hash or a string),
//! one auxiliary byte (prefix length, or the string's kind), one flags byte, its id, its
//! expiry and an interned incident. Keeping columns apart avoids padding: an IPv4 rule costs
//! 4 + 1 + 1 + 8 + 8 + 4 = 26 bytes, an IPv6 rule 38 bytes.

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

/// A freed slot.
pub(super) const CLASS_FREE: u8 = 0;
/// Allow-list entry.
pub(super) const CLASS_ALLOW: u8 = 1;
/// Block.
pub(super) const CLASS_BLOCK: u8 = 2;
/// Isolation `block`.
pub(super) const CLASS_ISO_BLOCK: u8 = 3;
/// Isolation `read_only`.
pub(super) const CLASS_ISO_READ_ONLY: u8 = 4;
/// Isolation `pixel_kill`.
pub(super) const CLASS_ISO_PIXEL_KILL: u8 = 5;
/// The low bits of the flags byte hold the class.
pub(super) const CLASS_MASK: u8 = 0b111;
/// The rule's mode is `simulate`.
pub(super) const FLAG_SIMULATE: u8 = 1 << 3;
/// The rule has an expiry (`expires_at_ms` is `Some`).
pub(super) const FLAG_EXPIRES: u8 = 1 << 4;

/// Slots per slab: the top two bits of a location name the slab.
pub(super) const MAX_SLOTS: usize = 1 << 30;

/// Incident "none".
pub(super) const NO_INCIDENT: u32 = u32::MAX;

/// The per-rule facts the request path needs, copied out of a slab.
#[derive(Clone, Copy, Debug)]
pub(super) struct Meta {
    pub id: u64,
    pub expires_at_ms: u64,
    pub incident: u32,
    pub flags: u8,
}

impl Meta {
    pub fn class(&self) -> u8 {
        self.flags & CLASS_MASK
    }

    /// Whether the rule is still in force at `now_ms` (as [`crate::Rule::is_live`]).
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.flags & FLAG_EXPIRES == 0 || now_ms < self.expires_at_ms
    }
}

/// Rules sharing one key type, stored by column; freed slots are reused.
#[derive(Clone, Debug, Default)]
pub(super) struct Slab<K> {
    pub key: Vec<K>,
    pub aux: Vec<u8>,
    flags: Vec<u8>,
    id: Vec<u64>,
    expires: Vec<u64>,
    incident: Vec<u32>,
    free: Vec<u32>,
}

impl<K> Slab<K> {
    pub fn reserve_exact(&mut self, n: usize) {
        let n = n.saturating_sub(self.free.len());
        self.key.reserve_exact(n);
        self.aux.reserve_exact(n);
        self.flags.reserve_exact(n);
        self.id.reserve_exact(n);
        self.expires.reserve_exact(n);
        self.incident.reserve_exact(n);
    }

    /// Store a rule; `None` only past [`MAX_SLOTS`] (tens of GiB of rules).
    pub fn alloc(&mut self, key: K, aux: u8, m: Meta) -> Option<u32> {
        if let Some(slot) = self.free.pop() {
            let i = slot as usize;
            if let (Some(k), Some(a), Some(f), Some(id), Some(e), Some(inc)) = (
                self.key.get_mut(i),
                self.aux.get_mut(i),
                self.flags.get_mut(i),
                self.id.get_mut(i),
                self.expires.get_mut(i),
                self.incident.get_mut(i),
            ) {
                (*k, *a, *f, *id, *e, *inc) =
                    (key, aux, m.flags, m.id, m.expires_at_ms, m.incident);
                return Some(slot);
            }
            return None;
        }
        let slot = self.id.len();
        if slot >= MAX_SLOTS {
            return None;
        }
        self.key.push(key);
        self.aux.push(aux);
        self.flags.push(m.flags);
        self.id.push(m.id);
        self.expires.push(m.expires_at_ms);
        self.incident.push(m.incident);
        u32::try_from(slot).ok()
    }

    /// Free a slot, putting `empty` in place of its key (so a string's memory goes now).
    pub fn release(&mut self, slot: u32, empty: K) -> Option<K> {
        let i = slot as usize;
        let f = self.flags.get_mut(i)?;
        if *f & CLASS_MASK == CLASS_FREE {
            return None;
        }
        *f = CLASS_FREE;
        self.free.push(slot);
        self.key.get_mut(i).map(|k| std::mem::replace(k, empty))
    }

    pub fn meta(&self, slot: u32) -> Option<Meta> {
        let i = slot as usize;
        Some(Meta {
            id: *self.id.get(i)?,
            expires_at_ms: *self.expires.get(i)?,
            incident: *self.incident.get(i)?,
            flags: *self.flags.get(i)?,
        })
    }

    pub fn id(&self, slot: u32) -> Option<u64> {
        self.id.get(slot as usize).copied()
    }

    pub fn key(&self, slot: u32) -> Option<&K> {
        self.key.get(slot as usize)
    }

    pub fn aux(&self, slot: u32) -> Option<u8> {
        self.aux.get(slot as usize).copied()
    }

    /// Slots holding a rule.
    pub fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.flags
            .iter()
            .enumerate()
            .filter(|(_, f)| **f & CLASS_MASK != CLASS_FREE)
            .filter_map(|(i, _)| u32::try_from(i).ok())
    }

    /// Bytes of heap held by the columns (capacity, excluding what keys point to).
    pub fn heap_bytes(&self) -> usize {
        self.key.capacity() * std::mem::size_of::<K>()
            + self.aux.capacity()
            + self.flags.capacity()
            + self.id.capacity() * 8
            + self.expires.capacity() * 8
            + self.incident.capacity() * 4
            + self.free.capacity() * 4
    }
}

/// Incident ids, interned: a policy references few incidents, its rules many times.
#[derive(Clone, Debug, Default)]
pub(super) struct Interner {
    values: Vec<u64>,
    refs: Vec<u32>,
    index: HashTable<u32>,
    free: Vec<u32>,
}

impl Interner {
    pub fn intern(&mut self, bh: &DefaultHashBuilder, v: Option<u64>) -> u32 {
        let Some(v) = v else { return NO_INCIDENT };
        let hash = bh.hash_one(v);
        let values = &self.values;
        if let Some(&i) = self
            .index
            .find(hash, |&i| values.get(i as usize) == Some(&v))
        {
            if let Some(r) = self.refs.get_mut(i as usize) {
                *r = r.saturating_add(1);
            }
            return i;
        }
        let i = match self.free.pop() {
            Some(i) => {
                if let (Some(val), Some(r)) = (
                    self.values.get_mut(i as usize),
                    self.refs.get_mut(i as usize),
                ) {
                    (*val, *r) = (v, 1);
                }
                i
            }
            None => {
                let Ok(i) = u32::try_from(self.values.len()) else {
                    return NO_INCIDENT;
                };
                if i == NO_INCIDENT {
                    return NO_INCIDENT;
                }
                self.values.push(v);
                self.refs.push(1);
                i
            }
        };
        let values = &self.values;
        self.index.insert_unique(hash, i, |&j| {
            values.get(j as usize).map_or(0, |x| bh.hash_one(x))
        });
        i
    }

    pub fn release(&mut self, bh: &DefaultHashBuilder, i: u32) {
        let Some(r) = self.refs.get_mut(i as usize) else {
            return;
        };
        *r = r.saturating_sub(1);
        if *r > 0 {
            return;
        }
        let Some(&v) = self.values.get(i as usize) else {
            return;
        };
        if let Ok(e) = self.index.find_entry(bh.hash_one(v), |&j| j == i) {
            e.remove();
        }
        self.free.push(i);
    }

    pub fn get(&self, i: u32) -> Option<u64> {
        self.values.get(i as usize).copied()
    }

    pub fn heap_bytes(&self) -> usize {
        self.values.capacity() * 8
            + self.refs.capacity() * 4
            + self.free.capacity() * 4
            + self.index.allocation_size()
    }
}
