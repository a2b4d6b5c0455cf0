//! The policy signing keys: which keys sign an answer at a given time, what a rotation
//! changes, and how a key is described to operators. No storage, no clock of its own.
//!
//! A key signs from its creation until its `retire_at` (none: indefinitely). A rotation
//! adds a new key and gives every key still signing a `retire_at` at the end of the overlap,
//! so for the overlap every answer carries a signature by the old and by the new key: an
//! edge that trusts either keeps accepting policy while operators add the new key to every
//! edge's `control_plane.trusted_keys` (and later remove the old one).

use ed25519_dalek::SigningKey;
use edge_policy::seal::{self, KeyId};
use serde::Serialize;
use serde_json::{json, Value};

use super::{CoreError, CoreResult};

/// Most keys signing at once (the seal carries at most this many signatures).
pub const MAX_SIGNING: usize = 4;
/// The overlap of `control-plane key rotate` when none is given: a day.
pub const DEFAULT_OVERLAP_MS: i64 = 24 * 3600 * 1000;
/// The longest overlap accepted: 90 days.
pub const MAX_OVERLAP_MS: i64 = 90 * 24 * 3600 * 1000;

/// A stored signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Hex of the key id (the first 8 bytes of SHA-256 of the public key).
    pub key_id: String,
    pub secret: [u8; 32],
    pub created_at: i64,
    /// When it stops signing; None while it is the newest key.
    pub retire_at: Option<i64>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("SigningKeyRecord")
            .field("key_id", &self.key_id)
            .field("created_at", &self.created_at)
            .field("retire_at", &self.retire_at)
            .finish()
    }
}

impl SigningKeyRecord {
    /// A key from 32 random bytes.
    pub fn new(secret: [u8; 32], now: i64) -> SigningKeyRecord {
        let key = SigningKey::from_bytes(&secret);
        SigningKeyRecord {
            key_id: KeyId::of(&key.verifying_key()).to_string(),
            secret,
            created_at: now,
            retire_at: None,
        }
    }

    pub fn signing_key(&self) -> SigningKey {
        SigningKey::from_bytes(&self.secret)
    }

    /// `ed25519:` and the base64 public key: what goes into `control_plane.trusted_keys`.
    pub fn public_key(&self) -> String {
        seal::public_key_text(&self.signing_key().verifying_key())
    }

    pub fn signs_at(&self, now: i64) -> bool {
        self.created_at <= now && self.retire_at.is_none_or(|t| now < t)
    }

    /// How an operator sees the key (never the secret).
    pub fn view(&self, now: i64) -> KeyView {
        let state = match self.retire_at {
            _ if !self.signs_at(now) => "retired",
            Some(_) => "retiring",
            None => "active",
        };
        KeyView {
            key_id: self.key_id.clone(),
            public_key: self.public_key(),
            created_at: self.created_at,
            retire_at: self.retire_at,
            state,
        }
    }

    fn audit_json(&self) -> Value {
        json!({
            "key_id": self.key_id,
            "public_key": self.public_key(),
            "created_at": self.created_at,
            "retire_at": self.retire_at,
        })
    }
}

/// A key as listed by the API and `control-plane key list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// 16 hex digits: the first 8 bytes of SHA-256 of the public key.
    pub key_id: String,
    /// `ed25519:` and the base64 public key, for `control_plane.trusted_keys`.
    pub public_key: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// When it stops signing (Unix milliseconds); absent for the newest key.
    pub retire_at: Option<i64>,
    /// `active` (newest), `retiring` (still signing until `retire_at`) or `retired`.
    pub state: &'static str,
}

/// The keys that sign an answer at `now`, newest first.
pub fn signing_set(keys: &[SigningKeyRecord], now: i64) -> Vec<&SigningKeyRecord> {
    let mut set: Vec<&SigningKeyRecord> = keys.iter().filter(|k| k.signs_at(now)).collect();
    set.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    set.truncate(MAX_SIGNING);
    set
}

/// What a rotation writes: the new key, the keys whose `retire_at` changes, and the audit
/// event's before/after.
#[derive(Debug)]
pub struct Rotation {
    pub new: SigningKeyRecord,
    pub retiring: Vec<SigningKeyRecord>,
    pub verb: &'static str,
    pub before: Option<Value>,
    pub after: Value,
}

