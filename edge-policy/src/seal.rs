//! Signed policy answers: the seal the control plane puts in front of every policy message
//! it serves, and the checks an edge makes before it reads a byte of the message.
//!
//! A sealed answer is a fixed-layout prefix followed by the policy message (`wire` format)
//! exactly as it would be sent unsigned:
//!
//! | bytes | meaning |
//! |---|---|
//! | 0..2 | magic `b"ES"` |
//! | 2 | seal format, currently [`SEAL_FORMAT`] |
//! | 3 | kind of the message: `b'S'` snapshot, `b'D'` delta |
//! | 4..12 | `issued_at_ms`: when the control plane sealed it (Unix ms, u64 LE) |
//! | 12..20 | `version` the message brings the edge to (u64 LE) |
//! | 20..28 | `since`: the version a delta applies to, 0 for a snapshot (u64 LE) |
//! | 28..36 | `message_len`: bytes of the message after the seal (u64 LE) |
//! | 36..68 | SHA-256 of the message |
//! | 68 | `n`, the number of signatures, 1 to [`MAX_SIGNATURES`] |
//! | 69.. | `n` times: key id (8 bytes) and Ed25519 signature (64 bytes) |
//! | 69 + 72n .. | the message |
//!
//! Every signature signs [`CONTEXT`] followed by bytes `0..68`: the kind, the versions, the
//! time, the length and the digest of the message, so no part of the answer can be changed,
//! cut or swapped for another answer's without the check failing. A key id is the first 8
//! bytes of the SHA-256 of the public key, so it cannot name a different key than the one it
//! was computed from. During a key rotation the control plane signs with the old and the new
//! key, so edges that trust either accept the answer.
//!
//! The checks are ordered cheap first: the seal and its signatures ([`read_seal`]), whether
//! the answer is older than what the edge holds ([`Seal::check_fresh`]), then the digest of
//! the message ([`check_digest`], one pass over it). Only then is the message decoded.

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::matcher::Pieces;
use crate::model::Version;

/// Magic bytes of a sealed answer.
pub const MAGIC: [u8; 2] = *b"ES";
/// The seal layout this build reads and writes.
pub const SEAL_FORMAT: u8 = 1;
/// Domain separation: what a signature is for, so it cannot be replayed as anything else.
pub const CONTEXT: &[u8] = b"edge-containment policy answer seal v1\0";
/// Most signatures one seal carries (a rotation needs two).
pub const MAX_SIGNATURES: usize = 8;
/// Bytes covered by the signatures.
pub const SIGNED_LEN: usize = 68;
/// Bytes per signature entry.
const ENTRY_LEN: usize = 8 + 64;
/// The text prefix of a public key in configuration and in the control plane's key list.
pub const KEY_PREFIX: &str = "ed25519:";

/// A key id: the first 8 bytes of SHA-256 of the public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> KeyId {
        let d = Sha256::digest(key.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&d[..8]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The text form of a public key: `ed25519:` and the standard base64 of its 32 bytes.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
    )
}

/// Read the text form of a public key.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let b64 = text
        .trim()
        .strip_prefix(KEY_PREFIX)
        .ok_or_else(|| format!("must start with `{KEY_PREFIX}`"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("is not base64 ({e})"))?;
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("must be 32 bytes, not {}", bytes.len()))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| "is not an Ed25519 point")?;
    if key.is_weak() {
        return Err("is a weak (small-order) key".into());
    }
    Ok(key)
}

/// The public keys an edge trusts.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    keys: Vec<(KeyId, VerifyingKey)>,
}

impl TrustedKeys {
    /// Keys in text form; an error names the entry (`[1]: must start with ...`).
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<TrustedKeys, String> {
        let mut keys = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let key = parse_public_key(t.as_ref()).map_err(|e| format!("[{i}]: {e}"))?;
            keys.push((KeyId::of(&key), key));
        }
        Ok(TrustedKeys { keys })
    }

    pub fn new(keys: &[VerifyingKey]) -> TrustedKeys {
        TrustedKeys {
            keys: keys.iter().map(|k| (KeyId::of(k), *k)).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.iter().map(|(id, _)| *id)
    }

    fn get(&self, id: KeyId) -> Option<&VerifyingKey> {
        self.keys.iter().find(|(k, _)| *k == id).map(|(_, v)| v)
    }
}

