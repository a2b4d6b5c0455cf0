//! Lookup structures over the slabs: one hash table of slot numbers per prefix length for
//! addresses, and hash tables of slot numbers for keys and strings.
//!
//! Tables hold `u32` slot numbers only (4 bytes + 1 control byte per bucket); hashes and
//! equality are computed from the slab's key column, so nothing is stored twice. Several
//! rules with the same key are several entries with the same hash, found together by
//! `iter_hash`.

use std::hash::{BuildHasher, Hash, Hasher};

use hashbrown::{DefaultHashBuilder, HashTable};

use super::slab::Slab;

/// An address as an unsigned integer, most significant bit first.
pub(super) trait Bits: Copy + Ord + Hash {
    /// Number of bits (32 or 128).
    const WIDTH: u8;
    /// The address with every bit past `len` cleared.
    fn masked(self, len: u8) -> Self;
    /// The first 16 bits.
    fn top16(self) -> usize;
    /// The first `k` bits (`k` at most 16).
    fn top(self, k: u8) -> usize;
}

impl Bits for u32 {
    const WIDTH: u8 = 32;
    fn masked(self, len: u8) -> u32 {
        match len {
            0 => 0,
            l if l >= 32 => self,
            l => self & (u32::MAX << (32 - u32::from(l))),
        }
    }
    fn top16(self) -> usize {
        (self >> 16) as usize
    }
    fn top(self, k: u8) -> usize {
        match k {
            0 => 0,
            k => (self >> (32 - u32::from(k.min(32)))) as usize,
        }
    }
}

impl Bits for u128 {
    const WIDTH: u8 = 128;
    fn masked(self, len: u8) -> u128 {
        match len {
            0 => 0,
            l if l >= 128 => self,
            l => self & (u128::MAX << (128 - u32::from(l))),
        }
    }
    fn top16(self) -> usize {
        (self >> 112) as usize
    }
    fn top(self, k: u8) -> usize {
        match k {
            0 => 0,
            k => (self >> (128 - u32::from(k.min(32)))) as usize,
        }
    }
}

/// Entries in one family past which the top-16 filter is built.
const FILTER_MIN: usize = 4096;

/// One hash table per prefix length (0..=WIDTH), keyed by the masked address, and a bitmap
/// of the lengths in use so a lookup probes only those.
///
/// With more than [`FILTER_MIN`] entries a filter is added: for each value of an address's
/// first 16 bits, the set of lengths >= 16 that have an entry starting with those bits
/// (65536 x 1 word for IPv4 = 256 KiB, x 4 words for IPv6 = 1 MiB). A lookup then probes
/// only the lengths under /16 in use plus the lengths its /16 has, instead of every length
/// in use. Removals leave the filter's bits set (a stale bit costs one useless probe, never
/// a missed match); a rebuild from a snapshot starts clean.
#[derive(Clone, Debug)]
pub(super) struct PrefixTables<A> {
    tables: Vec<HashTable<u32>>,
    in_use: [u64; 3],
    entries: usize,
    filter: Vec<u32>,
    _addr: std::marker::PhantomData<A>,
}

impl<A: Bits> Default for PrefixTables<A> {
    fn default() -> Self {
        PrefixTables {
            tables: (0..=A::WIDTH).map(|_| HashTable::new()).collect(),
            in_use: [0; 3],
            entries: 0,
            filter: Vec::new(),
            _addr: std::marker::PhantomData,
        }
    }
}

impl<A: Bits> PrefixTables<A> {
    /// Make room for `counts[len]` more entries of each length.
    pub fn reserve(&mut self, bh: &DefaultHashBuilder, slab: &Slab<A>, counts: &[usize]) {
        for (len, (t, &n)) in self.tables.iter_mut().zip(counts).enumerate() {
            let len = len as u8;
            t.reserve(n, |&s| hash_slot(bh, slab, s, len));
        }
    }

    pub fn insert(&mut self, bh: &DefaultHashBuilder, slab: &Slab<A>, slot: u32, len: u8) {
        let Some(&addr) = slab.key(slot) else { return };
        let Some(t) = self.tables.get_mut(usize::from(len)) else {
            return;
        };
        t.insert_unique(bh.hash_one(addr.masked(len)), slot, |&s| {
            hash_slot(bh, slab, s, len)
        });
        if let Some(w) = self.in_use.get_mut(usize::from(len / 64)) {
            *w |= 1 << (len % 64);
        }
        self.entries += 1;
        if !self.filter.is_empty() {
            self.mark(addr, len);
        } else if self.entries > FILTER_MIN {
            self.build_filter(slab);
        }
    }

    /// Words per /16 in the filter: one bit per length 16..=WIDTH.
    fn stride() -> usize {
        usize::from(A::WIDTH - 16) / 32 + 1
    }

    fn mark(&mut self, addr: A, len: u8) {
        if len < 16 {
            return;
        }
        let bit = usize::from(len - 16);
        let i = addr.top16() * Self::stride() + bit / 32;
        if let Some(w) = self.filter.get_mut(i) {
            *w |= 1 << (bit % 32);
        }
    }

