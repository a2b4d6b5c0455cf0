//! The dense IP layout: every network of a compiled snapshot in one sorted array per
//! address family, instead of a slab slot plus a hash-table bucket plus an id-index bucket.
//!
//! An entry is the address as received (host bits kept), the rule id and one `u32` holding
//! the prefix length (top 8 bits) and an attribute number (low 24 bits: the rule's flags and
//! incident, interned in [`Attrs`], since a policy has few distinct pairs): 16 bytes for
//! IPv4, 32 for IPv6. Entries are sorted by (prefix length, address), so each length's
//! entries are one run, sorted by address and so also by masked address (masking is
//! monotonic). A lookup binary-searches the run of each length in use, within the bucket a
//! directory on the address's top bits gives (about four entries per bucket, at most 2^16
//! buckets), and considers every entry whose masked address equals the probe's: every
//! covering prefix, as the precedence needs.
//!
//! Removal by id: `by_id` holds the positions sorted by id (4 bytes per entry), a removed
//! entry is marked dead in place. Expiries (rare, 8 bytes) are kept by id beside the array,
//! for the entries whose flags say they expire. Upserts do not go here: they go to the
//! hashed layout the matcher keeps for deltas, which is merged into this one once it holds
//! more than an eighth of it (see `Matcher::compact`).

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::index::Bits;

/// The attribute number of a removed entry.
pub(super) const DEAD: u32 = 0x00ff_ffff;

/// One network rule in the dense layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry<A> {
    /// The address as received, host bits included.
    pub addr: A,
    /// Prefix length (top 8 bits) and attribute number (low 24 bits, [`DEAD`] once removed).
    pub meta: u32,
    pub id: u64,
}

impl<A: Bits> Entry<A> {
    pub fn new(addr: A, len: u8, attr: u32, id: u64) -> Entry<A> {
        Entry {
            addr,
            meta: (u32::from(len) << 24) | (attr & DEAD),
            id,
        }
    }

    pub fn len(&self) -> u8 {
        (self.meta >> 24) as u8
    }

    pub fn attr(&self) -> u32 {
        self.meta & DEAD
    }

    pub fn is_alive(&self) -> bool {
        self.attr() != DEAD
    }

    fn kill(&mut self) {
        self.meta |= DEAD;
    }
}

/// The (flags, incident) pairs of dense entries, interned: a policy has a handful.
#[derive(Clone, Debug, Default)]
pub(super) struct Attrs {
    list: Vec<(u8, Option<u64>)>,
    index: HashTable<u32>,
}

impl Attrs {
    /// The number of this pair; `None` once 2^24 - 1 distinct pairs exist (the rule then
    /// stays in the hashed layout).
    pub fn intern(
        &mut self,
        bh: &DefaultHashBuilder,
        flags: u8,
        incident: Option<u64>,
    ) -> Option<u32> {
        let hash = bh.hash_one((flags, incident));
        let list = &self.list;
        if let Some(&i) = self
            .index
            .find(hash, |&i| list.get(i as usize) == Some(&(flags, incident)))
        {
            return Some(i);
        }
        let i = u32::try_from(self.list.len()).ok().filter(|&i| i < DEAD)?;
        self.list.push((flags, incident));
        let list = &self.list;
        self.index.insert_unique(hash, i, |&j| {
            list.get(j as usize).map_or(0, |p| bh.hash_one(p))
        });
        Some(i)
    }

    /// Flags (0, a free slot's class, for an unknown number) and incident.
    pub fn get(&self, i: u32) -> (u8, Option<u64>) {
        self.list.get(i as usize).copied().unwrap_or((0, None))
    }

    pub fn flags(&self, i: u32) -> u8 {
        self.get(i).0
    }

    pub fn heap_bytes(&self) -> usize {
        self.list.capacity() * std::mem::size_of::<(u8, Option<u64>)>()
            + self.index.allocation_size()
    }
}

/// One prefix length's entries, `entries[start..end]`, with a directory on the addresses'
/// top `bits` bits (`dir[b]..dir[b + 1]`, relative to `start`, holds the entries whose top
/// bits are `b`); no directory for a short run.
#[derive(Clone, Debug, Default)]
struct Run {
    start: u32,
    end: u32,
    bits: u8,
    dir: Vec<u32>,
}

/// Runs shorter than this are searched whole.
const DIR_MIN: usize = 64;
/// At most 2^16 + 1 directory words per run (256 KiB).
const DIR_MAX_BITS: u8 = 16;

