//! The compiled matcher: a policy indexed for lookups, updated in place by deltas.
//!
//! # Layout
//!
//! Rules live in four column-oriented slabs ([`slab::Slab`]), one per key type: IPv4 networks
//! (`u32`), IPv6 networks (`u128`), API key hashes (`[u8; 32]`) and strings (accounts,
//! pixels, hosts, path prefixes). A slot stores the key, the prefix length or string kind,
//! a flags byte (rule class, simulate, has-expiry), the rule id, the expiry in Unix ms and an
//! interned incident number: 26 bytes for an IPv4 rule, 38 for IPv6. No [`Rule`] (with its
//! enums and `String`s) is kept; [`Matcher::to_snapshot`] rebuilds rules from the slots,
//! exactly as they came in (host bits of a network included).
//!
//! Lookup structures hold `u32` slot numbers only, hashed from the slab's keys:
//!
//! * addresses: one hash table per prefix length (33 for IPv4, 129 for IPv6) keyed by the
//!   masked address, plus a bitmap of the lengths in use. A lookup probes each length in use
//!   once, so its cost is bounded by the number of distinct lengths (at most 33 / 129), not
//!   the number of rules, and it finds *every* covering prefix, which the precedence needs
//!   (the longest match may be expired, simulate-only or a block under an allow).
//! * API key hashes, accounts, pixels and hosts: one hash table each (hosts and pixels
//!   hashed ASCII-case-insensitively; hosts compared so, pixels so or exactly as the route
//!   that found the id says, as [`crate::naive`] compares them).
//! * path prefixes: one hash table keyed by the prefix without its trailing `/`; a lookup
//!   cuts the request path at each segment boundary (only up to the longest prefix in use)
//!   and probes each cut, so its cost is O(path segments).
//! * rule ids: one hash table of slot locations, for deltas.
//!
//! Why not a trie: `prefix-trie` 0.10.1 (a tree bitmap, the crate the design suggested)
//! reports `mem_size()` of 75 bytes per entry for 475k random IPv4 prefixes and 273 bytes per
//! entry for 500k random IPv6 prefixes (peak RSS 117 MiB for the two, before any per-rule
//! data); its `cover` iterator also allocates per call. The per-length tables cost 5 bytes
//! per bucket (about 7 bytes per rule at the usual load), so a million IPv4 rules with ids,
//! expiries and the id index fit in about 45 MB. See the crate's tests (`--ignored`
//! `million_rules`) for the measurement.
//!
//! Expiry is checked at lookup time against `now_ms`: an expired rule stops matching with no
//! rebuild. Nothing in [`Matcher::evaluate`] allocates; the API key is hashed into a stack
//! array.

mod acc;
mod counts;
mod decode;
mod index;
mod key_cache;
mod slab;

use counts::Counts;
pub use decode::{Pieces, SlicePieces, Update};
pub use key_cache::KeyHashCache;

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::{DefaultHashBuilder, HashTable};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::model::{Isolation, KeyHash, Mode, Rule, RuleId, RuleKind, Scope, Target, Version};
use crate::verdict::{Facts, PixelCase, Verdict};
use crate::wire::{ApplyError, Delta, Snapshot};

use acc::Acc;
use index::{path_key, PrefixTables, StrKind, StrTable};
use slab::{Interner, Meta, Slab};

/// Which slab a location points into (top two bits of a location).
const TAG_V4: u32 = 0;
const TAG_V6: u32 = 1;
const TAG_KEY: u32 = 2;
const TAG_STR: u32 = 3;
const SLOT_MASK: u32 = (1 << 30) - 1;

fn loc(tag: u32, slot: u32) -> u32 {
    (tag << 30) | (slot & SLOT_MASK)
}

