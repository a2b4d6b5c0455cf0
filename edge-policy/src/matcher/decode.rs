//! Decoding a snapshot message straight into a [`Matcher`], one rule at a time.
//!
//! `wire::decode` materialises a `Vec<Rule>` (about 88 bytes per rule natively, before the
//! matcher is built), which for a million rules is more than the whole matcher. Here the
//! body is read twice: once to count rules per index (so every column and table is sized
//! exactly), once to insert them; only one `Rule` exists at a time.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::{Counts, Matcher};
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
                let mut m = Matcher::default();
                m.reserve(&counts);
                let version = read_snapshot(body, &mut |r| m.upsert(&r))?;
                m.version = version;
                Ok(Update::Snapshot(Box::new(m)))
            }
            _ => match wire::decode(bytes)? {
                Message::Delta(d) => Ok(Update::Delta(d)),
                Message::Snapshot(s) => Ok(Update::Snapshot(Box::new(Matcher::from_snapshot(s)))),
            },
        }
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