/// Why an answer was refused. The edge keeps its last good policy in every case.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("answer is not signed (a bare policy message)")]
    Unsigned,
    #[error("answer is not a sealed policy ({0})")]
    Malformed(String),
    #[error("answer is signed only by keys this edge does not trust ({0}); trusted: {1}")]
    UnknownKey(String, String),
    #[error("signature by key {0} does not verify: the answer was forged or altered")]
    BadSignature(KeyId),
    #[error("answer is truncated: {got} of {want} message bytes")]
    Truncated { got: u64, want: u64 },
    #[error("answer has {0} bytes after the signed message")]
    TrailingBytes(u64),
    #[error("message does not match its signed digest: altered")]
    Altered,
    #[error("answer brings version {got}, older than version {held} held: replayed")]
    Replayed { got: Version, held: Version },
    #[error("answer was sealed {age_s} s ago, more than the {max_s} s allowed: replayed")]
    TooOld { age_s: u64, max_s: u64 },
    #[error("signed {what} {signed} but the message says {got}")]
    Mismatch {
        what: &'static str,
        signed: u64,
        got: u64,
    },
    #[error("reading the answer: {0}")]
    Read(String),
}

impl SealError {
    /// A short stable name (metrics, log streaks).
    pub fn reason(&self) -> &'static str {
        match self {
            SealError::Unsigned => "unsigned",
            SealError::Malformed(_) => "malformed",
            SealError::UnknownKey(..) => "unknown_key",
            SealError::BadSignature(_) => "bad_signature",
            SealError::Truncated { .. } => "truncated",
            SealError::TrailingBytes(_) => "trailing_bytes",
            SealError::Altered => "altered",
            SealError::Replayed { .. } | SealError::TooOld { .. } => "replayed",
            SealError::Mismatch { .. } => "mismatch",
            SealError::Read(_) => "read",
        }
    }
}

/// A verified seal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seal {
    pub kind: u8,
    pub issued_at_ms: u64,
    pub version: Version,
    pub since: Version,
    pub message_len: u64,
    pub digest: [u8; 32],
    /// The trusted key whose signature verified.
    pub key: KeyId,
    /// Where the message starts in the answer.
    pub message_start: usize,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Seal `message` (a `wire`-encoded snapshot or delta) with every key in `keys`. Returns the
/// prefix to send before the message; `None` if `message` is not a policy message or no key
/// is given.
pub fn seal_prefix(message: &[u8], issued_at_ms: u64, keys: &[&SigningKey]) -> Option<Vec<u8>> {
    let digest: [u8; 32] = Sha256::digest(message).into();
    seal_prefix_with_digest(message, &digest, issued_at_ms, keys)
}

/// [`seal_prefix`] with the message's SHA-256 already known (an answer cached for many
/// edges is hashed once and sealed per request).
pub fn seal_prefix_with_digest(
    message: &[u8],
    digest: &[u8; 32],
    issued_at_ms: u64,
    keys: &[&SigningKey],
) -> Option<Vec<u8>> {
    if keys.is_empty() || keys.len() > MAX_SIGNATURES {
        return None;
    }
    let (kind, version, since) = crate::wire::decode_head(message)?.parts();
    let mut out = Vec::with_capacity(SIGNED_LEN + 1 + ENTRY_LEN * keys.len());
    out.extend_from_slice(&MAGIC);
    out.push(SEAL_FORMAT);
    out.push(kind);
    out.extend_from_slice(&issued_at_ms.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&since.to_le_bytes());
    out.extend_from_slice(&(message.len() as u64).to_le_bytes());
    out.extend_from_slice(digest);
    let mut signed = Vec::with_capacity(CONTEXT.len() + SIGNED_LEN);
    signed.extend_from_slice(CONTEXT);
    signed.extend_from_slice(&out);
    out.push(keys.len() as u8);
    for k in keys {
        out.extend_from_slice(&KeyId::of(&k.verifying_key()).0);
        out.extend_from_slice(&k.sign(&signed).to_bytes());
    }
    Some(out)
}