    fn build_filter(&mut self, slab: &Slab<A>) {
        self.filter = vec![0; 65536 * Self::stride()];
        let mut marks = Vec::new();
        for (len, t) in self.tables.iter().enumerate().skip(16) {
            marks.extend(
                t.iter()
                    .filter_map(|&s| slab.key(s))
                    .map(|&a| (a, len as u8)),
            );
        }
        for (a, l) in marks {
            self.mark(a, l);
        }
    }

    /// The lengths a lookup of `addr` must probe (bit L of the 192-bit mask is length L).
    fn lengths_for(&self, addr: A) -> [u64; 3] {
        if self.filter.is_empty() {
            return self.in_use;
        }
        let mut m = [self.in_use[0] & 0xffff, 0, 0];
        let base = addr.top16() * Self::stride();
        for k in 0..Self::stride() {
            // Bit b of word k is length 16 + 32k + b.
            let w = u128::from(self.filter.get(base + k).copied().unwrap_or(0));
            let shifted = w << (16 + 32 * k);
            m[0] |= shifted as u64;
            m[1] |= (shifted >> 64) as u64;
            if k == 3 {
                // Bits 16.. of the last word are lengths 128..: past the u128 above.
                m[2] |= (w >> 16) as u64;
            }
        }
        [
            m[0] & self.in_use[0],
            m[1] & self.in_use[1],
            m[2] & self.in_use[2],
        ]
    }

    /// Remove a slot; call before the slab releases it (the hash comes from its key).
    pub fn remove(&mut self, bh: &DefaultHashBuilder, slab: &Slab<A>, slot: u32, len: u8) {
        let Some(&addr) = slab.key(slot) else { return };
        let Some(t) = self.tables.get_mut(usize::from(len)) else {
            return;
        };
        if let Ok(e) = t.find_entry(bh.hash_one(addr.masked(len)), |&s| s == slot) {
            e.remove();
            self.entries -= 1;
        }
        if t.is_empty() {
            if let Some(w) = self.in_use.get_mut(usize::from(len / 64)) {
                *w &= !(1 << (len % 64));
            }
        }
    }

    /// Call `f` with every slot whose prefix covers `addr`: one probe per prefix length in use.
    pub fn for_each_cover(
        &self,
        bh: &DefaultHashBuilder,
        slab: &Slab<A>,
        addr: A,
        mut f: impl FnMut(u32),
    ) {
        for (word_index, word) in self.lengths_for(addr).into_iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let len = (word_index * 64) as u8 + bits.trailing_zeros() as u8;
                bits &= bits - 1;
                let Some(t) = self.tables.get(usize::from(len)) else {
                    continue;
                };
                let key = addr.masked(len);
                for &slot in t.iter_hash(bh.hash_one(key)) {
                    if slab.key(slot).is_some_and(|k| k.masked(len) == key) {
                        f(slot);
                    }
                }
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.tables.capacity() * std::mem::size_of::<HashTable<u32>>()
            + self.filter.capacity() * 4
            + self
                .tables
                .iter()
                .map(HashTable::allocation_size)
                .sum::<usize>()
    }
}

fn hash_slot<A: Bits>(bh: &DefaultHashBuilder, slab: &Slab<A>, slot: u32, len: u8) -> u64 {
    slab.key(slot).map_or(0, |&k| bh.hash_one(k.masked(len)))
}

/// How a string key of a given kind is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StrKind {
    /// Exact (accounts).
    Account = 0,
    /// Pixel ids: hashed ASCII case-insensitively, so that one table serves both kinds of
    /// route; a probe from a case-insensitive route compares so too.
    Pixel = 1,
    /// ASCII case-insensitive, as `naive` compares hosts.
    Host = 2,
    /// Path prefixes, compared in their [`path_key`] form.
    Path = 3,
}

impl StrKind {
    pub fn from_aux(aux: u8) -> Option<StrKind> {
        [
            StrKind::Account,
            StrKind::Pixel,
            StrKind::Host,
            StrKind::Path,
        ]
        .into_iter()
        .find(|k| *k as u8 == aux)
    }

    /// The hash of a probe string (for paths, already in [`path_key`] form).
    pub fn hash_probe(self, bh: &DefaultHashBuilder, s: &str) -> u64 {
        match self {
            StrKind::Host | StrKind::Pixel => hash_ignore_ascii_case(bh, s),
            StrKind::Account | StrKind::Path => bh.hash_one(s),
        }
    }

    /// The hash of a stored key.
    pub fn hash_stored(self, bh: &DefaultHashBuilder, stored: &str) -> u64 {
        match self {
            StrKind::Path => bh.hash_one(path_key(stored)),
            k => k.hash_probe(bh, stored),
        }
    }

    /// Whether a stored key matches a probe.
    pub fn eq(self, stored: &str, probe: &str) -> bool {
        match self {
            StrKind::Host | StrKind::Pixel => stored.eq_ignore_ascii_case(probe),
            StrKind::Path => path_key(stored) == probe,
            StrKind::Account => stored == probe,
        }
    }
}