/// A policy compiled for lookups.
#[derive(Debug, Clone)]
pub struct Matcher {
    version: Version,
    hasher: DefaultHashBuilder,
    /// Rule id -> location (slab tag and slot).
    ids: HashTable<u32>,
    incidents: Interner,
    v4: Slab<u32>,
    v4_index: PrefixTables<u32>,
    v6: Slab<u128>,
    v6_index: PrefixTables<u128>,
    keys: Slab<[u8; 32]>,
    key_index: HashTable<u32>,
    strs: Slab<Box<str>>,
    accounts: StrTable,
    pixels: StrTable,
    hosts: StrTable,
    paths: StrTable,
    /// How many path prefixes of each key length: lookups cut paths no longer than the max.
    path_lens: BTreeMap<usize, u32>,
    /// How many rules have an expiry.
    expiring: usize,
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher {
            version: 0,
            hasher: DefaultHashBuilder::default(),
            ids: HashTable::new(),
            incidents: Interner::default(),
            v4: Slab::default(),
            v4_index: PrefixTables::default(),
            v6: Slab::default(),
            v6_index: PrefixTables::default(),
            keys: Slab::default(),
            key_index: HashTable::new(),
            strs: Slab::default(),
            accounts: StrTable::default(),
            pixels: StrTable::default(),
            hosts: StrTable::default(),
            paths: StrTable::default(),
            path_lens: BTreeMap::new(),
            expiring: 0,
        }
    }
}

/// The rule class and flags byte of a rule (see [`slab`]).
fn flags_of(r: &Rule) -> u8 {
    let class = match &r.kind {
        RuleKind::Allow(_) => slab::CLASS_ALLOW,
        RuleKind::Block(_) => slab::CLASS_BLOCK,
        RuleKind::Isolate {
            action: Isolation::Block,
            ..
        } => slab::CLASS_ISO_BLOCK,
        RuleKind::Isolate {
            action: Isolation::ReadOnly,
            ..
        } => slab::CLASS_ISO_READ_ONLY,
        RuleKind::Isolate {
            action: Isolation::PixelKill,
            ..
        } => slab::CLASS_ISO_PIXEL_KILL,
    };
    let mut f = class;
    if r.mode == Mode::Simulate {
        f |= slab::FLAG_SIMULATE;
    }
    if r.expires_at_ms.is_some() {
        f |= slab::FLAG_EXPIRES;
    }
    f
}

/// Where a rule is indexed.
enum Key<'a> {
    V4(Ipv4Net),
    V6(Ipv6Net),
    Hash(&'a KeyHash),
    Str(StrKind, &'a str),
}

fn key_of(kind: &RuleKind) -> Key<'_> {
    let target = match kind {
        RuleKind::Allow(t) | RuleKind::Block(t) => t,
        RuleKind::Isolate { scope, .. } => {
            return match scope {
                Scope::Host(h) => Key::Str(StrKind::Host, h),
                Scope::PathPrefix(p) => Key::Str(StrKind::Path, p),
                Scope::Pixel(p) => Key::Str(StrKind::Pixel, p),
            }
        }
    };
    match target {
        Target::Ip(IpNet::V4(n)) => Key::V4(*n),
        Target::Ip(IpNet::V6(n)) => Key::V6(*n),
        Target::ApiKey(h) => Key::Hash(h),
        Target::Account(a) => Key::Str(StrKind::Account, a),
        Target::Pixel(p) => Key::Str(StrKind::Pixel, p),
        Target::Host(h) => Key::Str(StrKind::Host, h),
        Target::PathPrefix(p) => Key::Str(StrKind::Path, p),
    }
}

impl Matcher {
    /// Compile a snapshot. Rule ids should be unique; if one repeats, the last rule with that
    /// id wins (as if the later one came as an upsert).
    pub fn new(snapshot: &Snapshot) -> Matcher {
        let mut m = Matcher {
            version: snapshot.version,
            ..Matcher::default()
        };
        m.reserve(&Counts::of(&snapshot.rules));
        for r in &snapshot.rules {
            m.upsert(r);
        }
        m
    }

    /// Compile a snapshot, consuming it (frees each rule's strings as it goes).
    pub fn from_snapshot(snapshot: Snapshot) -> Matcher {
        let mut m = Matcher {
            version: snapshot.version,
            ..Matcher::default()
        };
        m.reserve(&Counts::of(&snapshot.rules));
        for r in snapshot.rules {
            m.upsert(&r);
        }
        m
    }

