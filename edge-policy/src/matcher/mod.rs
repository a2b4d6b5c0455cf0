//! The compiled matcher: a policy indexed for lookups, updated in place by deltas.
//!
//! # Layout
//!
//! Networks of a compiled snapshot go to the dense layout ([`dense`]): one array per address
//! family sorted by (prefix length, address), 16 bytes per IPv4 rule and 32 per IPv6 rule
//! (address as received, rule id, prefix length and an interned (flags, incident) number),
//! plus 4 bytes of id order for removals and, for rules that expire, 16 bytes of expiry. A
//! lookup binary-searches the run of each prefix length in use within a bucket of a
//! directory on the top address bits, and finds *every* covering prefix, which the
//! precedence needs (the longest match may be expired, simulate-only or a block under an
//! allow). At a million mixed networks this is about 21 bytes per rule, against 40–52 in
//! the hashed layout below (benches/RESULTS.md, "Dense IP layout").
//!
//! Everything else, and the networks deltas add, live in the hashed layout: four
//! column-oriented slabs ([`slab::Slab`]), one per key type: IPv4 networks (`u32`), IPv6
//! networks (`u128`), API key hashes (`[u8; 32]`) and strings (accounts, pixels, hosts,
//! path prefixes). A slot stores the key, the prefix length or string kind, a flags byte
//! (rule class, simulate, has-expiry), the rule id, the expiry in Unix ms and an interned
//! incident number. No [`Rule`] (with its enums and `String`s) is kept;
//! [`Matcher::to_snapshot`] rebuilds rules from the storage, exactly as they came in (host
//! bits of a network included).
//!
//! Lookup structures of the hashed layout hold `u32` slot numbers only, hashed from the
//! slab's keys:
//!
//! * addresses: one hash table per prefix length (33 for IPv4, 129 for IPv6) keyed by the
//!   masked address, plus a bitmap of the lengths in use;
//! * API key hashes, accounts, pixels and hosts: one hash table each (hosts and pixels
//!   hashed ASCII-case-insensitively; hosts compared so, pixels so or exactly as the route
//!   that found the id says, as [`crate::naive`] compares them).
//! * path prefixes: one hash table keyed by the prefix without its trailing `/`; a lookup
//!   cuts the request path at each segment boundary (only up to the longest prefix in use)
//!   and probes each cut, so its cost is O(path segments).
//! * rule ids: one hash table of slot locations, for deltas.
//!
//! Deltas: a removal marks a dense entry dead in place (found by id in O(log n)) or frees a
//! hashed slot; an upsert goes to the hashed layout. Both cost O(delta size). Once the
//! hashed networks and dead entries outnumber an eighth of the dense ones (and 1024), the
//! delta that got there also merges them into the dense arrays (a sort of each family:
//! amortised O(log n) per rule added).
//!
//! Why not a trie: `prefix-trie` 0.10.1 (a tree bitmap, the crate the design suggested)
//! reports `mem_size()` of 75 bytes per entry for 475k random IPv4 prefixes and 273 bytes per
//! entry for 500k random IPv6 prefixes; its `cover` iterator also allocates per call.
//!
//! Expiry is checked at lookup time against `now_ms`: an expired rule stops matching with no
//! rebuild. Nothing in [`Matcher::evaluate`] allocates; the API key is hashed into a stack
//! array.

mod acc;
mod build;
mod counts;
mod decode;
mod dense;
mod index;
mod key_cache;
mod rules;
mod slab;
mod update;

use counts::Counts;
pub use decode::{Pieces, SlicePieces, Update};
pub use key_cache::KeyHashCache;

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

use hashbrown::{DefaultHashBuilder, HashTable};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::model::{Isolation, KeyHash, Mode, Rule, RuleId, RuleKind, Scope, Target, Version};
use crate::verdict::{Facts, PixelCase, Verdict};
use crate::wire::Snapshot;

