//! The policy shared between the worker VMs of one proxy through shared data.
//!
//! Keys:
//! - [`POLICY_KEY`]: an encoded snapshot (wire format), the base of the shared policy;
//! - [`DELTAS_KEY`]: the encoded deltas (wire format) received since that snapshot, in order,
//!   each framed by its length (u32 LE), so a VM that is one version behind applies a small
//!   delta instead of decoding the whole snapshot again;
//! - [`VERSION_KEY`]: the newest version (8 bytes LE), then the base snapshot's version
//!   (8 bytes LE), so each VM can check for a new policy without copying anything big;
//! - [`LEADER_KEY`]: the sync lease (owner id and expiry, 8 + 8 bytes LE): only the VM that
//!   holds it talks to the control plane.
//!
//! Small keys are written with the CAS just read, which hosts with strict CAS (a set with
//! CAS 0 on an existing key fails) require. The snapshot (megabytes for a large policy) is
//! first written with CAS 0, which Envoy treats as unconditional, so it is never copied back
//! into the VM; only a strict host answers `CasMismatch`, and then it is read for its CAS.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use edge_policy::Version;

pub const POLICY_KEY: &str = "edge_containment.policy.v1";
pub const DELTAS_KEY: &str = "edge_containment.policy_deltas.v1";
pub const VERSION_KEY: &str = "edge_containment.policy_version.v1";
pub const LEADER_KEY: &str = "edge_containment.sync_leader.v1";

/// Past this many bytes of deltas the leader publishes a fresh snapshot instead.
const DELTAS_MAX_BYTES: usize = 1 << 20;

fn cas_of(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    hostcalls::get_shared_data(key)
}

/// Write `value` under `key`, with the CAS just read. Retries once on a CAS race.
fn put(key: &str, value: &[u8]) -> Result<(), Status> {
    let mut last = Status::CasMismatch;
    for _ in 0..2 {
        let (_, cas) = cas_of(key)?;
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => return Ok(()),
            Err(Status::CasMismatch) => last = Status::CasMismatch,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Write a big value: unconditionally where the host allows it (no read back), else as [`put`].
fn put_big(key: &str, value: &[u8]) -> Result<(), Status> {
    match hostcalls::set_shared_data(key, Some(value), None) {
        Err(Status::CasMismatch) => put(key, value),
        other => other,
    }
}

fn version_value(version: Version, base: Version) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&version.to_le_bytes());
    v[8..].copy_from_slice(&base.to_le_bytes());
    v
}

/// Publish a snapshot for every VM: the snapshot, no deltas, then the version announcing it.
pub fn publish(snapshot_bytes: &[u8], version: Version) -> Result<(), Status> {
    put_big(POLICY_KEY, snapshot_bytes)?;
    put(DELTAS_KEY, &[])?;
    put(VERSION_KEY, &version_value(version, version))
}

/// Publish a delta on top of the shared policy. `Ok(false)` when it cannot be appended (the
/// shared policy is not at `since`, or the delta log is full): publish a snapshot instead.
pub fn publish_delta(delta_bytes: &[u8], since: Version, version: Version) -> Result<bool, Status> {
    let Some((shared, base)) = shared_versions() else {
        return Ok(false);
    };
    if shared != since {
        return Ok(false);
    }
    let (log, cas) = cas_of(DELTAS_KEY)?;
    let mut log = log.unwrap_or_default();
    let Ok(len) = u32::try_from(delta_bytes.len()) else {
        return Ok(false);
    };
    if log.len() + delta_bytes.len() + 4 > DELTAS_MAX_BYTES {
        return Ok(false);
    }
    log.extend_from_slice(&len.to_le_bytes());
    log.extend_from_slice(delta_bytes);
    match hostcalls::set_shared_data(DELTAS_KEY, Some(&log), cas) {
        Ok(()) => {}
        Err(Status::CasMismatch) => return Ok(false),
        Err(e) => return Err(e),
    }
    put(VERSION_KEY, &version_value(version, base))?;
    Ok(true)
}

/// The version other VMs announced and the version of the shared snapshot it builds on.
pub fn shared_versions() -> Option<(Version, Version)> {
    let (bytes, _) = cas_of(VERSION_KEY).ok()?;
    let bytes = bytes?;
    let version = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let base = bytes
        .get(8..16)
        .and_then(|b| b.try_into().ok())
        .map_or(version, u64::from_le_bytes);
    Some((version, base))
}

/// The shared snapshot bytes.
pub fn shared_policy() -> Option<Vec<u8>> {
    cas_of(POLICY_KEY).ok()?.0
}

/// The shared deltas, oldest first (a malformed frame ends the list).
pub fn shared_deltas() -> Vec<Vec<u8>> {
    let log = cas_of(DELTAS_KEY)
        .ok()
        .and_then(|(v, _)| v)
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut rest = log.as_slice();
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let Some(frame) = tail.get(..len) else { break };
        out.push(frame.to_vec());
        rest = &tail[len..];
    }
    out
}

/// Take or renew the sync lease. Returns true when this VM holds it now.
///
/// A host without shared data (an error other than a CAS race) makes every VM its own
/// leader: more sync traffic, but enforcement never depends on the lease.
pub fn try_lead(me: u64, now_ms: u64, lease_ms: u64) -> bool {
    let (current, cas) = match cas_of(LEADER_KEY) {
        Ok(v) => v,
        Err(_) => return true,
    };
    if let Some(b) = current.as_deref() {
        if b.len() == 16 {
            let owner = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
            let until = u64::from_le_bytes(b[8..16].try_into().unwrap_or_default());
            if owner != me && until > now_ms {
                return false;
            }
        }
    }
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&me.to_le_bytes());
    value[8..].copy_from_slice(&(now_ms + lease_ms).to_le_bytes());
    match hostcalls::set_shared_data(LEADER_KEY, Some(&value), cas) {
        Ok(()) => true,
        Err(Status::CasMismatch) => false,
        Err(_) => true,
    }
}