impl Run {
    fn new<A: Bits>(entries: &[Entry<A>], start: usize, end: usize, len: u8) -> Run {
        let n = end - start;
        let mut run = Run {
            start: start as u32,
            end: end as u32,
            bits: 0,
            dir: Vec::new(),
        };
        if n < DIR_MIN {
            return run;
        }
        // About four entries per bucket; never more bits than the prefix has, so that all
        // entries equal under the mask fall in one bucket.
        let bits = (n.ilog2() as u8 - 2).min(DIR_MAX_BITS).min(len);
        if bits == 0 {
            return run;
        }
        let slice = entries.get(start..end).unwrap_or_default();
        let mut dir = Vec::with_capacity((1usize << bits) + 1);
        let mut j = 0usize;
        for b in 0..=(1usize << bits) {
            while slice.get(j).is_some_and(|e| e.addr.top(bits) < b) {
                j += 1;
            }
            dir.push(j as u32);
        }
        run.bits = bits;
        run.dir = dir;
        run
    }

    /// The part of the array that can hold entries covering `addr`.
    fn bounds<A: Bits>(&self, addr: A) -> (usize, usize) {
        let (start, end) = (self.start as usize, self.end as usize);
        if self.dir.is_empty() {
            return (start, end);
        }
        let b = addr.top(self.bits);
        match (self.dir.get(b), self.dir.get(b + 1)) {
            (Some(&lo), Some(&hi)) => (start + lo as usize, start + hi as usize),
            _ => (start, start),
        }
    }
}

/// One address family's networks in the dense layout.
#[derive(Clone, Debug)]
pub(super) struct Dense<A> {
    /// Sorted by (prefix length, address) once sealed; in insertion order while building.
    pub entries: Vec<Entry<A>>,
    runs: Vec<Run>,
    in_use: [u64; 3],
    /// Positions in `entries`, sorted by id.
    by_id: Vec<u32>,
    /// (id, expiry in Unix ms) of entries that expire, sorted by id (while building: the
    /// entry's position instead of its id). May hold removed entries' ids.
    pub expiries: Vec<(u64, u64)>,
    /// Live entries, and live entries that expire.
    pub alive: usize,
    pub expiring: usize,
}

impl<A: Bits> Default for Dense<A> {
    fn default() -> Self {
        Dense {
            entries: Vec::new(),
            runs: Vec::new(),
            in_use: [0; 3],
            by_id: Vec::new(),
            expiries: Vec::new(),
            alive: 0,
            expiring: 0,
        }
    }
}

impl<A: Bits> Dense<A> {
    /// Removed entries still in the array.
    pub fn dead(&self) -> usize {
        self.entries.len() - self.alive
    }

    /// Sort the entries, drop removed ones, and build the runs, directories and id order.
    /// `by_id` lends its allocation for the id order. Entry ids must be unique among live
    /// entries, and `expiries` keyed by id.
    pub fn seal(&mut self, mut by_id: Vec<u32>) {
        self.entries.retain(Entry::is_alive);
        self.entries.shrink_to_fit();
        self.entries.sort_unstable_by_key(|e| (e.len(), e.addr));
        self.runs = Vec::with_capacity(usize::from(A::WIDTH) + 1);
        self.in_use = [0; 3];
        let mut i = 0usize;
        for len in 0..=A::WIDTH {
            let start = i;
            while self.entries.get(i).is_some_and(|e| e.len() == len) {
                i += 1;
            }
            if i > start {
                if let Some(w) = self.in_use.get_mut(usize::from(len / 64)) {
                    *w |= 1 << (len % 64);
                }
            }
            self.runs.push(Run::new(&self.entries, start, i, len));
        }
        by_id.clear();
        by_id.extend(0..self.entries.len() as u32);
        let entries = &self.entries;
        by_id.sort_unstable_by_key(|&p| entries.get(p as usize).map_or(0, |e| e.id));
        by_id.shrink_to_fit();
        self.by_id = by_id;
        self.expiries.sort_unstable_by_key(|p| p.0);
        self.expiries.dedup_by_key(|p| p.0);
        self.expiries.shrink_to_fit();
        self.alive = self.entries.len();
    }

    /// Add `extra` entries (with their expiries, by id) and seal again: the merge of the
    /// hashed layout's networks into this one. Costs a sort of the whole family.
    pub fn merge(&mut self, extra: Vec<Entry<A>>, extra_expiries: Vec<(u64, u64)>) {
        let mut exp = std::mem::take(&mut self.expiries);
        exp.retain(|&(id, _)| self.find_alive(id).is_some());
        exp.extend(extra_expiries);
        self.expiries = exp;
        self.expiring = self.expiries.len();
        self.entries.reserve_exact(extra.len());
        self.entries.extend(extra);
        let by_id = std::mem::take(&mut self.by_id);
        self.seal(by_id);
    }

