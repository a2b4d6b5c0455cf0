//! Decoding a snapshot message straight into a [`Matcher`], one rule at a time.
//!
//! `wire::decode` materialises a `Vec<Rule>` (about 88 bytes per rule natively, before the
//! matcher is built), which for a million rules is more than the whole matcher. Here the
//! body is read twice: once to count rules per index (so every column and table is sized
//! exactly), once to insert them; only one `Rule` exists at a time.
//!
//! [`Matcher::decode_pieces`] does the same for a message that is never whole in memory: a
//! response body read a slice at a time, or a snapshot split into parts in shared data.
//! [`Matcher::encode_snapshot_pieces`] is its inverse: the matcher's snapshot, written a
//! piece at a time without building the rule list.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::{Builder, Counts, Matcher};
use crate::model::{Rule, Version};
use crate::wire::{self, Delta, Message, WireError, FORMAT_VERSION, MAGIC};

/// A decoded policy message, with a snapshot already compiled.
#[derive(Debug, Clone)]
pub enum Update {
    /// A whole policy: replaces the current matcher (boxed: a matcher is ~1 KiB inline).
    Snapshot(Box<Matcher>),
    /// Changes to apply with [`Matcher::apply_delta`].
    Delta(Delta),
}

impl Matcher {
    /// Decode a policy message (see `WIRE.md`), compiling a snapshot without holding all of
    /// its rules in memory at once. Same checks and errors as [`wire::decode`]; never panics.
    pub fn decode_update(bytes: &[u8]) -> Result<Update, WireError> {
        match bytes {
            [m0, m1, v, b'S', body @ ..] if [*m0, *m1] == MAGIC && *v == FORMAT_VERSION => {
                let mut counts = Counts::default();
                read_snapshot(body, &mut |r| counts.add(&r))?;
                let mut b = Builder::new(&counts, true);
                let version = read_snapshot(body, &mut |r| b.insert(&r))?;
                Ok(Update::Snapshot(Box::new(b.finish(version))))
            }
            _ => match wire::decode(bytes)? {
                Message::Delta(d) => Ok(Update::Delta(d)),
                Message::Snapshot(s) => Ok(Update::Snapshot(Box::new(Matcher::from_snapshot(s)))),
            },
        }
    }
}

/// A policy message read in consecutive pieces, each of which can be read again: a
/// response body read a slice at a time, or the parts of a snapshot in shared data.
pub trait Pieces {
    /// Replace `out` with piece `i`; `Ok(false)` past the last piece. An error (the source
    /// went away, a part is missing) ends the decode with [`WireError::Body`].
    fn piece(&mut self, i: usize, out: &mut Vec<u8>) -> Result<bool, String>;
}

/// Slices of `len` bytes of one buffer, as [`Pieces`] (tests and native callers).
pub struct SlicePieces<'a> {
    pub bytes: &'a [u8],
    pub len: usize,
}

impl Pieces for SlicePieces<'_> {
    fn piece(&mut self, i: usize, out: &mut Vec<u8>) -> Result<bool, String> {
        let len = self.len.max(1);
        let start = i.saturating_mul(len);
        if start >= self.bytes.len() {
            return Ok(false);
        }
        out.clear();
        out.extend_from_slice(&self.bytes[start..self.bytes.len().min(start + len)]);
        Ok(true)
    }
}

impl Matcher {
    /// [`Matcher::decode_update`] for a message given as [`Pieces`]. A snapshot is decoded
    /// without holding the whole message: memory is the matcher plus one piece. A delta
    /// (small by nature) is joined and decoded as usual. Same checks and errors.
    pub fn decode_pieces(src: &mut dyn Pieces) -> Result<Update, WireError> {
        let mut head = [0u8; 4];
        let mut r = PieceReader::new(src);
        for (n, b) in head.iter_mut().enumerate() {
            *b = r.next_byte().ok_or(WireError::TooShort(n))?;
        }
        r.fail()?;
        match head {
            [m0, m1, v, b'S'] if [m0, m1] == MAGIC && v == FORMAT_VERSION => {
                drop(r);
                let mut counts = Counts::default();
                read_snapshot_pieces(src, &mut |r| counts.add(&r))?;
                let mut b = Builder::new(&counts, true);
                let version = read_snapshot_pieces(src, &mut |r| b.insert(&r))?;
                Ok(Update::Snapshot(Box::new(b.finish(version))))
            }
            _ => {
                let mut whole = head.to_vec();
                while let Some(b) = r.next_byte() {
                    whole.push(b);
                    whole.extend_from_slice(r.rest());
                    r.skip_rest();
                }
                r.fail()?;
                Matcher::decode_update(&whole)
            }
        }
    }