use acc::Acc;
use build::Builder;
use dense::{Attrs, Dense, Entry};
use index::{Bits, PrefixTables, StrKind, StrTable};
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
    /// Whether networks go to the dense layout (false: all in the hashed one, as before
    /// issue #15; for comparisons).
    dense: bool,
    attrs: Attrs,
    v4d: Dense<u32>,
    v6d: Dense<u128>,
    /// Networks in the hashed layout.
    hashed_ips: usize,
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
    /// How many rules in the hashed layout have an expiry.
    expiring: usize,
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher {
            version: 0,
            hasher: DefaultHashBuilder::default(),
            dense: true,
            attrs: Attrs::default(),
            v4d: Dense::default(),
            v6d: Dense::default(),
            hashed_ips: 0,
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
        let mut b = Builder::new(&Counts::of(&snapshot.rules), true);
        snapshot.rules.iter().for_each(|r| b.insert(r));
        b.finish(snapshot.version)
    }

    /// [`Matcher::new`] with every network in the hashed layout, as the matcher was before
    /// the dense layout (issue #15), and never merged into it: kept so that benchmarks and
    /// tests can compare the two in one run. Not for production use.
    #[doc(hidden)]
    pub fn new_hashed_layout(snapshot: &Snapshot) -> Matcher {
        let mut b = Builder::new(&Counts::of(&snapshot.rules), false);
        snapshot.rules.iter().for_each(|r| b.insert(r));
        b.finish(snapshot.version)
    }

    /// Compile a snapshot, consuming it (frees each rule's strings as it goes).
    pub fn from_snapshot(snapshot: Snapshot) -> Matcher {
        let mut b = Builder::new(&Counts::of(&snapshot.rules), true);
        for r in snapshot.rules {
            b.insert(&r);
        }
        b.finish(snapshot.version)
    }

    /// The policy version this matcher enforces.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.ids.len() + self.v4d.alive + self.v6d.alive
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any rule targets an API key: when not, a request's key need not be read.
    pub fn has_api_keys(&self) -> bool {
        !self.key_index.is_empty()
    }

    /// Whether any rule has an expiry: when not, [`Matcher::evaluate`] ignores `now_ms`, so
    /// the caller need not ask for the time.
    pub fn has_expiring(&self) -> bool {
        self.expiring > 0 || self.v4d.expiring > 0 || self.v6d.expiring > 0
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
                let a = u32::from(a);
                self.v4d
                    .for_each_cover(a, |e| acc.consider(Some(self.dense_meta(&self.v4d, e))));
                self.v4_index
                    .for_each_cover(bh, &self.v4, a, |s| acc.consider(self.v4.meta(s)));
            }
            Some(IpAddr::V6(a)) => {
                let a = u128::from(a);
                self.v6d
                    .for_each_cover(a, |e| acc.consider(Some(self.dense_meta(&self.v6d, e))));
                self.v6_index
                    .for_each_cover(bh, &self.v6, a, |s| acc.consider(self.v6.meta(s)));
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

    /// What the precedence needs of a dense entry (the incident is not needed).
    #[inline]
    fn dense_meta<A: Bits>(&self, d: &Dense<A>, e: &Entry<A>) -> Meta {
        let flags = self.attrs.flags(e.attr());
        Meta {
            id: e.id,
            expires_at_ms: rules::dense_expiry(d, e, flags),
            incident: slab::NO_INCIDENT,
            flags,
        }
    }

    /// Approximate heap bytes held by the matcher (allocated capacity of its tables and
    /// columns, plus string contents). For logs and sizing, not exact.
    pub fn heap_bytes(&self) -> usize {
        let str_bytes: usize = self.strs.key.iter().map(|s| s.len()).sum();
        self.ids.allocation_size()
            + self.attrs.heap_bytes()
            + self.v4d.heap_bytes()
            + self.v6d.heap_bytes()
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
        let (n4, n6): (usize, usize) = (c.v4.iter().sum(), c.v6.iter().sum());
        let mut hashed = c.total;
        if self.dense {
            // Networks go to the dense arrays; deltas start the hashed ones small.
            self.v4d.entries.reserve_exact(n4);
            self.v6d.entries.reserve_exact(n6);
            hashed -= n4 + n6;
        } else {
            self.v4.reserve_exact(room(n4));
            self.v6.reserve_exact(room(n6));
            self.v4_index.reserve(bh, &self.v4, &c.v4);
            self.v6_index.reserve(bh, &self.v6, &c.v6);
        }
        self.keys.reserve_exact(room(c.keys));
        self.strs.reserve_exact(room(c.strs.iter().sum()));
        let key_slab = &self.keys;
        self.key_index
            .reserve(c.keys, |&s| key_slab.key(s).map_or(0, |k| bh.hash_one(k)));
        let [a, p, h, pa] = c.strs;
        self.accounts.reserve(bh, StrKind::Account, &self.strs, a);
        self.pixels.reserve(bh, StrKind::Pixel, &self.strs, p);
        self.hosts.reserve(bh, StrKind::Host, &self.strs, h);
        self.paths.reserve(bh, StrKind::Path, &self.strs, pa);
        let (ids, v4s, v6s, ks, ss) = (&mut self.ids, &self.v4, &self.v6, &self.keys, &self.strs);
        ids.reserve(hashed, |&l| hash_loc(bh, v4s, v6s, ks, ss, l));
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
