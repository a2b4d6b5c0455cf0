//! How the worker VMs of one proxy share the policy through proxy-wasm shared data: key
//! names and value layouts, one definition for the filter and for tools that seed or
//! inspect a host's shared data (benchmarks, tests). No host calls here.
//!
//! Keys:
//! - [`VERSION_KEY`]: an [`Announcement`]: the newest version, the version of the shared
//!   snapshot it builds on, and where that snapshot's parts are. Small, so every VM checks it
//!   on every tick without copying anything big.
//! - [`part_key`]`(snapshot, i)`: part `i` of a snapshot message (wire format) split into
//!   pieces of [`PART_LEN`] bytes. Each publication has its own random id, so a part is
//!   never rewritten: a VM reading parts while a newer snapshot is published reads the old
//!   parts or (after they are cleared) an empty one, never a mix of two encodings. Parts
//!   keep a VM's memory at the matcher plus one part instead of matcher plus message (the
//!   whole message is 17 MiB for a million rules).
//! - [`DELTAS_KEY`]: the deltas (wire format) received since that snapshot, in order, each
//!   framed by its length (u32 LE), so a VM one version behind applies a small delta
//!   instead of decoding the snapshot again.
//! - [`LEADER_KEY`]: the sync lease (owner id and expiry, 8 + 8 bytes LE).

use crate::model::Version;

pub const VERSION_KEY: &str = "edge_containment.policy_version.v2";
pub const DELTAS_KEY: &str = "edge_containment.policy_deltas.v2";
pub const LEADER_KEY: &str = "edge_containment.sync_leader.v1";
/// Bytes per snapshot part (the last part is shorter).
pub const PART_LEN: usize = 1 << 20;
/// Past this many bytes of deltas the leader publishes a fresh snapshot instead.
pub const DELTAS_MAX_BYTES: usize = 1 << 20;

/// The name of part `i` of the snapshot published as `snapshot`.
pub fn part_key(snapshot: u64, i: usize) -> String {
    format!("edge_containment.policy.v2.{snapshot:016x}.{i}")
}

/// The value of [`VERSION_KEY`]: 8 + 8 + 8 + 4 bytes, little endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The newest version: the snapshot plus the logged deltas.
    pub version: Version,
    /// The version of the shared snapshot.
    pub base: Version,
    /// The id of the snapshot's publication (names its parts).
    pub snapshot: u64,
    /// How many parts the snapshot has.
    pub parts: u32,
}

impl Announcement {
    pub const LEN: usize = 28;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut v = [0u8; Self::LEN];
        v[..8].copy_from_slice(&self.version.to_le_bytes());
        v[8..16].copy_from_slice(&self.base.to_le_bytes());
        v[16..24].copy_from_slice(&self.snapshot.to_le_bytes());
        v[24..].copy_from_slice(&self.parts.to_le_bytes());
        v
    }

    /// `None` unless exactly [`Announcement::LEN`] bytes.
    pub fn decode(b: &[u8]) -> Option<Announcement> {
        let b: &[u8; Self::LEN] = b.try_into().ok()?;
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let mut p = [0u8; 4];
        p.copy_from_slice(&b[24..]);
        Some(Announcement {
            version: u64_at(0),
            base: u64_at(8),
            snapshot: u64_at(16),
            parts: u32::from_le_bytes(p),
        })
    }
}

/// Append one delta to a delta log; false (log unchanged) when it would pass
/// [`DELTAS_MAX_BYTES`].
pub fn append_delta(log: &mut Vec<u8>, delta: &[u8]) -> bool {
    let Ok(len) = u32::try_from(delta.len()) else {
        return false;
    };
    if log.len() + delta.len() + 4 > DELTAS_MAX_BYTES {
        return false;
    }
    log.extend_from_slice(&len.to_le_bytes());
    log.extend_from_slice(delta);
    true
}

/// The deltas in a log, oldest first (a malformed frame ends the list).
pub fn deltas(log: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = log;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let Some(frame) = tail.get(..len) else { break };
        out.push(frame);
        rest = &tail[len..];
    }
    out
}

/// A snapshot message split into parts of [`PART_LEN`] bytes.
pub fn split(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    message.chunks(PART_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_round_trips_and_rejects_other_lengths() {
        let a = Announcement {
            version: 9,
            base: 7,
            snapshot: 0xdead_beef_0123,
            parts: 17,
        };
        assert_eq!(Announcement::decode(&a.encode()), Some(a));
        assert_eq!(Announcement::decode(&a.encode()[..16]), None);
        assert_eq!(Announcement::decode(&[0u8; 29]), None);
    }

    #[test]
    fn delta_log_frames_and_caps() {
        let mut log = Vec::new();
        assert!(append_delta(&mut log, b"one"));
        assert!(append_delta(&mut log, b""));
        assert!(append_delta(&mut log, b"three"));
        assert_eq!(deltas(&log), vec![&b"one"[..], b"", b"three"]);
        let before = log.clone();
        assert!(!append_delta(&mut log, &vec![0u8; DELTAS_MAX_BYTES]));
        assert_eq!(log, before);
        // A truncated frame ends the list.
        log.extend_from_slice(&10u32.to_le_bytes());
        log.extend_from_slice(b"short");
        assert_eq!(deltas(&log).len(), 3);
    }

    #[test]
    fn part_keys_differ_per_publication_and_index() {
        assert_ne!(part_key(1, 0), part_key(2, 0));
        assert_ne!(part_key(1, 0), part_key(1, 1));
        assert_eq!(split(&vec![0u8; PART_LEN * 2 + 1]).count(), 3);
    }
}
