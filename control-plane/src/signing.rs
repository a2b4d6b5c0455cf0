//! Sealing policy answers with the store's signing keys (see `edge_policy::seal` for the
//! layout and `domain::signing` for which keys sign when).
//!
//! Keys are read from the store at most once per [`KEYS_TTL`], so a rotation made by
//! `control-plane key rotate` (another process on the same database) is picked up within
//! that time; during a rotation's overlap both keys sign, so nothing depends on when.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use rand::RngCore;

use crate::clock::Clock;
use crate::domain::signing::{self, SigningKeyRecord};
use crate::domain::{CoreError, CoreResult};
use crate::store::Store;

/// How long the signing keys read from the store are reused.
pub const KEYS_TTL: Duration = Duration::from_secs(5);

/// A new signing key from the OS-seeded CSPRNG.
pub fn generate(now: i64) -> SigningKeyRecord {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    SigningKeyRecord::new(secret, now)
}

/// Create the first signing key when the store has none (first start). Audited as
/// `signing_key.create` by `actor`.
pub async fn ensure_key(store: &dyn Store, clock: &dyn Clock, actor: &str) -> CoreResult<()> {
    let now = clock.now_ms();
    let keys = store
        .add_signing_key(actor, generate(now), 0, true, now)
        .await?;
    if let Some(k) = keys.last() {
        tracing::info!(key_id = %k.key_id, public_key = %k.public_key(), "policy answers are signed; edges trust this key in control_plane.trusted_keys");
    }
    Ok(())
}

pub struct Signer {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: Mutex<Option<(Instant, Arc<Vec<SigningKeyRecord>>)>>,
    /// Seals made in the last [`SEAL_REUSE_MS`], by message digest, with their time.
    seals: Mutex<HashMap<[u8; 32], (i64, Bytes)>>,
}

/// How long a seal is reused for the same answer: thousands of edges woken by one commit
/// ask for the same answer within milliseconds, and an Ed25519 signature per request made
/// signing the control plane's main cost at 5,000 edges. Edges check a seal's version and
/// its age in whole seconds, so a seal up to 1 s old is as good as a new one.
pub const SEAL_REUSE_MS: i64 = 1000;

/// Seals kept at most (distinct answers within [`SEAL_REUSE_MS`]).
const MAX_SEALS: usize = 4096;

impl Signer {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Signer {
        Signer {
            store,
            clock,
            cache: Mutex::new(None),
            seals: Mutex::new(HashMap::new()),
        }
    }

    /// Every key (cached for [`KEYS_TTL`]).
    pub async fn keys(&self) -> CoreResult<Arc<Vec<SigningKeyRecord>>> {
        if let Ok(g) = self.cache.lock() {
            if let Some((at, keys)) = g.as_ref() {
                if at.elapsed() < KEYS_TTL {
                    return Ok(keys.clone());
                }
            }
        }
        let mut keys = match self.store.signing_keys().await {
            Ok(keys) => keys,
            // The database is unreachable: sign with the keys last read (no rotation can
            // commit meanwhile through this replica's database), so long-polls keep answering.
            Err(CoreError::Unavailable(m)) => {
                let cached = self
                    .cache
                    .lock()
                    .ok()
                    .and_then(|g| g.as_ref().map(|(_, k)| k.clone()));
                return cached.ok_or(CoreError::Unavailable(m));
            }
            Err(e) => return Err(e),
        };
        if keys.is_empty() {
            // A store that was never served from (tests, a copy): its first answer makes the key.
            ensure_key(&*self.store, &*self.clock, "control-plane").await?;
            keys = self.store.signing_keys().await?;
        }
        let keys = Arc::new(keys);
        if let Ok(mut g) = self.cache.lock() {
            *g = Some((Instant::now(), keys.clone()));
        }
        Ok(keys)
    }

    /// The seal to send before `message` (whose SHA-256 is `digest`), signed by every key
    /// that signs now.
    pub async fn seal_prefix(&self, message: &[u8], digest: &[u8; 32]) -> CoreResult<Bytes> {
        let now = self.clock.now_ms();
        let fresh = |at: i64| (0..SEAL_REUSE_MS).contains(&(now - at));
        if let Some((_, seal)) = self
            .seals
            .lock()
            .ok()
            .and_then(|g| g.get(digest).filter(|(at, _)| fresh(*at)).cloned())
        {
            return Ok(seal);
        }
        let seal = self.seal_now(message, digest, now).await?;
        if let Ok(mut g) = self.seals.lock() {
            if g.len() >= MAX_SEALS {
                g.retain(|_, (at, _)| fresh(*at));
                if g.len() >= MAX_SEALS {
                    g.clear();
                }
            }
            g.insert(*digest, (now, seal.clone()));
        }
        Ok(seal)
    }

    async fn seal_now(&self, message: &[u8], digest: &[u8; 32], now: i64) -> CoreResult<Bytes> {
        let keys = self.keys().await?;
        let set: Vec<ed25519_dalek::SigningKey> = signing::signing_set(&keys, now)
            .iter()
            .map(|k| k.signing_key())
            .collect();
        if set.is_empty() {
            return Err(CoreError::Internal(
                "no signing key signs now; run `control-plane key rotate`".into(),
            ));
        }
        let refs: Vec<&ed25519_dalek::SigningKey> = set.iter().collect();
        edge_policy::seal::seal_prefix_with_digest(message, digest, now.max(0) as u64, &refs)
            .map(Bytes::from)
            .ok_or_else(|| CoreError::Internal("a policy answer is not a policy message".into()))
    }
}
