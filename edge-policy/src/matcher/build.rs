//! Compiling a snapshot: networks are appended to the dense layout in arrival order and
//! sorted once at the end; every other rule goes through the ordinary upsert.
//!
//! A snapshot's ids should be unique, but if one repeats the last rule with it wins, as if
//! it came as an upsert. Appending does not look ids up, so repeats are settled at the end:
//! within a family the later position is the later rule; across kinds each rule records
//! how many IPv4 (and IPv6) entries came before it, which orders it against any entry of
//! that family without a sequence number per entry.

use super::dense::{Dense, Entry};
use super::index::Bits;
use super::{flags_of, key_of, Counts, Key, Matcher};
use crate::model::{Rule, RuleId, Version};

/// A matcher being compiled from a snapshot's rules.
pub(super) struct Builder {
    m: Matcher,
    /// Per IPv6 entry: the number of IPv4 entries before it.
    v6_after_v4: Vec<u32>,
    /// The rules outside the dense layout: id, IPv4 and IPv6 entries before it.
    others: Vec<(RuleId, u32, u32)>,
}

impl Builder {
    /// A builder for rules counted in `counts`; `dense: false` keeps every network in the
    /// hashed layout (the layout before issue #15, for comparisons).
    pub fn new(counts: &Counts, dense: bool) -> Builder {
        let mut m = Matcher {
            dense,
            ..Matcher::default()
        };
        m.reserve(counts);
        let v6 = if dense { counts.v6.iter().sum() } else { 0 };
        Builder {
            m,
            v6_after_v4: Vec::with_capacity(v6),
            others: Vec::new(),
        }
    }

    pub fn insert(&mut self, r: &Rule) {
        let m = &mut self.m;
        let (n4, n6) = (m.v4d.entries.len() as u32, m.v6d.entries.len() as u32);
        if m.dense {
            let flags = flags_of(r);
            let attr = match key_of(&r.kind) {
                Key::V4(_) | Key::V6(_) => m.attrs.intern(&m.hasher, flags, r.incident),
                _ => None,
            };
            let expiry = r.expires_at_ms;
            match (key_of(&r.kind), attr) {
                (Key::V4(n), Some(attr)) => {
                    let e = Entry::new(u32::from(n.addr()), n.prefix_len(), attr, r.id);
                    push(&mut m.v4d, e, expiry);
                    return;
                }
                (Key::V6(n), Some(attr)) => {
                    let e = Entry::new(u128::from(n.addr()), n.prefix_len(), attr, r.id);
                    push(&mut m.v6d, e, expiry);
                    self.v6_after_v4.push(n4);
                    return;
                }
                _ => {}
            }
        }
        m.upsert(r);
        if m.dense {
            self.others.push((r.id, n4, n6));
        }
    }

    /// Settle repeated ids and sort the dense layout.
    pub fn finish(self, version: Version) -> Matcher {
        let Builder {
            mut m,
            v6_after_v4,
            mut others,
        } = self;
        m.version = version;
        if !m.dense {
            return m;
        }
        let mut o4 = last_per_id(&mut m.v4d);
        let mut o6 = last_per_id(&mut m.v6d);
        // An id in both families: the later entry stays.
        let (mut i, mut j) = (0, 0);
        while let (Some(&p), Some(&q)) = (o4.get(i), o6.get(j)) {
            let (Some(a), Some(b)) = (
                m.v4d.entries.get(p as usize).copied(),
                m.v6d.entries.get(q as usize).copied(),
            ) else {
                break;
            };
            if !a.is_alive() {
                i += 1;
            } else if !b.is_alive() || b.id < a.id {
                j += 1;
            } else if a.id < b.id {
                i += 1;
            } else {
                if v6_after_v4.get(q as usize).is_some_and(|&c| p >= c) {
                    m.v6d.kill(q as usize);
                } else {
                    m.v4d.kill(p as usize);
                }
                i += 1;
                j += 1;
            }
        }
        drop(v6_after_v4);
        // An id both in the hashed layout and among the networks: the later rule stays.
        // (The hashed layout holds the last of its own repeats, so its last record counts.)
        others.reverse();
        others.sort_by_key(|o| o.0);
        others.dedup_by_key(|o| o.0);
        for (id, n4, n6) in others {
            if let Some(p) = alive_in(&m.v4d, &o4, id) {
                if p >= n4 as usize {
                    m.remove_hashed(id);
                } else {
                    m.v4d.kill(p);
                }
            }
            if let Some(q) = alive_in(&m.v6d, &o6, id) {
                if q >= n6 as usize {
                    m.remove_hashed(id);
                } else {
                    m.v6d.kill(q);
                }
            }
        }
        m.v4d.expiries = expiries_by_id(&m.v4d);
        m.v6d.expiries = expiries_by_id(&m.v6d);
        m.v4d.expiring = m.v4d.expiries.len();
        m.v6d.expiring = m.v6d.expiries.len();
        o4.clear();
        o6.clear();
        m.v4d.seal(o4);
        m.v6d.seal(o6);
        m
    }
}

fn push<A: Bits>(d: &mut Dense<A>, e: Entry<A>, expiry: Option<u64>) {
    if let Some(at) = expiry {
        // Keyed by position while building (see `expiries_by_id`).
        d.expiries.push((d.entries.len() as u64, at));
    }
    d.entries.push(e);
    d.alive += 1;
}

/// Positions sorted by (id, position); of entries with the same id all but the last are
/// removed.
fn last_per_id<A: Bits>(d: &mut Dense<A>) -> Vec<u32> {
    let entries = &d.entries;
    let mut order: Vec<u32> = (0..entries.len() as u32).collect();
    // Snapshots usually come sorted by id: then the order is the arrival order.
    if entries
        .windows(2)
        .any(|w| w.first().map(|e| e.id) >= w.get(1).map(|e| e.id))
    {
        order.sort_unstable_by_key(|&p| (entries.get(p as usize).map_or(0, |e| e.id), p));
    }
    let repeated: Vec<u32> = order
        .windows(2)
        .filter_map(|w| match (w.first(), w.get(1)) {
            (Some(&a), Some(&b))
                if entries.get(a as usize).map(|e| e.id)
                    == entries.get(b as usize).map(|e| e.id) =>
            {
                Some(a)
            }
            _ => None,
        })
        .collect();
    for p in repeated {
        d.kill(p as usize);
    }
    order
}

/// The position of the live entry with `id`, given positions sorted by (id, position).
fn alive_in<A: Bits>(d: &Dense<A>, order: &[u32], id: RuleId) -> Option<usize> {
    let at = |p: u32| d.entries.get(p as usize);
    let first = order.partition_point(|&p| at(p).is_some_and(|e| e.id < id));
    order
        .get(first..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&p| at(p).is_some_and(|e| e.id == id))
        .find(|&&p| at(p).is_some_and(Entry::is_alive))
        .map(|&p| p as usize)
}

/// The build-time expiries (keyed by position) of live entries, keyed by id.
fn expiries_by_id<A: Bits>(d: &Dense<A>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = d
        .expiries
        .iter()
        .filter_map(|&(p, at)| {
            let e = d.entries.get(p as usize)?;
            e.is_alive().then_some((e.id, at))
        })
        .collect();
    out.sort_unstable_by_key(|p| p.0);
    out
}
