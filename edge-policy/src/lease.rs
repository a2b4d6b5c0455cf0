//! The sync lease: which worker VM of one proxy talks to the control plane. Pure: the
//! filter reads the lease from shared data ([`crate::shared::LEADER_KEY`]), asks [`claim`]
//! what to write back, and writes it with the CAS it read, so two VMs never both win.
//!
//! The leader renews on every tick, also while its long-poll is in flight (a long-poll
//! lasts far longer than the lease), so exactly one VM per proxy polls; a VM that stops
//! ticking (trapped, re-created with a new id) loses the lease within [`lease_ms`].

use crate::config::SyncSettings;

/// The value under [`crate::shared::LEADER_KEY`]: owner id and expiry, 8 + 8 bytes LE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The random id of the VM holding it.
    pub owner: u64,
    /// Unix milliseconds after which another VM may take it.
    pub until_ms: u64,
}

/// What [`claim`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Write this lease (with the CAS read): this VM leads. `moved` is true when it did not
    /// lead before (the lease was free, expired, or another VM's that lapsed).
    Write { lease: Lease, moved: bool },
    /// Another VM holds a live lease.
    HeldByOther(u64),
}

impl Lease {
    pub const LEN: usize = 16;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut v = [0u8; Self::LEN];
        v[..8].copy_from_slice(&self.owner.to_le_bytes());
        v[8..].copy_from_slice(&self.until_ms.to_le_bytes());
        v
    }

    /// `None` unless exactly [`Lease::LEN`] bytes.
    pub fn decode(b: &[u8]) -> Option<Lease> {
        let b: &[u8; Self::LEN] = b.try_into().ok()?;
        let (owner, until) = b.split_at(8);
        Some(Lease {
            owner: u64::from_le_bytes(owner.try_into().ok()?),
            until_ms: u64::from_le_bytes(until.try_into().ok()?),
        })
    }
}

/// How long a lease lasts without renewal: at least 2 s, and at least 20 ticks, so a leader
/// whose ticks are late (a busy worker) keeps it.
pub fn lease_ms(sync: &SyncSettings) -> u64 {
    2_000u64.max(20 * u64::from(sync.shared_check_ms))
}

/// May VM `me` lead at `now_ms`, given the lease value currently stored (`None`: no value)?
/// A value that is not a lease (another layout, an emptied key) counts as free.
pub fn claim(current: Option<&[u8]>, me: u64, now_ms: u64, lease_ms: u64) -> Claim {
    let held = current.and_then(Lease::decode);
    if let Some(l) = held {
        if l.owner != me && l.until_ms > now_ms {
            return Claim::HeldByOther(l.owner);
        }
    }
    let moved = !matches!(held, Some(l) if l.owner == me && l.until_ms > now_ms);
    Claim::Write {
        lease: Lease {
            owner: me,
            until_ms: now_ms.saturating_add(lease_ms),
        },
        moved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u64 = 7;
    const OTHER: u64 = 9;

    fn stored(owner: u64, until_ms: u64) -> Vec<u8> {
        Lease { owner, until_ms }.encode().to_vec()
    }

    #[test]
    fn round_trips_and_rejects_other_lengths() {
        let l = Lease {
            owner: u64::MAX,
            until_ms: 1,
        };
        assert_eq!(Lease::decode(&l.encode()), Some(l));
        assert_eq!(Lease::decode(&[0; 15]), None);
        assert_eq!(Lease::decode(&[0; 17]), None);
    }

    #[test]
    fn free_lease_is_taken_and_counts_as_a_move() {
        for current in [None, Some(&[][..]), Some(&b"garbage"[..])] {
            assert_eq!(
                claim(current, ME, 100, 50),
                Claim::Write {
                    lease: Lease {
                        owner: ME,
                        until_ms: 150
                    },
                    moved: true
                }
            );
        }
    }

    #[test]
    fn renewal_by_the_holder_is_not_a_move() {
        let c = claim(Some(&stored(ME, 120)), ME, 100, 50);
        assert_eq!(
            c,
            Claim::Write {
                lease: Lease {
                    owner: ME,
                    until_ms: 150
                },
                moved: false
            }
        );
    }

    #[test]
    fn a_live_lease_of_another_vm_is_respected_until_it_lapses() {
        assert_eq!(
            claim(Some(&stored(OTHER, 101)), ME, 100, 50),
            Claim::HeldByOther(OTHER)
        );
        // Lapsed (expiry is exclusive): taken, and that is a move.
        assert!(matches!(
            claim(Some(&stored(OTHER, 100)), ME, 100, 50),
            Claim::Write { moved: true, .. }
        ));
        // The holder's own lapsed lease is re-taken: it may have lost it in between.
        assert!(matches!(
            claim(Some(&stored(ME, 90)), ME, 100, 50),
            Claim::Write { moved: true, .. }
        ));
    }

    #[test]
    fn lease_outlives_many_ticks() {
        let mut s = SyncSettings::default();
        assert_eq!(lease_ms(&s), 2_000);
        s.shared_check_ms = 500;
        assert_eq!(lease_ms(&s), 10_000);
        // No overflow near the end of time.
        assert!(matches!(
            claim(None, ME, u64::MAX - 1, 50),
            Claim::Write {
                lease: Lease {
                    until_ms: u64::MAX,
                    ..
                },
                ..
            }
        ));
    }
}