    /// The snapshot of this matcher in wire format (as [`wire::encode_snapshot`] of
    /// [`Matcher::to_snapshot`], rules in storage order rather than by id), handed to `out`
    /// in pieces of at least `piece_len` bytes (the last one shorter), without building the
    /// rule list. Stops at the first error of `out`.
    pub fn encode_snapshot_pieces<E>(
        &self,
        piece_len: usize,
        out: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rules = 0usize;
        self.for_each_rule(&mut |_| rules += 1);
        let mut buf = vec![MAGIC[0], MAGIC[1], FORMAT_VERSION, b'S'];
        // postcard: the struct's fields in order; a sequence is its length, then its items.
        buf = extend(&self.version, buf);
        buf = extend(&rules, buf);
        let mut result = Ok(());
        self.for_each_rule(&mut |rule| {
            if result.is_err() {
                return;
            }
            buf = extend(&rule, std::mem::take(&mut buf));
            if buf.len() >= piece_len {
                result = out(&buf);
                buf.clear();
            }
        });
        result?;
        if !buf.is_empty() {
            out(&buf)?;
        }
        Ok(())
    }
}

/// Append the postcard encoding of `v` (plain data into a `Vec`: cannot fail).
fn extend<T: serde::Serialize>(v: &T, buf: Vec<u8>) -> Vec<u8> {
    let len = buf.len();
    postcard::to_extend(v, buf).unwrap_or_else(|_| Vec::with_capacity(len))
}

/// Reads [`Pieces`] byte by byte or slice by slice; remembers the first error.
struct PieceReader<'s> {
    src: &'s mut dyn Pieces,
    cur: Vec<u8>,
    pos: usize,
    next: usize,
    done: bool,
    error: Option<String>,
    /// Where a read that spans two pieces is put together.
    scratch: Vec<u8>,
}

impl<'s> PieceReader<'s> {
    fn new(src: &'s mut dyn Pieces) -> Self {
        PieceReader {
            src,
            cur: Vec::new(),
            pos: 0,
            next: 0,
            done: false,
            error: None,
            scratch: Vec::new(),
        }
    }

    /// Make sure the current piece has a byte left; false at the end (or on an error).
    #[inline]
    fn fill(&mut self) -> bool {
        self.pos < self.cur.len() || self.next_piece()
    }

    /// The slow half of [`PieceReader::fill`]: move on to the next non-empty piece.
    #[cold]
    #[inline(never)]
    fn next_piece(&mut self) -> bool {
        while self.pos >= self.cur.len() {
            if self.done {
                return false;
            }
            match self.src.piece(self.next, &mut self.cur) {
                Ok(true) => {
                    self.next += 1;
                    self.pos = 0;
                }
                Ok(false) => {
                    self.done = true;
                    return false;
                }
                Err(e) => {
                    self.error = Some(e);
                    self.done = true;
                    return false;
                }
            }
        }
        true
    }

    #[inline]
    fn next_byte(&mut self) -> Option<u8> {
        if let Some(&b) = self.cur.get(self.pos) {
            self.pos += 1;
            return Some(b);
        }
        if !self.next_piece() {
            return None;
        }
        let b = self.cur.get(self.pos).copied();
        self.pos += 1;
        b
    }

    /// The unread rest of the current piece.
    fn rest(&self) -> &[u8] {
        self.cur.get(self.pos..).unwrap_or_default()
    }

    fn skip_rest(&mut self) {
        self.pos = self.cur.len();
    }

    fn fail(&mut self) -> Result<(), WireError> {
        match self.error.take() {
            Some(e) => Err(WireError::Body(format!("reading the policy: {e}"))),
            None => Ok(()),
        }
    }

    /// Bytes left after the message (only meaningful once it is decoded).
    fn trailing(&mut self) -> usize {
        let mut n = 0;
        while self.fill() {
            n += self.rest().len();
            self.skip_rest();
        }
        n
    }
}

