//! Signature verification: any bytes are refused or accepted without a panic; bytes made
//! from a valid sealed answer by the input's edits are accepted only when they are the
//! same answer.
#![no_main]

use ed25519_dalek::SigningKey;
use edge_policy::seal::{self, TrustedKeys};
use edge_policy::wire::{self, Snapshot};
use libfuzzer_sys::fuzz_target;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

fuzz_target!(|data: &[u8]| {
    let trusted = TrustedKeys::new(&[key().verifying_key()]);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // Raw bytes as an answer.
        let r = seal::open(&mut &rest[..], &trusted, None, 0, 0, 1 + mode as usize);
        if let Ok(s) = r {
            // Only a signature by the trusted key verifies: the input carried one.
            assert_eq!(s.key, seal::KeyId::of(&key().verifying_key()));
        }
        return;
    }
    // A valid answer, edited: each pair of input bytes is (position, xor).
    let msg = wire::encode_snapshot(&Snapshot {
        version: 7,
        rules: vec![],
    });
    let good = seal::seal(&msg, 1_000, &[&key()]).expect("sealed");
    let mut bytes = good.clone();
    for pair in rest.chunks_exact(2) {
        let at = pair[0] as usize % (bytes.len() + 1);
        if at == bytes.len() {
            bytes.truncate(bytes.len().saturating_sub(pair[1] as usize));
        } else {
            bytes[at] ^= pair[1];
        }
    }
    let r = seal::open(&mut &bytes[..], &trusted, None, 0, 0, 16);
    assert_eq!(r.is_ok(), bytes == good, "{r:?}");
});