    /// The position of the live entry with this id.
    pub fn find_alive(&self, id: u64) -> Option<usize> {
        let entries = &self.entries;
        let i = self
            .by_id
            .partition_point(|&p| entries.get(p as usize).is_some_and(|e| e.id < id));
        let p = *self.by_id.get(i)? as usize;
        entries
            .get(p)
            .filter(|e| e.id == id && e.is_alive())
            .map(|_| p)
    }

    /// Mark the entry at `pos` removed; returns it as it was.
    pub fn kill(&mut self, pos: usize) -> Option<Entry<A>> {
        let e = self.entries.get_mut(pos).filter(|e| e.is_alive())?;
        let was = *e;
        e.kill();
        self.alive -= 1;
        Some(was)
    }

    /// The expiry of the entry with this id (0 when none is recorded).
    pub fn expiry(&self, id: u64) -> u64 {
        self.expiries
            .binary_search_by_key(&id, |p| p.0)
            .ok()
            .and_then(|i| self.expiries.get(i))
            .map_or(0, |p| p.1)
    }

    /// Call `f` with every live entry whose prefix covers `addr`: one directory step and a
    /// short binary search per prefix length in use.
    #[inline]
    pub fn for_each_cover(&self, addr: A, mut f: impl FnMut(&Entry<A>)) {
        for (word_index, &word) in self.in_use.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let len = (word_index * 64) as u8 + bits.trailing_zeros() as u8;
                bits &= bits - 1;
                let Some(run) = self.runs.get(usize::from(len)) else {
                    continue;
                };
                let (lo, hi) = run.bounds(addr);
                let Some(slice) = self.entries.get(lo..hi) else {
                    continue;
                };
                let key = addr.masked(len);
                let first = slice.partition_point(|e| e.addr.masked(len) < key);
                for e in slice
                    .get(first..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|e| e.addr.masked(len) == key)
                {
                    if e.is_alive() {
                        f(e);
                    }
                }
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry<A>>()
            + self.by_id.capacity() * 4
            + self.expiries.capacity() * 16
            + self.runs.capacity() * std::mem::size_of::<Run>()
            + self
                .runs
                .iter()
                .map(|r| r.dir.capacity() * 4)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(nets: &[(u32, u8, u64)]) -> Dense<u32> {
        let mut d = Dense {
            entries: nets
                .iter()
                .map(|&(a, l, id)| Entry::new(a, l, 0, id))
                .collect(),
            ..Dense::default()
        };
        d.seal(Vec::new());
        d
    }

    fn covers(d: &Dense<u32>, a: u32) -> Vec<u64> {
        let mut ids = vec![];
        d.for_each_cover(a, |e| ids.push(e.id));
        ids.sort_unstable();
        ids
    }

    #[test]
    fn finds_every_cover_with_and_without_a_directory() {
        // 300 /32s (a directory of 6 bits), two /24s, a /0, a duplicate address.
        let mut nets: Vec<(u32, u8, u64)> = (0..300u32)
            .map(|i| (i.wrapping_mul(0x9e37_79b9), 32, u64::from(i) + 10))
            .collect();
        nets.push((0xc000_0207, 24, 1));
        nets.push((0xc000_0200, 24, 2));
        nets.push((0x0102_0304, 0, 3));
        nets.push((0x9e37_79b9, 32, 4));
        let d = sealed(&nets);
        assert_eq!(covers(&d, 0xc000_02ff), vec![1, 2, 3]);
        assert_eq!(covers(&d, 0x9e37_79b9), vec![3, 4, 11]);
        assert_eq!(covers(&d, 0), vec![3, 10]);
        assert_eq!(covers(&d, 0xc000_0300), vec![3]);
        assert!(d.runs.get(32).is_some_and(|r| r.bits == 6));
    }

    #[test]
    fn removal_by_id_and_merge() {
        let mut d = sealed(&[(1, 32, 7), (2, 32, 5), (0x00ab_0000, 8, 9)]);
        let p = d.find_alive(5).expect("present");
        assert_eq!(d.kill(p).map(|e| e.addr), Some(2));
        assert_eq!(d.find_alive(5), None);
        assert_eq!((d.alive, d.dead()), (2, 1));
        assert_eq!(covers(&d, 2), vec![9]);
        d.merge(vec![Entry::new(2, 31, 0, 5)], vec![(5, 99)]);
        assert_eq!((d.alive, d.dead()), (3, 0));
        assert_eq!(covers(&d, 3), vec![5, 9]);
        assert_eq!(d.expiry(5), 99);
        assert_eq!(d.expiry(7), 0);
    }
}