    /// The policy version this matcher enforces.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether any rule targets an API key: when not, a request's key need not be read.
    pub fn has_api_keys(&self) -> bool {
        !self.key_index.is_empty()
    }

    /// Whether any rule has an expiry: when not, [`Matcher::evaluate`] ignores `now_ms`, so
    /// the caller need not ask for the time.
    pub fn has_expiring(&self) -> bool {
        self.expiring > 0
    }

    /// Whether any rule is on a path prefix (a target or an isolation scope): when not, the
    /// request's path need not be canonicalised for matching.
    pub fn has_paths(&self) -> bool {
        !self.path_lens.is_empty()
    }

    /// Whether any rule is on a pixel id: when not, pixel ids need not be extracted.
    pub fn has_pixels(&self) -> bool {
        !self.pixels.is_empty()
    }

    /// Whether any rule targets an account: when not, a request's account (header or bearer
    /// JWT subject) need not be read.
    pub fn has_accounts(&self) -> bool {
        !self.accounts.is_empty()
    }

    /// Apply a delta in place. Costs O(delta size) hash operations, not a rebuild.
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
        Ok(())
    }

    /// The policy this matcher enforces, rules sorted by id, each exactly as received.
    pub fn to_snapshot(&self) -> Snapshot {
        let mut rules = Vec::with_capacity(self.len());
        self.for_each_rule(&mut |r| rules.push(r));
        rules.sort_unstable_by_key(|r| r.id);
        Snapshot {
            version: self.version,
            rules,
        }
    }

    /// Every rule, rebuilt one at a time in storage order (not sorted).
    pub fn for_each_rule(&self, each: &mut dyn FnMut(Rule)) {
        for s in self.v4.live_slots() {
            let net = self
                .v4
                .key(s)
                .zip(self.v4.aux(s))
                .and_then(|(&a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).ok());
            if let (Some(net), Some(m)) = (net, self.v4.meta(s)) {
                if let Some(r) = self.rule_of(m, Target::Ip(IpNet::V4(net)), None) {
                    each(r);
                }
            }
        }
        for s in self.v6.live_slots() {
            let net = self
                .v6
                .key(s)
                .zip(self.v6.aux(s))
                .and_then(|(&a, l)| Ipv6Net::new(Ipv6Addr::from(a), l).ok());
            if let (Some(net), Some(m)) = (net, self.v6.meta(s)) {
                if let Some(r) = self.rule_of(m, Target::Ip(IpNet::V6(net)), None) {
                    each(r);
                }
            }
        }
        for s in self.keys.live_slots() {
            if let (Some(&k), Some(m)) = (self.keys.key(s), self.keys.meta(s)) {
                if let Some(r) = self.rule_of(m, Target::ApiKey(KeyHash(k)), None) {
                    each(r);
                }
            }
        }
        for s in self.strs.live_slots() {
            let (Some(k), Some(kind), Some(m)) = (
                self.strs.key(s),
                self.strs.aux(s).and_then(StrKind::from_aux),
                self.strs.meta(s),
            ) else {
                continue;
            };
            let text = String::from(&**k);
            let scope = match kind {
                StrKind::Host => Some(Scope::Host(text.clone())),
                StrKind::Path => Some(Scope::PathPrefix(text.clone())),
                StrKind::Pixel => Some(Scope::Pixel(text.clone())),
                StrKind::Account => None,
            };
            let target = match kind {
                StrKind::Host => Target::Host(text),
                StrKind::Path => Target::PathPrefix(text),
                StrKind::Pixel => Target::Pixel(text),
                StrKind::Account => Target::Account(text),
            };
            if let Some(r) = self.rule_of(m, target, scope) {
                each(r);
            }
        }
    }

    /// Rebuild a rule from its slot. Isolations need `scope`.
    fn rule_of(&self, m: Meta, target: Target, scope: Option<Scope>) -> Option<Rule> {
        let iso = |action| {
            scope
                .clone()
                .map(|scope| RuleKind::Isolate { scope, action })
        };
        let kind = match m.class() {
            slab::CLASS_ALLOW => RuleKind::Allow(target),
            slab::CLASS_BLOCK => RuleKind::Block(target),
            slab::CLASS_ISO_BLOCK => iso(Isolation::Block)?,
            slab::CLASS_ISO_READ_ONLY => iso(Isolation::ReadOnly)?,
            slab::CLASS_ISO_PIXEL_KILL => iso(Isolation::PixelKill)?,
            _ => return None,
        };
        Some(Rule {
            id: m.id,
            incident: self
                .incidents
                .get(m.incident)
                .filter(|_| m.incident != slab::NO_INCIDENT),
            mode: if m.flags & slab::FLAG_SIMULATE != 0 {
                Mode::Simulate
            } else {
                Mode::Enforce
            },
            expires_at_ms: (m.flags & slab::FLAG_EXPIRES != 0).then_some(m.expires_at_ms),
            kind,
        })
    }

    /// Decide on a request. `now_ms` is Unix time in milliseconds. Equal to
    /// [`crate::naive::evaluate`] over the same rules; allocates nothing.
    pub fn evaluate(&self, facts: &Facts<'_>, now_ms: u64) -> Verdict {
        self.evaluate_with(facts, &mut KeyHash::of, now_ms)
    }

    /// [`Matcher::evaluate`], with `key_hash` computing the SHA-256 of `facts.api_key` (only
    /// called when the policy has API-key rules): a [`KeyHashCache`] saves hashing a key
    /// seen before. `key_hash` must return `KeyHash::of` of its argument.
    pub fn evaluate_with(
        &self,
        facts: &Facts<'_>,
        key_hash: &mut dyn FnMut(&str) -> KeyHash,
        now_ms: u64,
    ) -> Verdict {
        let mut acc = Acc {
            facts,
            now_ms,
            best: None,
            best_sim: None,
        };
        let bh = &self.hasher;
        match facts.client_ip {
            Some(IpAddr::V4(a)) => {
                self.v4_index
                    .for_each_cover(bh, &self.v4, u32::from(a), |s| {
                        acc.consider(self.v4.meta(s))
                    });
            }
            Some(IpAddr::V6(a)) => {
                self.v6_index
                    .for_each_cover(bh, &self.v6, u128::from(a), |s| {
                        acc.consider(self.v6.meta(s))
                    });
            }
            None => {}
        }
        if let Some(key) = facts.api_key.filter(|_| !self.key_index.is_empty()) {
            let h = key_hash(key).0;
            for &s in self.key_index.iter_hash(bh.hash_one(h)) {
                if self.keys.key(s) == Some(&h) {
                    acc.consider(self.keys.meta(s));
                }
            }
        }
        let strs = &self.strs;
        let mut on_str = |s| acc.consider(strs.meta(s));
        if let Some(a) = facts.account {
            self.accounts
                .for_each_match(bh, StrKind::Account, strs, a, &mut on_str);
        }
        if let Some(px) = facts.pixel {
            let (px_table, id) = (&self.pixels, px.id);
            match px.case {
                PixelCase::Insensitive => {
                    px_table.for_each_match(bh, StrKind::Pixel, strs, id, &mut on_str)
                }
                PixelCase::Sensitive => {
                    px_table.for_each_exact(bh, StrKind::Pixel, strs, id, &mut on_str)
                }
            }
        }
        self.hosts
            .for_each_match(bh, StrKind::Host, strs, facts.host, &mut on_str);
        if let Some((&max_len, _)) = self.path_lens.last_key_value() {
            let path = facts.path;
            // Prefixes "" and "/" match every path.
            self.paths
                .for_each_match(bh, StrKind::Path, strs, "", &mut on_str);
            // Every cut of the path at a segment boundary: before a '/' or at its end.
            let limit = path.len().min(max_len);
            for (i, &b) in path.as_bytes().iter().enumerate().take(limit + 1).skip(1) {
                if b == b'/' {
                    if let Some(cut) = path.get(..i) {
                        self.paths
                            .for_each_match(bh, StrKind::Path, strs, cut, &mut on_str);
                    }
                }
            }
            if path.len() <= max_len && !path.is_empty() {
                self.paths
                    .for_each_match(bh, StrKind::Path, strs, path, &mut on_str);
            }
        }
        acc.verdict()
    }

    /// Approximate heap bytes held by the matcher (allocated capacity of its tables and
    /// columns, plus string contents). For logs and sizing, not exact.
    pub fn heap_bytes(&self) -> usize {
        let str_bytes: usize = self.strs.key.iter().map(|s| s.len()).sum();
        self.ids.allocation_size()
            + self.incidents.heap_bytes()
            + self.v4.heap_bytes()
            + self.v4_index.heap_bytes()
            + self.v6.heap_bytes()
            + self.v6_index.heap_bytes()
            + self.keys.heap_bytes()
            + self.key_index.allocation_size()
            + self.strs.heap_bytes()
            + str_bytes
            + self.accounts.heap_bytes()
            + self.pixels.heap_bytes()
            + self.hosts.heap_bytes()
            + self.paths.heap_bytes()
            + self.path_lens.len() * 32
    }

    /// Size every structure for `counts` more rules, so building does not over-allocate.
    fn reserve(&mut self, c: &Counts) {
        let bh = &self.hasher;
        // Columns get ~3% headroom: without it the first delta that adds a rule doubles a
        // column (at a million rules: +20 MiB and ~9 ms of copying, benches/RESULTS.md).
        let room = |n: usize| n + n / 32 + usize::from(n > 0) * 16;
        self.v4.reserve_exact(room(c.v4.iter().sum()));
        self.v6.reserve_exact(room(c.v6.iter().sum()));
        self.keys.reserve_exact(room(c.keys));
        self.strs.reserve_exact(room(c.strs.iter().sum()));
        self.v4_index.reserve(bh, &self.v4, &c.v4);
        self.v6_index.reserve(bh, &self.v6, &c.v6);
        let key_slab = &self.keys;
        self.key_index
            .reserve(c.keys, |&s| key_slab.key(s).map_or(0, |k| bh.hash_one(k)));
        let [a, p, h, pa] = c.strs;
        self.accounts.reserve(bh, StrKind::Account, &self.strs, a);
        self.pixels.reserve(bh, StrKind::Pixel, &self.strs, p);
        self.hosts.reserve(bh, StrKind::Host, &self.strs, h);
        self.paths.reserve(bh, StrKind::Path, &self.strs, pa);
        let (ids, v4s, v6s, ks, ss) = (&mut self.ids, &self.v4, &self.v6, &self.keys, &self.strs);
        ids.reserve(c.total, |&l| hash_loc(bh, v4s, v6s, ks, ss, l));
    }

    /// Insert a rule, replacing any rule with the same id.
    fn upsert(&mut self, r: &Rule) {
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
                let (v4, v6, ks, ss) = (&self.v4, &self.v6, &self.keys, &self.strs);
                self.ids
                    .insert_unique(bh.hash_one(r.id), l, |&x| hash_loc(bh, v4, v6, ks, ss, x));
            }
            // Only past 2^30 rules of one kind, which no memory holds: drop the rule.
            None => self.incidents.release(bh, meta.incident),
        }
    }

    /// Remove the rule with this id, if any.
    fn remove(&mut self, id: RuleId) -> bool {
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

fn id_at(
    v4: &Slab<u32>,
    v6: &Slab<u128>,
    keys: &Slab<[u8; 32]>,
    strs: &Slab<Box<str>>,
    l: u32,
) -> Option<RuleId> {
    let slot = l & SLOT_MASK;
    match l >> 30 {
        TAG_V4 => v4.id(slot),
        TAG_V6 => v6.id(slot),
        TAG_KEY => keys.id(slot),
        _ => strs.id(slot),
    }
}

fn hash_loc(
    bh: &DefaultHashBuilder,
    v4: &Slab<u32>,
    v6: &Slab<u128>,
    keys: &Slab<[u8; 32]>,
    strs: &Slab<Box<str>>,
    l: u32,
) -> u64 {
    id_at(v4, v6, keys, strs, l).map_or(0, |id| bh.hash_one(id))
}