impl<'de> postcard::de_flavors::Flavor<'de> for PieceReader<'de> {
    /// Bytes after the message, and the first error of the source.
    type Remainder = (usize, Option<String>);
    type Source = ();

    #[inline]
    fn pop(&mut self) -> postcard::Result<u8> {
        self.next_byte()
            .ok_or(postcard::Error::DeserializeUnexpectedEnd)
    }

    fn try_take_n(&mut self, _ct: usize) -> postcard::Result<&'de [u8]> {
        // Borrowed strings or bytes: the policy model has none.
        Err(postcard::Error::DeserializeBadEncoding)
    }

    fn try_take_n_temp<'a>(&'a mut self, ct: usize) -> postcard::Result<&'a [u8]>
    where
        'de: 'a,
    {
        if ct == 0 {
            return Ok(&[]);
        }
        if !self.fill() {
            return Err(postcard::Error::DeserializeUnexpectedEnd);
        }
        if self.cur.len() - self.pos >= ct {
            let start = self.pos;
            self.pos += ct;
            return Ok(&self.cur[start..start + ct]);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        while scratch.len() < ct {
            if !self.fill() {
                self.scratch = scratch;
                return Err(postcard::Error::DeserializeUnexpectedEnd);
            }
            let take = (ct - scratch.len()).min(self.cur.len() - self.pos);
            scratch.extend_from_slice(&self.cur[self.pos..self.pos + take]);
            self.pos += take;
        }
        self.scratch = scratch;
        Ok(&self.scratch)
    }

    fn finalize(mut self) -> postcard::Result<(usize, Option<String>)> {
        let trailing = self.trailing();
        Ok((trailing, self.error))
    }
}

/// [`read_snapshot`] over pieces (the 4-byte header is skipped, it was checked).
fn read_snapshot_pieces(
    src: &mut dyn Pieces,
    each: &mut dyn FnMut(Rule),
) -> Result<Version, WireError> {
    let mut r = PieceReader::new(src);
    for _ in 0..4 {
        r.next_byte();
    }
    let mut de = postcard::Deserializer::from_flavor(r);
    let decoded = SnapshotSeed { each }.deserialize(&mut de);
    let (trailing, error) = de.finalize().map_err(|e| WireError::Body(e.to_string()))?;
    if let Some(e) = error {
        return Err(WireError::Body(format!("reading the policy: {e}")));
    }
    let version = decoded.map_err(|e| WireError::Body(e.to_string()))?;
    match trailing {
        0 => Ok(version),
        n => Err(WireError::TrailingBytes(n)),
    }
}

/// Read a snapshot body, handing each rule to `each`; returns the version.
fn read_snapshot(body: &[u8], each: &mut dyn FnMut(Rule)) -> Result<Version, WireError> {
    let mut de = postcard::Deserializer::from_bytes(body);
    let version = SnapshotSeed { each }
        .deserialize(&mut de)
        .map_err(|e| WireError::Body(e.to_string()))?;
    let rest = de.finalize().map_err(|e| WireError::Body(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes(rest.len()));
    }
    Ok(version)
}

/// `Snapshot { version, rules }`, field for field as the derived `Deserialize` reads it.
struct SnapshotSeed<'f> {
    each: &'f mut dyn FnMut(Rule),
}

impl<'de> DeserializeSeed<'de> for SnapshotSeed<'_> {
    type Value = Version;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Version, D::Error> {
        d.deserialize_struct("Snapshot", &["version", "rules"], self)
    }
}

impl<'de> Visitor<'de> for SnapshotSeed<'_> {
    type Value = Version;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a policy snapshot")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Version, A::Error> {
        use serde::de::Error;
        let version: Version = seq
            .next_element()?
            .ok_or_else(|| A::Error::invalid_length(0, &self))?;
        seq.next_element_seed(RulesSeed { each: self.each })?
            .ok_or_else(|| A::Error::invalid_length(1, &"a policy snapshot"))?;
        Ok(version)
    }
}

struct RulesSeed<'f> {
    each: &'f mut dyn FnMut(Rule),
}

impl<'de> DeserializeSeed<'de> for RulesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RulesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of rules")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(rule) = seq.next_element::<Rule>()? {
            (self.each)(rule);
        }
        Ok(())
    }
}