/// The form a path prefix is indexed under: `""` for the prefixes that match every path
/// (`""` and `"/"`), otherwise the prefix less one trailing `/`. A path matches the prefix
/// exactly when its key is `""` or equals the path cut at a segment boundary (see
/// [`crate::model::path_has_prefix`]).
pub(super) fn path_key(prefix: &str) -> &str {
    if prefix.is_empty() || prefix == "/" {
        return "";
    }
    prefix.strip_suffix('/').unwrap_or(prefix)
}

/// Hash ASCII-lower-cased bytes, in 64-byte chunks through a stack buffer (no allocation).
fn hash_ignore_ascii_case(bh: &DefaultHashBuilder, s: &str) -> u64 {
    let mut h = bh.build_hasher();
    let mut buf = [0u8; 64];
    for chunk in s.as_bytes().chunks(64) {
        let n = chunk.len();
        if let Some(b) = buf.get_mut(..n) {
            b.copy_from_slice(chunk);
            b.make_ascii_lowercase();
            h.write(b);
        }
    }
    h.write_usize(s.len());
    h.finish()
}

/// One string table: slot numbers of the string slab, hashed per [`StrKind`].
#[derive(Clone, Debug, Default)]
pub(super) struct StrTable {
    table: HashTable<u32>,
}

impl StrTable {
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn insert(
        &mut self,
        bh: &DefaultHashBuilder,
        kind: StrKind,
        slab: &Slab<Box<str>>,
        slot: u32,
    ) {
        let Some(s) = slab.key(slot) else { return };
        self.table
            .insert_unique(kind.hash_stored(bh, s), slot, |&x| {
                slab.key(x).map_or(0, |k| kind.hash_stored(bh, k))
            });
    }

    /// Remove a slot; call before the slab releases it.
    pub fn remove(
        &mut self,
        bh: &DefaultHashBuilder,
        kind: StrKind,
        slab: &Slab<Box<str>>,
        slot: u32,
    ) {
        let Some(s) = slab.key(slot) else { return };
        if let Ok(e) = self
            .table
            .find_entry(kind.hash_stored(bh, s), |&x| x == slot)
        {
            e.remove();
        }
    }

    pub fn reserve(
        &mut self,
        bh: &DefaultHashBuilder,
        kind: StrKind,
        slab: &Slab<Box<str>>,
        n: usize,
    ) {
        self.table
            .reserve(n, |&x| slab.key(x).map_or(0, |k| kind.hash_stored(bh, k)));
    }

    /// Call `f` with every slot whose key matches `probe` as `kind` compares.
    pub fn for_each_match(
        &self,
        bh: &DefaultHashBuilder,
        kind: StrKind,
        slab: &Slab<Box<str>>,
        probe: &str,
        f: impl FnMut(u32),
    ) {
        self.for_each_where(bh, kind, slab, probe, |k| kind.eq(k, probe), f);
    }

    /// Call `f` with every slot whose key is exactly `probe` (a pixel id from a
    /// case-sensitive route, in the case-insensitively hashed pixel table).
    pub fn for_each_exact(
        &self,
        bh: &DefaultHashBuilder,
        kind: StrKind,
        slab: &Slab<Box<str>>,
        probe: &str,
        f: impl FnMut(u32),
    ) {
        self.for_each_where(bh, kind, slab, probe, |k| k == probe, f);
    }

    fn for_each_where(
        &self,
        bh: &DefaultHashBuilder,
        kind: StrKind,
        slab: &Slab<Box<str>>,
        probe: &str,
        eq: impl Fn(&str) -> bool,
        mut f: impl FnMut(u32),
    ) {
        if self.table.is_empty() {
            return;
        }
        for &slot in self.table.iter_hash(kind.hash_probe(bh, probe)) {
            if slab.key(slot).is_some_and(|k| eq(k)) {
                f(slot);
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.table.allocation_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(0xffff_ffffu32.masked(0), 0);
        assert_eq!(0xffff_ffffu32.masked(8), 0xff00_0000);
        assert_eq!(0xffff_ffffu32.masked(32), 0xffff_ffff);
        assert_eq!(u128::MAX.masked(1), 1 << 127);
        assert_eq!(u128::MAX.masked(128), u128::MAX);
        assert_eq!(0xabcd_0000u32.top(4), 0xa);
        assert_eq!(0xabcd_0000u32.top(0), 0);
        assert_eq!((0xabcdu128 << 112).top(16), 0xabcd);
    }

    #[test]
    fn path_keys() {
        assert_eq!(path_key(""), "");
        assert_eq!(path_key("/"), "");
        assert_eq!(path_key("/api/"), "/api");
        assert_eq!(path_key("//"), "/");
        assert_eq!(path_key("/api"), "/api");
    }

    #[test]
    fn host_hash_ignores_ascii_case() {
        let bh = DefaultHashBuilder::default();
        let long = "A".repeat(200);
        assert_eq!(
            hash_ignore_ascii_case(&bh, "Example.COM"),
            hash_ignore_ascii_case(&bh, "example.com")
        );
        assert_eq!(
            hash_ignore_ascii_case(&bh, &long),
            hash_ignore_ascii_case(&bh, &long.to_lowercase())
        );
    }
}
