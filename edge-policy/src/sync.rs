//! The policy sync decisions the filter makes, free of any proxy: back-off, what a
//! response means, and what to ask for next.

use crate::config::SyncSettings;
use crate::matcher::{Matcher, Pieces, Update};
use crate::model::Version;
use crate::wire::WireError;

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
    /// A newer policy; a snapshot arrives already compiled.
    Update(Update),
    /// Nothing new (304, or a message for the version already held).
    NotModified,
    /// The control plane refused the edge token: an operator must act.
    Unauthorized(u16),
    /// Anything else: keep the last good policy, back off, retry.
    Failed(String),
}

/// Classify a sync call's response. `status` is None when the callout failed (no `:status`);
/// `current` is the version enforced (None: no policy yet).
/// The body is read in pieces, so a big snapshot is compiled without a copy of it in memory.
pub fn classify(
    status: Option<&str>,
    body: &mut dyn Pieces,
    current: Option<Version>,
) -> SyncOutcome {
    let Some(status) = status else {
        return SyncOutcome::Failed("callout failed: no response from the control plane".into());
    };
    match status.trim().parse::<u16>() {
        Ok(200) => match Matcher::decode_pieces(body) {
            Ok(m) => accept(m, current),
            Err(e) => SyncOutcome::Failed(format!("malformed policy: {e}")),
        },
        Ok(304) => SyncOutcome::NotModified,
        Ok(s @ (401 | 403)) => SyncOutcome::Unauthorized(s),
        Ok(s) => SyncOutcome::Failed(format!("control plane answered {s}")),
        Err(_) => SyncOutcome::Failed(format!("bad :status {status:?}")),
    }
}

fn accept(m: Update, held: Option<Version>) -> SyncOutcome {
    let current = held.unwrap_or(0);
    match &m {
        // A snapshot is authoritative, whatever its version; the one held (version 0
        // included) is no news.
        Update::Snapshot(s) if held == Some(s.version()) => SyncOutcome::NotModified,
        Update::Snapshot(_) => SyncOutcome::Update(m),
        Update::Delta(d) if d.since == current => SyncOutcome::Update(m),
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
    use crate::matcher::SlicePieces;
    use crate::wire::{encode_delta, encode_snapshot, Delta, Snapshot};

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

    fn pieces(b: &[u8]) -> SlicePieces<'_> {
        // Small pieces, so messages span several of them.
        SlicePieces { bytes: b, len: 3 }
    }

    #[test]
    fn classify_responses() {
        let snap = encode_snapshot(&Snapshot {
            version: 3,
            rules: vec![],
        });
        assert!(matches!(
            classify(Some("200"), &mut pieces(&snap), None),
            SyncOutcome::Update(_)
        ));
        assert!(matches!(
            classify(Some("200"), &mut pieces(&snap), Some(3)),
            SyncOutcome::NotModified
        ));
        // A snapshot older than ours still wins: the control plane is the source of truth.
        assert!(matches!(
            classify(Some("200"), &mut pieces(&snap), Some(9)),
            SyncOutcome::Update(_)
        ));
        let delta = encode_delta(&Delta {
            since: 3,
            version: 4,
            ..Default::default()
        });
        assert!(matches!(
            classify(Some("200"), &mut pieces(&delta), Some(3)),
            SyncOutcome::Update(_)
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
            SyncOutcome::Failed(_)
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
        let empty = encode_snapshot(&Snapshot {
            version: 0,
            rules: vec![],
        });
        // First answer: adopted, even though it is version 0.
        assert!(matches!(
            classify(Some("200"), &mut pieces(&empty), None),
            SyncOutcome::Update(_)
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