/// The whole sealed answer: prefix and message.
pub fn seal(message: &[u8], issued_at_ms: u64, keys: &[&SigningKey]) -> Option<Vec<u8>> {
    let mut out = seal_prefix(message, issued_at_ms, keys)?;
    out.extend_from_slice(message);
    Some(out)
}

/// An answer that can be read at any offset (a response body in the host, a byte slice).
pub trait ReadAt {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Replace `out` with bytes `start..start + len` (within [`ReadAt::len`]).
    fn read_at(&mut self, start: usize, len: usize, out: &mut Vec<u8>) -> Result<(), String>;
}

impl ReadAt for &[u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn read_at(&mut self, start: usize, len: usize, out: &mut Vec<u8>) -> Result<(), String> {
        let bytes = self
            .get(start..start.saturating_add(len))
            .ok_or_else(|| format!("bytes {start}+{len} are past the end"))?;
        out.clear();
        out.extend_from_slice(bytes);
        Ok(())
    }
}

/// Bytes `start..end` of a [`ReadAt`] as [`Pieces`] of `piece_len` bytes: the message of a
/// sealed answer, for the decoder.
pub struct Window<'a> {
    pub src: &'a mut dyn ReadAt,
    pub start: usize,
    pub end: usize,
    pub piece_len: usize,
}

impl Pieces for Window<'_> {
    fn piece(&mut self, i: usize, out: &mut Vec<u8>) -> Result<bool, String> {
        let len = self.piece_len.max(1);
        let at = self.start.saturating_add(i.saturating_mul(len));
        if at >= self.end {
            return Ok(false);
        }
        self.src.read_at(at, len.min(self.end - at), out)?;
        Ok(true)
    }
}

/// Read the seal at the start of `src` and verify its signatures against `trusted`.
pub fn read_seal(src: &mut dyn ReadAt, trusted: &TrustedKeys) -> Result<Seal, SealError> {
    let total = src.len();
    let mut head = Vec::new();
    let first = total.min(SIGNED_LEN + 1);
    src.read_at(0, first, &mut head).map_err(SealError::Read)?;
    if head.len() >= 2 && head[..2] == crate::wire::MAGIC {
        return Err(SealError::Unsigned);
    }
    if head.len() < SIGNED_LEN + 1 {
        return Err(SealError::Malformed(format!("{total} bytes")));
    }
    if head[..2] != MAGIC {
        return Err(SealError::Malformed("bad magic bytes".into()));
    }
    if head[2] != SEAL_FORMAT {
        return Err(SealError::Malformed(format!(
            "seal format {} (this build reads {SEAL_FORMAT})",
            head[2]
        )));
    }
    let kind = head[3];
    if kind != b'S' && kind != b'D' {
        return Err(SealError::Malformed(format!("kind {kind:#04x}")));
    }
    let n = head[SIGNED_LEN] as usize;
    if n == 0 || n > MAX_SIGNATURES {
        return Err(SealError::Malformed(format!("{n} signatures")));
    }
    let message_start = SIGNED_LEN + 1 + n * ENTRY_LEN;
    if total < message_start {
        return Err(SealError::Malformed("signatures cut short".into()));
    }
    let mut entries = Vec::new();
    src.read_at(SIGNED_LEN + 1, n * ENTRY_LEN, &mut entries)
        .map_err(SealError::Read)?;
    let mut signed = Vec::with_capacity(CONTEXT.len() + SIGNED_LEN);
    signed.extend_from_slice(CONTEXT);
    signed.extend_from_slice(&head[..SIGNED_LEN]);
    let mut verified = None;
    let mut forged = None;
    let mut seen = Vec::new();
    for e in entries.chunks_exact(ENTRY_LEN) {
        let mut id = [0u8; 8];
        id.copy_from_slice(&e[..8]);
        let id = KeyId(id);
        seen.push(id.to_string());
        let Some(key) = trusted.get(id) else {
            continue;
        };
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&e[8..]);
        // Strict: refuses non-canonical encodings and small-order keys and points, so a
        // signature has exactly one accepted form.
        match key.verify_strict(&signed, &Signature::from_bytes(&sig)) {
            Ok(()) => {
                verified = Some(id);
                break;
            }
            Err(_) => forged = Some(id),
        }
    }
    let key = match (verified, forged) {
        (Some(id), _) => id,
        (None, Some(id)) => return Err(SealError::BadSignature(id)),
        (None, None) => {
            let trusted: Vec<String> = trusted.ids().map(|i| i.to_string()).collect();
            return Err(SealError::UnknownKey(seen.join(", "), trusted.join(", ")));
        }
    };
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&head[36..68]);
    let seal = Seal {
        kind,
        issued_at_ms: u64_at(&head, 4),
        version: u64_at(&head, 12),
        since: u64_at(&head, 20),
        message_len: u64_at(&head, 28),
        digest,
        key,
        message_start,
    };
    let got = (total - message_start) as u64;
    if got < seal.message_len {
        return Err(SealError::Truncated {
            got,
            want: seal.message_len,
        });
    }
    if got > seal.message_len {
        return Err(SealError::TrailingBytes(got - seal.message_len));
    }
    Ok(seal)
}

