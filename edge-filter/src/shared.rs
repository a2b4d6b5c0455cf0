//! The policy shared between the worker VMs of one proxy, through shared data. The layout
//! (keys, values, parts) is `edge_policy::shared`; this module only moves bytes.
//!
//! Small keys are written with the CAS just read, which hosts with strict CAS (a set with
//! CAS 0 on an existing key fails) require. Snapshot parts go to fresh keys, which every
//! host accepts with CAS 0, so nothing big is read back into the VM.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use edge_policy::lease::{self, Claim};
use edge_policy::matcher::Pieces;
use edge_policy::shared::{self as layout, Announcement, DELTAS_KEY, LEADER_KEY, VERSION_KEY};
use edge_policy::Version;

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

/// Write a value without reading it back where the host allows that (a fresh key, or any key
/// on Envoy); else as [`put`].
fn put_blind(key: &str, value: &[u8]) -> Result<(), Status> {
    match hostcalls::set_shared_data(key, Some(value), None) {
        Err(Status::CasMismatch) => put(key, value),
        other => other,
    }
}

/// Publish a snapshot as publication `id`: `write` hands its parts (about
/// [`layout::PART_LEN`] bytes of the message each, in order) to the callback it gets. Other
/// VMs see it once all parts are written and it is announced; on any error the parts
/// written so far are cleared and the shared policy stays as it was.
pub fn publish_snapshot(
    id: u64,
    version: Version,
    write: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<(), String>) -> Result<(), String>,
) -> Result<(), String> {
    let mut publication = Publication { id, parts: 0 };
    let written = write(&mut |bytes| publication.part(bytes).map_err(|e| format!("{e:?}")));
    match written {
        Ok(()) => publication.commit(version).map_err(|e| format!("{e:?}")),
        Err(e) => {
            clear(publication.id, publication.parts);
            Err(e)
        }
    }
}

/// A snapshot being published, part by part.
struct Publication {
    id: u64,
    parts: usize,
}

impl Publication {
    fn part(&mut self, bytes: &[u8]) -> Result<(), Status> {
        put_blind(&layout::part_key(self.id, self.parts), bytes)?;
        self.parts += 1;
        Ok(())
    }

    /// Announce the snapshot (with an empty delta log) and clear the parts of the one it
    /// replaces. On an error its own parts are cleared instead.
    fn commit(self, version: Version) -> Result<(), Status> {
        let old = announced();
        let result = u32::try_from(self.parts)
            .map_err(|_| Status::BadArgument)
            .and_then(|parts| {
                put(DELTAS_KEY, &[])?;
                put(
                    VERSION_KEY,
                    &Announcement {
                        version,
                        base: version,
                        snapshot: self.id,
                        parts,
                    }
                    .encode(),
                )
            });
        match (&result, old) {
            (Ok(()), Some(old)) if old.snapshot != self.id => {
                clear(old.snapshot, old.parts as usize)
            }
            (Err(_), _) => clear(self.id, self.parts),
            _ => {}
        }
        result
    }
}

/// Empty the parts of a snapshot (proxy-wasm cannot delete a key; an empty value frees it).
fn clear(id: u64, parts: usize) {
    for i in 0..parts {
        let _ = put_blind(&layout::part_key(id, i), &[]);
    }
}

/// Publish a delta on top of the shared policy. `Ok(false)` when it cannot be appended (the
/// shared policy is not at `since`, or the delta log is full): publish a snapshot instead.
pub fn publish_delta(delta_bytes: &[u8], since: Version, version: Version) -> Result<bool, Status> {
    let Some(a) = announced() else {
        return Ok(false);
    };
    if a.version != since {
        return Ok(false);
    }
    let (log, cas) = cas_of(DELTAS_KEY)?;
    let mut log = log.unwrap_or_default();
    if !layout::append_delta(&mut log, delta_bytes) {
        return Ok(false);
    }
    match hostcalls::set_shared_data(DELTAS_KEY, Some(&log), cas) {
        Ok(()) => {}
        Err(Status::CasMismatch) => return Ok(false),
        Err(e) => return Err(e),
    }
    put(VERSION_KEY, &Announcement { version, ..a }.encode())?;
    Ok(true)
}

/// What the VMs announced: the newest version and where its snapshot is.
pub fn announced() -> Option<Announcement> {
    let (bytes, _) = cas_of(VERSION_KEY).ok()?;
    Announcement::decode(&bytes?)
}

/// The parts of an announced snapshot, read one at a time.
pub struct SharedParts(pub Announcement);

impl Pieces for SharedParts {
    fn piece(&mut self, i: usize, out: &mut Vec<u8>) -> Result<bool, String> {
        if i >= self.0.parts as usize {
            return Ok(false);
        }
        match cas_of(&layout::part_key(self.0.snapshot, i)) {
            Ok((Some(bytes), _)) if !bytes.is_empty() => {
                *out = bytes;
                Ok(true)
            }
            Ok(_) => Err(format!("shared snapshot part {i} is gone (replaced)")),
            Err(e) => Err(format!("shared snapshot part {i}: {e:?}")),
        }
    }
}

/// The shared deltas, oldest first.
pub fn shared_deltas() -> Vec<Vec<u8>> {
    let log = cas_of(DELTAS_KEY)
        .ok()
        .and_then(|(v, _)| v)
        .unwrap_or_default();
    layout::deltas(&log)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
}

/// Take or renew the sync lease (the decision is [`lease::claim`]). Returns whether this VM
/// leads now and whether it just took the lease over (see [`Claim::Write`]).
///
/// A host without shared data (an error other than a CAS race) makes every VM its own
/// leader: more sync traffic, but enforcement never depends on the lease.
pub fn try_lead(me: u64, now_ms: u64, lease_ms: u64) -> (bool, bool) {
    let (current, cas) = match cas_of(LEADER_KEY) {
        Ok(v) => v,
        Err(_) => return (true, false),
    };
    let Claim::Write { lease, moved } = lease::claim(current.as_deref(), me, now_ms, lease_ms)
    else {
        return (false, false);
    };
    match hostcalls::set_shared_data(LEADER_KEY, Some(&lease.encode()), cas) {
        Ok(()) => (true, moved),
        Err(Status::CasMismatch) => (false, false),
        Err(_) => (true, false),
    }
}
