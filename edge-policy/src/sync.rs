//! The policy sync decisions the filter makes, free of any proxy: back-off, what a
//! response means, and what to ask for next.

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

/// Classify a sync call's response. `status` is None when the callout failed (no `:status`).
/// The body is read in pieces, so a big snapshot is compiled without a copy of it in memory.
pub fn classify(status: Option<&str>, body: &mut dyn Pieces, current: Version) -> SyncOutcome {
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

fn accept(m: Update, current: Version) -> SyncOutcome {
    match &m {
        // A snapshot is authoritative, whatever its version.
        Update::Snapshot(s) if s.version() == current && current != 0 => SyncOutcome::NotModified,
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

/// The `:path` of a sync call.
pub fn poll_path(policy_path: &str, since: Version, wait_s: u32) -> String {
    format!("{policy_path}?since={since}&wait={wait_s}")
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
            classify(Some("200"), &mut pieces(&snap), 0),
            SyncOutcome::Update(_)
        ));
        assert!(matches!(
            classify(Some("200"), &mut pieces(&snap), 3),
            SyncOutcome::NotModified
        ));
        // A snapshot older than ours still wins: the control plane is the source of truth.
        assert!(matches!(
            classify(Some("200"), &mut pieces(&snap), 9),
            SyncOutcome::Update(_)
        ));
        let delta = encode_delta(&Delta {
            since: 3,
            version: 4,
            ..Default::default()
        });
        assert!(matches!(
            classify(Some("200"), &mut pieces(&delta), 3),
            SyncOutcome::Update(_)
        ));
        assert!(matches!(
            classify(Some("200"), &mut pieces(&delta), 2),
            SyncOutcome::Failed(_)
        ));
        assert!(matches!(
            classify(Some("200"), &mut pieces(&delta), 4),
            SyncOutcome::NotModified
        ));
        assert!(matches!(
            classify(Some("304"), &mut pieces(b""), 3),
            SyncOutcome::NotModified
        ));
        assert!(matches!(
            classify(Some("401"), &mut pieces(b""), 3),
            SyncOutcome::Unauthorized(401)
        ));
        assert!(matches!(
            classify(Some("200"), &mut pieces(b"garbage"), 3),
            SyncOutcome::Failed(_)
        ));
        assert!(matches!(
            classify(Some("500"), &mut pieces(b""), 3),
            SyncOutcome::Failed(_)
        ));
        assert!(matches!(
            classify(None, &mut pieces(b""), 3),
            SyncOutcome::Failed(_)
        ));
    }
}
