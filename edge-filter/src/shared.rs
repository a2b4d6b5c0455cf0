//! The policy shared between the worker VMs of one proxy through shared data.
//!
//! Keys:
//! - [`POLICY_KEY`]: the encoded snapshot (wire format) of the newest policy;
//! - [`VERSION_KEY`]: its version, 8 bytes little endian, so each VM can check for a new
//!   policy without copying the snapshot;
//! - [`LEADER_KEY`]: the sync lease (owner id and expiry, 8 + 8 bytes LE): only the VM that
//!   holds it talks to the control plane.
//!
//! Every write reads the key first and passes back the CAS it got, which is what hosts with
//! strict CAS (a set with CAS 0 on an existing key fails) require.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use edge_policy::Version;

pub const POLICY_KEY: &str = "edge_containment.policy.v1";
pub const VERSION_KEY: &str = "edge_containment.policy_version.v1";
pub const LEADER_KEY: &str = "edge_containment.sync_leader.v1";

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

/// Publish a policy for every VM: the snapshot first, then the version that announces it.
pub fn publish(snapshot_bytes: &[u8], version: Version) -> Result<(), Status> {
    put(POLICY_KEY, snapshot_bytes)?;
    put(VERSION_KEY, &version.to_le_bytes())
}

/// The version other VMs announced, if any.
pub fn shared_version() -> Option<Version> {
    let (bytes, _) = cas_of(VERSION_KEY).ok()?;
    let arr: [u8; 8] = bytes?.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(arr))
}

/// The shared snapshot bytes.
pub fn shared_policy() -> Option<Vec<u8>> {
    cas_of(POLICY_KEY).ok()?.0
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
