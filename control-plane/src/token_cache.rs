//! Successful token lookups kept in memory, so a long-poll or a hit report does not query the
//! database for its token on every request.
//!
//! Entries are keyed by the token's SHA-256 hash and live at most `ttl`: the upper bound on
//! how long a revocation made outside this process (a tool on the database) takes to apply
//! here. Replicas on PostgreSQL clear each other's caches by notification on every
//! revocation, and cache only edge tokens (see `auth::authenticate`). Every token create and revoke made through this process clears the
//! cache before it answers, and a lookup that was in flight meanwhile may not store its
//! (possibly stale) result: a lookup notes the cache's generation before it asks the
//! database and stores only if no invalidation happened since. Unknown and revoked tokens
//! are never cached.
//!
//! Hand-written rather than a general cache crate because of that generation check: a TTL
//! map is a few lines, an "insert only if nothing was invalidated since the read began" is
//! what makes revocation exact and no general cache offers it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::auth::Caller;

/// Most tokens kept at once; when full, expired entries are dropped, and if none were, the
/// whole cache (so it never grows without bound and never stops caching).
pub const TOKEN_CACHE_CAPACITY: usize = 10_000;

pub struct TokenCache {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    entries: HashMap<[u8; 32], (Caller, Instant)>,
}

/// What an [`TokenCache::insert`] needs to know: the generation seen before the database read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation(u64);

impl TokenCache {
    /// A cache keeping entries `ttl` (zero: caching off) and at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> TokenCache {
        TokenCache {
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; if something did, the map is still valid.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The caller for a token hash, if looked up successfully less than `ttl` ago and not
    /// invalidated since.
    pub fn get(&self, hash: &[u8; 32]) -> Option<Caller> {
        if self.ttl.is_zero() {
            return None;
        }
        match self.lock().entries.get(hash) {
            Some((caller, until)) if Instant::now() < *until => Some(caller.clone()),
            _ => None,
        }
    }

    /// The caller for a token hash looked up successfully at some time and not invalidated
    /// since, however long ago: the answer while the database cannot be reached. No
    /// revocation can commit while the database is down, and the listener that clears this
    /// cache for revocations made elsewhere clears it again when its connection comes back;
    /// so the one exposure is a replica cut off from a database other replicas still reach,
    /// which keeps serving policy reads (long-polls, from memory) to a token revoked
    /// meanwhile until it reconnects. Expired entries stay until the cache is full.
    pub fn get_stale(&self, hash: &[u8; 32]) -> Option<Caller> {
        if self.ttl.is_zero() {
            return None;
        }
        self.lock()
            .entries
            .get(hash)
            .map(|(caller, _)| caller.clone())
    }

    /// Note before reading the database; pass to [`TokenCache::insert`].
    pub fn generation(&self) -> Generation {
        Generation(self.lock().generation)
    }

    /// Keep a successful lookup, unless the cache was invalidated since `seen` was taken
    /// (the lookup may then have read a token that is revoked now). Returns whether it was
    /// kept.
    pub fn insert(&self, seen: Generation, hash: [u8; 32], caller: Caller) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.generation != seen.0 {
            return false;
        }
        if inner.entries.len() >= self.capacity && !inner.entries.contains_key(&hash) {
            inner.entries.retain(|_, (_, until)| now < *until);
            if inner.entries.len() >= self.capacity {
                inner.entries.clear();
            }
        }
        inner.entries.insert(hash, (caller, now + self.ttl));
        true
    }

    /// Forget every entry and refuse results of lookups already in flight. Called after
    /// every token create and revoke.
    pub fn invalidate(&self) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.entries.clear();
    }

    /// Entries held now (expired ones included).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::token::Role;

    fn caller(id: i64) -> Caller {
        Caller {
            token_id: id,
            name: format!("t{id}"),
            role: Role::Edge,
        }
    }

    #[test]
    fn hit_after_insert_and_miss_after_invalidate() {
        let c = TokenCache::new(Duration::from_secs(60), 10);
        let g = c.generation();
        assert!(c.get(&[1; 32]).is_none());
        assert!(c.insert(g, [1; 32], caller(1)));
        assert_eq!(c.get(&[1; 32]).map(|c| c.token_id), Some(1));
        c.invalidate();
        assert!(c.get(&[1; 32]).is_none());
    }

    #[test]
    fn a_lookup_in_flight_during_an_invalidation_is_not_kept() {
        let c = TokenCache::new(Duration::from_secs(60), 10);
        let before = c.generation();
        c.invalidate(); // a revoke committed while the lookup read the database
        assert!(!c.insert(before, [2; 32], caller(2)));
        assert!(c.get(&[2; 32]).is_none());
        assert!(c.insert(c.generation(), [2; 32], caller(2)));
        assert!(c.get(&[2; 32]).is_some());
    }

    #[test]
    fn entries_expire_after_ttl() {
        let c = TokenCache::new(Duration::from_millis(30), 10);
        assert!(c.insert(c.generation(), [3; 32], caller(3)));
        assert!(c.get(&[3; 32]).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.get(&[3; 32]).is_none());
        assert!(
            c.get_stale(&[3; 32]).is_some(),
            "an expired entry is kept for outages"
        );
        c.invalidate();
        assert!(c.get_stale(&[3; 32]).is_none(), "an invalidated one is not");
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let c = TokenCache::new(Duration::ZERO, 10);
        assert!(!c.insert(c.generation(), [4; 32], caller(4)));
        assert!(c.get(&[4; 32]).is_none());
    }

    #[test]
    fn size_is_bounded() {
        let c = TokenCache::new(Duration::from_secs(60), 3);
        for i in 0..10u8 {
            assert!(c.insert(c.generation(), [i; 32], caller(i64::from(i))));
            assert!(c.len() <= 3, "{} entries", c.len());
        }
        assert!(c.get(&[9; 32]).is_some(), "the newest entry is kept");
    }
}