/// Plan adding `new` to `existing` with an overlap of `overlap_ms`: every key still signing
/// at `now` signs until `now + overlap_ms` (or its earlier `retire_at`). With no key yet,
/// this is the first key (`signing_key.create`).
pub fn rotate(
    existing: &[SigningKeyRecord],
    new: SigningKeyRecord,
    now: i64,
    overlap_ms: i64,
) -> CoreResult<Rotation> {
    if !(0..=MAX_OVERLAP_MS).contains(&overlap_ms) {
        return Err(CoreError::invalid(
            "overlap",
            format!("must be between 0 and {} hours", MAX_OVERLAP_MS / 3_600_000),
        ));
    }
    if existing.iter().any(|k| k.key_id == new.key_id) {
        return Err(CoreError::conflict("key_id", "this key already exists"));
    }
    let until = now.saturating_add(overlap_ms);
    let retiring: Vec<SigningKeyRecord> = existing
        .iter()
        .filter(|k| k.signs_at(now))
        .filter(|k| k.retire_at.is_none_or(|t| t > until))
        .map(|k| SigningKeyRecord {
            retire_at: Some(until),
            ..k.clone()
        })
        .collect();
    let signing_after = existing.iter().filter(|k| k.signs_at(now)).count() + 1;
    if signing_after > MAX_SIGNING {
        return Err(CoreError::conflict(
            "overlap",
            format!(
                "{} keys would sign at once (at most {MAX_SIGNING}); wait for a retiring key to retire",
                signing_after
            ),
        ));
    }
    let verb = if existing.is_empty() {
        "signing_key.create"
    } else {
        "signing_key.rotate"
    };
    let before = (!existing.is_empty()).then(|| {
        json!({ "signing": existing.iter().filter(|k| k.signs_at(now)).map(|k| k.audit_json()).collect::<Vec<_>>() })
    });
    let after = json!({
        "new": new.audit_json(),
        "retiring": retiring.iter().map(|k| k.audit_json()).collect::<Vec<_>>(),
        "overlap_ms": overlap_ms,
    });
    Ok(Rotation {
        new,
        retiring,
        verb,
        before,
        after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8, created_at: i64) -> SigningKeyRecord {
        SigningKeyRecord::new([seed; 32], created_at)
    }

    #[test]
    fn the_first_key_is_a_creation_and_signs_alone() {
        let r = rotate(&[], key(1, 10), 10, DEFAULT_OVERLAP_MS).unwrap();
        assert_eq!(r.verb, "signing_key.create");
        assert!(r.retiring.is_empty() && r.before.is_none());
        let keys = vec![r.new];
        assert_eq!(signing_set(&keys, 10).len(), 1);
        assert!(signing_set(&keys, 9).is_empty(), "not before it exists");
        assert_eq!(keys[0].view(10).state, "active");
        assert_eq!(keys[0].key_id.len(), 16);
        assert!(keys[0].public_key().starts_with("ed25519:"));
        assert!(!format!("{:?}", keys[0]).contains("secret"));
    }

    #[test]
    fn a_rotation_overlaps_then_the_new_key_signs_alone() {
        let old = key(1, 0);
        let r = rotate(std::slice::from_ref(&old), key(2, 100), 100, 1000).unwrap();
        assert_eq!(r.verb, "signing_key.rotate");
        assert_eq!(r.retiring.len(), 1);
        assert_eq!(r.retiring[0].retire_at, Some(1100));
        let keys = vec![r.retiring[0].clone(), r.new.clone()];
        let ids = |now| -> Vec<String> {
            signing_set(&keys, now)
                .iter()
                .map(|k| k.key_id.clone())
                .collect()
        };
        assert_eq!(ids(500), [r.new.key_id.clone(), old.key_id.clone()]);
        assert_eq!(ids(1100), std::slice::from_ref(&r.new.key_id));
        assert_eq!(keys[0].view(500).state, "retiring");
        assert_eq!(keys[0].view(1100).state, "retired");
        // A second rotation within the overlap never extends the old key's life.
        let again = rotate(&keys, key(3, 200), 200, 5000).unwrap();
        assert_eq!(
            again.retiring.len(),
            1,
            "only the key without an earlier end"
        );
        assert_eq!(again.retiring[0].key_id, r.new.key_id);
        assert_eq!(again.retiring[0].retire_at, Some(5200));
    }

    #[test]
    fn bad_rotations_are_refused_naming_the_field() {
        let old = key(1, 0);
        for overlap in [-1, MAX_OVERLAP_MS + 1] {
            let e = rotate(std::slice::from_ref(&old), key(2, 1), 1, overlap).unwrap_err();
            assert!(matches!(e, CoreError::Invalid { ref field, .. } if field == "overlap"));
        }
        let e = rotate(std::slice::from_ref(&old), key(1, 1), 1, 0).unwrap_err();
        assert!(matches!(e, CoreError::Conflict { .. }));
        // Rotating again and again within one overlap stops at MAX_SIGNING keys.
        let mut keys = vec![old];
        for seed in 2..=MAX_SIGNING as u8 {
            let r = rotate(&keys, key(seed, 1), 1, 1000).unwrap();
            for k in r.retiring {
                let slot = keys.iter_mut().find(|x| x.key_id == k.key_id).unwrap();
                *slot = k;
            }
            keys.push(r.new);
        }
        assert!(rotate(&keys, key(99, 1), 1, 1000).is_err());
        // An overlap of 0 retires the old keys at once.
        let r = rotate(&keys, key(99, 2000), 2000, 0);
        assert!(r.is_ok(), "{r:?}");
    }
}
