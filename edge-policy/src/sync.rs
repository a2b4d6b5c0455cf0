//! The policy sync decisions the filter makes, free of any proxy: back-off, what a
//! response means, and what to ask for next.

use crate::config::SyncSettings;
use crate::matcher::{Matcher, Update};
use crate::model::Version;
use crate::seal::{self, ReadAt, Seal, SealError, TrustedKeys};
use crate::shared::PART_LEN;
use crate::wire::{Head, WireError};

/// Exponential back-off with jitter.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    failures: u32,
}

impl Backoff {
    pub fn new(initial_ms: u32, max_ms: u32) -> Backoff {
        Backoff {
            initial_ms: initial_ms.max(1) as u64,
            max_ms: max_ms.max(1) as u64,
            failures: 0,
        }
    }

    /// Record a failure and return the delay before the next try: a random point in the
    /// upper half of `min(max, initial * 2^failures)` ("equal jitter"), so edges that lost
    /// the control plane together do not come back in lock-step.
    pub fn fail(&mut self, random: u64) -> u64 {
        let exp = self.failures.min(32);
        self.failures = self.failures.saturating_add(1);
        let ceiling = self.initial_ms.saturating_mul(1u64 << exp).min(self.max_ms);
        let half = ceiling / 2;
        half + random % (ceiling - half + 1)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// What a sync response means.
#[derive(Debug)]
pub enum SyncOutcome {
    /// A newer policy, verified; a snapshot arrives already compiled. The seal says where
    /// the message starts in the body (what is shared with other VMs is the bare message).
    Update(Update, Seal),
    /// Nothing new (304, or a message for the version already held).
    NotModified,
    /// The control plane refused the edge token: an operator must act.
    Unauthorized(u16),
    /// An answer whose seal does not hold (unsigned, unknown key, forged, altered,
    /// truncated, replayed): keep the last good policy, back off, retry.
    Rejected(SealError),
    /// Anything else: keep the last good policy, back off, retry.
    Failed(String),
}

/// What an edge checks an answer's seal against.
#[derive(Clone, Copy, Debug)]
pub struct Trust<'a> {
    pub keys: &'a TrustedKeys,
    /// The edge's clock (Unix ms), for `max_age_s`.
    pub now_ms: u64,
    /// See `control_plane.max_policy_age_s` (0: not checked).
    pub max_age_s: u32,
}

/// Classify a sync call's response. `status` is None when the callout failed (no `:status`);
/// `current` is the version enforced (None: no policy yet).
///
/// A 200 answer is a sealed policy message (see [`crate::seal`]): its seal is verified
/// against `trust` and its digest checked before a byte of the message is decoded, and the
/// decoded message must be the one signed. The body is read in pieces, so a big snapshot is
/// compiled without a copy of it in memory.
pub fn classify(
    status: Option<&str>,
    body: &mut dyn ReadAt,
    current: Option<Version>,
    trust: &Trust<'_>,
) -> SyncOutcome {
    let Some(status) = status else {
        return SyncOutcome::Failed("callout failed: no response from the control plane".into());
    };
    match status.trim().parse::<u16>() {
        Ok(200) => verified(body, current, trust),
        Ok(304) => SyncOutcome::NotModified,
        Ok(s @ (401 | 403)) => SyncOutcome::Unauthorized(s),
        Ok(s) => SyncOutcome::Failed(format!("control plane answered {s}")),
        Err(_) => SyncOutcome::Failed(format!("bad :status {status:?}")),
    }
}

fn verified(body: &mut dyn ReadAt, held: Option<Version>, trust: &Trust<'_>) -> SyncOutcome {
    let seal = match seal::open(
        body,
        trust.keys,
        held,
        trust.now_ms,
        trust.max_age_s,
        PART_LEN,
    ) {
        Ok(s) => s,
        Err(e) => return SyncOutcome::Rejected(e),
    };
    let update = match Matcher::decode_pieces(&mut seal.message(body, PART_LEN)) {
        Ok(m) => m,
        Err(e) => return SyncOutcome::Failed(format!("malformed policy: {e}")),
    };
    let head = match &update {
        Update::Snapshot(m) => Head::Snapshot {
            version: m.version(),
        },
        Update::Delta(d) => Head::Delta {
            since: d.since,
            version: d.version,
        },
    };
    if let Err(e) = seal.check_message(head) {
        return SyncOutcome::Rejected(e);
    }
    accept(update, seal, held)
}

fn accept(m: Update, seal: Seal, held: Option<Version>) -> SyncOutcome {
    let current = held.unwrap_or(0);
    match &m {
        // A snapshot replaces what is held, whatever the rules in it (the seal refused one
        // older than held); the one held (version 0 included) is no news.
        Update::Snapshot(s) if held == Some(s.version()) => SyncOutcome::NotModified,
        Update::Snapshot(_) => SyncOutcome::Update(m, seal),
        Update::Delta(d) if d.since == current => SyncOutcome::Update(m, seal),
        Update::Delta(d) if d.version <= current => SyncOutcome::NotModified,
        Update::Delta(d) => SyncOutcome::Failed(
            WireError::Body(format!(
                "delta since {} does not apply to version {current}",
                d.since
            ))
            .to_string(),
        ),
    }
}

/// The `:path` of a sync call: `since` is the version held, left out when the edge holds no
/// policy yet (version 0 is a version: an empty policy).
pub fn poll_path(policy_path: &str, since: Option<Version>, wait_s: u32) -> String {
    match since {
        Some(v) => format!("{policy_path}?since={v}&wait={wait_s}"),
        None => format!("{policy_path}?wait={wait_s}"),
    }
}

/// The version a sync call says its edge holds, from its `since` parameter and its
/// `If-None-Match` version (the control plane's reading of [`poll_path`] and the ETag the
/// filter sends). `since=0` alone means "nothing yet", as edges sent before version 0 counted
/// as a version, so such an edge still gets its first policy at once; an edge holding the
/// empty policy (version 0) says so with `If-None-Match: "0"`.
pub fn held_version(since: Option<Version>, etag: Option<Version>) -> Option<Version> {
    match since {
        Some(0) => etag.filter(|v| *v == 0),
        Some(v) => Some(v),
        None => etag,
    }
}

/// When (Unix ms) to send the next sync call after one that succeeded: `sent_ms` is when it
/// went out, `now_ms` when its answer came, `changed` whether it brought a new policy.
///
/// A new policy is followed at once by the next long-poll (more may be queued). An answer
/// without news never is: a long-poll the control plane held for its whole wait is followed
/// at once (the wait is over), but one answered early (a control plane or a proxy in between
/// that does not hold it) waits out the rest of the wait, so an idle edge sends at most one
/// long-poll per wait whatever answers it. Plain polling waits `poll_interval_ms`.
pub fn next_poll_ms(sync: &SyncSettings, sent_ms: u64, now_ms: u64, changed: bool) -> u64 {
    if sync.long_poll_wait_s == 0 {
        return now_ms.saturating_add(u64::from(sync.poll_interval_ms));
    }
    if changed {
        return now_ms;
    }
    let wait_ms = u64::from(sync.long_poll_wait_s) * 1000;
    now_ms.max(sent_ms.saturating_add(wait_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_delta, encode_snapshot, Delta, Snapshot};
    use ed25519_dalek::SigningKey;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    fn sealed(message: &[u8]) -> Vec<u8> {
        seal::seal(message, 1, &[&key()]).expect("a policy message")
    }

    fn classify(
        status: Option<&str>,
        body: &mut dyn ReadAt,
        current: Option<Version>,
    ) -> SyncOutcome {
        let keys = TrustedKeys::new(&[key().verifying_key()]);
        let trust = Trust {
            keys: &keys,
            now_ms: 2,
            max_age_s: 0,
        };
        super::classify(status, body, current, &trust)
    }

    #[test]
    fn backoff_grows_and_caps_with_jitter() {
        let mut b = Backoff::new(100, 1000);
        let d: Vec<u64> = (0..8).map(|i| b.fail(i * 7919)).collect();
        assert!((50..=100).contains(&d[0]), "{d:?}");
        assert!((100..=200).contains(&d[1]), "{d:?}");
        assert!(d[5..].iter().all(|x| (500..=1000).contains(x)), "{d:?}");
        b.reset();
        assert!(b.fail(0) <= 100);
        // Many failures must not overflow.
        let mut b = Backoff::new(u32::MAX, u32::MAX);
        for _ in 0..100 {
            assert!(b.fail(u64::MAX) <= u32::MAX as u64);
        }
    }

    fn pieces(b: &[u8]) -> &[u8] {
        b
    }

    #[test]
    fn classify_responses() {
        let snap = sealed(&encode_snapshot(&Snapshot {
            version: 3,
            rules: vec![],
        }));
        assert!(matches!(
            classify(Some("200"), &mut pieces(&snap), None),
            SyncOutcome::Update(..)
        ));
        assert!(matches!(
            classify(Some("200"), &mut pieces(&snap), Some(3)),
            SyncOutcome::NotModified
        ));
        // A snapshot older than ours is a replay: refused, whoever signed it.
        assert!(matches!(
            classify(Some("200"), &mut pieces(&snap), Some(9)),
            SyncOutcome::Rejected(SealError::Replayed { got: 3, held: 9 })
        ));
        let bare = encode_delta(&Delta {
            since: 3,
            version: 4,
            ..Default::default()
        });
        assert!(matches!(
            classify(Some("200"), &mut pieces(&bare), Some(3)),
            SyncOutcome::Rejected(SealError::Unsigned)
        ));
        let delta = sealed(&bare);
        assert!(matches!(
            classify(Some("200"), &mut pieces(&delta), Some(3)),
            SyncOutcome::Update(..)
        ));
        assert!(matches!(
            classify(Some("200"), &mut pieces(&delta), Some(2)),
            SyncOutcome::Failed(_)
        ));
        assert!(matches!(
            classify(Some("200"), &mut pieces(&delta), Some(4)),
            SyncOutcome::NotModified
        ));
        assert!(matches!(
            classify(Some("304"), &mut pieces(b""), Some(3)),
            SyncOutcome::NotModified
        ));
        assert!(matches!(
            classify(Some("401"), &mut pieces(b""), Some(3)),
            SyncOutcome::Unauthorized(401)
        ));
        assert!(matches!(
            classify(Some("200"), &mut pieces(b"garbage"), Some(3)),
            SyncOutcome::Rejected(SealError::Malformed(_))
        ));
        assert!(matches!(
            classify(Some("500"), &mut pieces(b""), Some(3)),
            SyncOutcome::Failed(_)
        ));
        assert!(matches!(
            classify(None, &mut pieces(b""), Some(3)),
            SyncOutcome::Failed(_)
        ));
    }

    #[test]
    fn version_zero_is_a_version() {
        let empty = sealed(&encode_snapshot(&Snapshot {
            version: 0,
            rules: vec![],
        }));
        // First answer: adopted, even though it is version 0.
        assert!(matches!(
            classify(Some("200"), &mut pieces(&empty), None),
            SyncOutcome::Update(..)
        ));
        // Once held, the same empty snapshot again is no news (it used to count as an update,
        // and the edge re-polled at once, in a loop, until the first action existed).
        assert!(matches!(
            classify(Some("200"), &mut pieces(&empty), Some(0)),
            SyncOutcome::NotModified
        ));
        assert_eq!(poll_path("/p", None, 20), "/p?wait=20");
        // What the control plane reads from it (the filter sends `If-None-Match` whenever it
        // holds a version).
        assert_eq!(held_version(None, None), None);
        assert_eq!(
            held_version(Some(0), None),
            None,
            "older edges: nothing yet"
        );
        assert_eq!(held_version(Some(0), Some(0)), Some(0));
        assert_eq!(held_version(Some(0), Some(7)), None);
        assert_eq!(held_version(Some(7), None), Some(7));
        assert_eq!(held_version(None, Some(7)), Some(7));
        assert_eq!(poll_path("/p", Some(0), 20), "/p?since=0&wait=20");
    }

    #[test]
    fn next_poll_never_repeats_an_unchanged_answer_early() {
        let s = SyncSettings::default();
        let wait = u64::from(s.long_poll_wait_s) * 1000;
        // News: poll again at once.
        assert_eq!(next_poll_ms(&s, 1_000, 1_050, true), 1_050);
        // Held for the whole wait, nothing new: at once (the wait is over).
        assert_eq!(next_poll_ms(&s, 1_000, 1_000 + wait, false), 1_000 + wait);
        // Answered early with nothing new: not before the wait is over.
        assert_eq!(next_poll_ms(&s, 1_000, 1_020, false), 1_000 + wait);
        // Plain polling: the interval, news or not.
        let plain = SyncSettings {
            long_poll_wait_s: 0,
            ..SyncSettings::default()
        };
        for changed in [true, false] {
            assert_eq!(
                next_poll_ms(&plain, 0, 5, changed),
                5 + u64::from(plain.poll_interval_ms)
            );
        }
    }
}
