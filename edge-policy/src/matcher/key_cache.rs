//! The per-VM cache of API-key hashes.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

use crate::model::KeyHash;

/// Remembers the SHA-256 of recently seen API keys (a client sends the same key on every
/// request; hashing it costs more than the rest of a lookup inside the VM). Direct-mapped,
/// fixed size; a key is stored whole and compared exactly, so a collision only evicts.
pub struct KeyHashCache {
    hasher: DefaultHashBuilder,
    slots: Vec<Option<(Box<str>, KeyHash)>>,
}

impl KeyHashCache {
    /// Keys longer than this are hashed every time (not stored).
    pub const MAX_KEY_LEN: usize = 256;

    /// A cache of `slots` entries (at least 1).
    pub fn new(slots: usize) -> KeyHashCache {
        KeyHashCache {
            hasher: DefaultHashBuilder::default(),
            slots: vec![None; slots.max(1)],
        }
    }

    /// `KeyHash::of(key)`, from the cache when `key` was seen before.
    pub fn hash(&mut self, key: &str) -> KeyHash {
        if key.len() > Self::MAX_KEY_LEN {
            return KeyHash::of(key);
        }
        let i = (self.hasher.hash_one(key) % self.slots.len() as u64) as usize;
        let Some(slot) = self.slots.get_mut(i) else {
            return KeyHash::of(key);
        };
        match slot {
            Some((k, h)) if **k == *key => *h,
            _ => {
                let h = KeyHash::of(key);
                *slot = Some((Box::from(key), h));
                h
            }
        }
    }
}