impl Seal {
    /// Refuse an answer older than the version held (`held`), or sealed longer than
    /// `max_age_s` ago by the edge's clock (0: not checked).
    pub fn check_fresh(
        &self,
        held: Option<Version>,
        now_ms: u64,
        max_age_s: u32,
    ) -> Result<(), SealError> {
        if let Some(held) = held {
            if self.version < held {
                return Err(SealError::Replayed {
                    got: self.version,
                    held,
                });
            }
        }
        if max_age_s > 0 {
            let age_s = now_ms.saturating_sub(self.issued_at_ms) / 1000;
            if age_s > max_age_s as u64 {
                return Err(SealError::TooOld {
                    age_s,
                    max_s: max_age_s as u64,
                });
            }
        }
        Ok(())
    }

    /// The part of the answer after the seal, as pieces for the decoder.
    pub fn message<'a>(&self, src: &'a mut dyn ReadAt, piece_len: usize) -> Window<'a> {
        let end = src.len();
        Window {
            src,
            start: self.message_start,
            end,
            piece_len,
        }
    }

    /// Whether a decoded message is the one signed: kind and versions.
    pub fn check_message(&self, head: crate::wire::Head) -> Result<(), SealError> {
        let (kind, version, since) = head.parts();
        let mismatch = |what, signed, got| Err(SealError::Mismatch { what, signed, got });
        if kind != self.kind {
            return mismatch("kind", self.kind as u64, kind as u64);
        }
        if version != self.version {
            return mismatch("version", self.version, version);
        }
        if since != self.since {
            return mismatch("since", self.since, since);
        }
        Ok(())
    }
}

/// Hash the message of a sealed answer (one pass, `piece_len` bytes at a time) and compare
/// it with the signed digest.
pub fn check_digest(src: &mut dyn ReadAt, seal: &Seal, piece_len: usize) -> Result<(), SealError> {
    let mut hasher = Sha256::new();
    let mut buf = Vec::new();
    let mut at = seal.message_start;
    let end = src.len();
    while at < end {
        let len = piece_len.max(1).min(end - at);
        src.read_at(at, len, &mut buf).map_err(SealError::Read)?;
        if buf.len() != len {
            return Err(SealError::Read(format!(
                "{} bytes at {at}, {len} expected",
                buf.len()
            )));
        }
        hasher.update(&buf);
        at += len;
    }
    let got: [u8; 32] = hasher.finalize().into();
    if got != seal.digest {
        return Err(SealError::Altered);
    }
    Ok(())
}

/// [`read_seal`], [`Seal::check_fresh`] and [`check_digest`] in that order: what an edge
/// checks before it decodes the message.
pub fn open(
    src: &mut dyn ReadAt,
    trusted: &TrustedKeys,
    held: Option<Version>,
    now_ms: u64,
    max_age_s: u32,
    piece_len: usize,
) -> Result<Seal, SealError> {
    let seal = read_seal(src, trusted)?;
    seal.check_fresh(held, now_ms, max_age_s)?;
    check_digest(src, &seal, piece_len)?;
    Ok(seal)
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
