//! The edge sync wire format, defined once and used by the control plane and the filter.
//!
//! A message is a 4-byte header followed by a [postcard] body:
//!
//! | bytes | meaning |
//! |---|---|
//! | 0..2 | magic `b"EC"` |
//! | 2 | format version, currently [`FORMAT_VERSION`] |
//! | 3 | kind: `b'S'` snapshot, `b'D'` delta |
//! | 4.. | postcard encoding of [`Snapshot`] or [`Delta`] |
//!
//! A binary format because a snapshot may hold a million rules and the filter decodes it
//! inside the VM; postcard is compact (varints) and its decoder returns an error, never a
//! panic, on any input. See `edge-policy/WIRE.md` for the full description.

use serde::{Deserialize, Serialize};

use crate::model::{Rule, RuleId, Version};

/// Magic bytes at the start of every message.
pub const MAGIC: [u8; 2] = *b"EC";
/// The wire format version this build reads and writes.
pub const FORMAT_VERSION: u8 = 1;
/// The media type of a policy message over HTTP.
pub const CONTENT_TYPE: &str = "application/vnd.edge-containment.policy";

/// The whole policy at one version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: Version,
    pub rules: Vec<Rule>,
}

/// The changes from version `since` to version `version`.
///
/// Applying it to the snapshot at `since` yields the snapshot at `version`: every rule in
/// `upserts` replaces the rule with the same id (or is added), every id in `removed` goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub since: Version,
    pub version: Version,
    pub upserts: Vec<Rule>,
    pub removed: Vec<RuleId>,
}

/// A decoded policy message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Snapshot(Snapshot),
    Delta(Delta),
}

impl Message {
    pub fn version(&self) -> Version {
        match self {
            Message::Snapshot(s) => s.version,
            Message::Delta(d) => d.version,
        }
    }
}

/// Why bytes could not be decoded as a policy message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("policy message too short ({0} bytes)")]
    TooShort(usize),
    #[error("policy message has bad magic bytes")]
    BadMagic,
    #[error(
        "policy message format version {0} is not supported (this build reads {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u8),
    #[error("policy message kind {0:#04x} is unknown")]
    UnknownKind(u8),
    #[error("policy message body is malformed: {0}")]
    Body(String),
    #[error("policy message has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("delta goes backwards: since {since} >= version {version}")]
    DeltaBackwards { since: Version, version: Version },
}

const KIND_SNAPSHOT: u8 = b'S';
const KIND_DELTA: u8 = b'D';

fn encode_with<T: Serialize>(kind: u8, body: &T) -> Vec<u8> {
    let out = vec![MAGIC[0], MAGIC[1], FORMAT_VERSION, kind];
    // Serialising these plain data types into a Vec cannot fail.
    match postcard::to_extend(body, out) {
        Ok(v) => v,
        Err(_) => unreachable_encode(),
    }
}

#[cold]
fn unreachable_encode() -> Vec<u8> {
    // postcard only fails to serialise into a growable Vec for types that refuse to
    // serialise (none here). Returning an empty buffer makes the decoder reject it.
    Vec::new()
}

/// Encode a snapshot.
pub fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    encode_with(KIND_SNAPSHOT, s)
}

/// Encode a delta.
pub fn encode_delta(d: &Delta) -> Vec<u8> {
    encode_with(KIND_DELTA, d)
}

/// Encode either kind.
pub fn encode(m: &Message) -> Vec<u8> {
    match m {
        Message::Snapshot(s) => encode_snapshot(s),
        Message::Delta(d) => encode_delta(d),
    }
}

/// Decode a message. Any byte string yields `Ok` or a typed error, never a panic.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.len() < 4 {
        return Err(WireError::TooShort(bytes.len()));
    }
    if bytes[0..2] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if bytes[2] != FORMAT_VERSION {
        return Err(WireError::UnsupportedVersion(bytes[2]));
    }
    let body = &bytes[4..];
    match bytes[3] {
        KIND_SNAPSHOT => decode_body::<Snapshot>(body).map(Message::Snapshot),
        KIND_DELTA => {
            let d = decode_body::<Delta>(body)?;
            if d.since >= d.version {
                return Err(WireError::DeltaBackwards {
                    since: d.since,
                    version: d.version,
                });
            }
            Ok(Message::Delta(d))
        }
        k => Err(WireError::UnknownKind(k)),
    }
}

/// What the first bytes of a policy message say, read without decoding its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    Snapshot { version: Version },
    Delta { since: Version, version: Version },
}

impl Head {
    /// The kind byte, the version brought, and the version a delta applies to (0 for a
    /// snapshot): the fields a seal signs.
    pub fn parts(self) -> (u8, Version, Version) {
        match self {
            Head::Snapshot { version } => (KIND_SNAPSHOT, version, 0),
            Head::Delta { since, version } => (KIND_DELTA, version, since),
        }
    }
}

/// The kind and versions of a policy message (its header and first varints); `None` if the
/// bytes do not start like one.
pub fn decode_head(bytes: &[u8]) -> Option<Head> {
    match bytes {
        [m0, m1, v, kind, body @ ..] if [*m0, *m1] == MAGIC && *v == FORMAT_VERSION => {
            let (first, rest) = postcard::take_from_bytes::<Version>(body).ok()?;
            match *kind {
                KIND_SNAPSHOT => Some(Head::Snapshot { version: first }),
                KIND_DELTA => {
                    let (version, _) = postcard::take_from_bytes::<Version>(rest).ok()?;
                    Some(Head::Delta {
                        since: first,
                        version,
                    })
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn decode_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, WireError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| WireError::Body(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

impl Snapshot {
    /// Apply a delta to this snapshot, producing the snapshot at `delta.version`.
    /// Rules end up sorted by id (the canonical order).
    pub fn apply(&self, delta: &Delta) -> Result<Snapshot, ApplyError> {
        if delta.since != self.version {
            return Err(ApplyError::VersionMismatch {
                have: self.version,
                since: delta.since,
            });
        }
        let mut by_id: std::collections::BTreeMap<RuleId, Rule> =
            self.rules.iter().map(|r| (r.id, r.clone())).collect();
        for id in &delta.removed {
            by_id.remove(id);
        }
        for r in &delta.upserts {
            by_id.insert(r.id, r.clone());
        }
        Ok(Snapshot {
            version: delta.version,
            rules: by_id.into_values().collect(),
        })
    }

    /// Sort rules by id (the canonical order, so equal policies compare equal).
    pub fn canonicalize(&mut self) {
        self.rules.sort_by_key(|r| r.id);
    }
}

/// A delta that does not fit the policy it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("delta since version {since} does not apply to version {have}")]
    VersionMismatch { have: Version, since: Version },
}
