//! What one worker VM decides between host calls, free of any host: when to send the sync
//! and report calls, what a sync answer changes in the schedule (back-off, streaks of
//! refusals worth one log line each), which report to send (a new one, or the one not yet
//! acknowledged, unchanged), and what to adopt from another VM's announcement. The filter's
//! root context (`edge-filter/src/root.rs`) asks these questions and carries out the
//! answers with host calls; the lease itself is [`crate::lease`].

use crate::config::SyncSettings;
use crate::model::Version;
use crate::shared::Announcement;
use crate::sync::{next_poll_ms, Backoff};

/// A change worth one log line (the filter words it; streaks are logged once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// The control plane refused the edge token (first of a streak).
    Unauthorized,
    /// The token is accepted again after a streak of refusals.
    TokenAccepted,
    /// An answer's seal did not hold, for a reason not logged in this streak yet.
    Rejected(&'static str),
    /// Answers verify again after a streak of refusals.
    Verified,
}

/// How a sync call ended, as far as the schedule is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// A new policy was installed.
    Updated,
    /// Nothing new.
    NotModified,
    /// The edge token was refused.
    Unauthorized,
    /// The answer's seal did not hold (its [`crate::seal::SealError::reason`]).
    Rejected(&'static str),
    /// Anything else (no answer, a bad status, a policy that would not apply).
    Failed,
}

/// The sync and report schedule of one VM.
#[derive(Clone, Debug)]
pub struct Schedule {
    backoff: Backoff,
    next_sync_ms: u64,
    /// When the sync call in flight (or the last one) was sent.
    sync_sent_ms: u64,
    sync_in_flight: bool,
    next_report_ms: u64,
    report_in_flight: bool,
    /// A report sent but not acknowledged: sent again as is (same `seq`).
    pending_report: Option<Vec<u8>>,
    report_seq: u64,
    unauthorized: bool,
    rejected: Option<&'static str>,
}

/// What to send on this tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    pub sync: bool,
    pub report: bool,
}

impl Schedule {
    /// A schedule configured at `now_ms`: the first sync on the first tick, the first report
    /// one interval later.
    pub fn new(sync: &SyncSettings, now_ms: u64) -> Schedule {
        Schedule {
            backoff: Backoff::new(sync.retry_initial_ms, sync.retry_max_ms),
            next_sync_ms: 0,
            sync_sent_ms: 0,
            sync_in_flight: false,
            next_report_ms: now_ms + u64::from(sync.report_interval_s) * 1000,
            report_in_flight: false,
            pending_report: None,
            report_seq: 0,
            unauthorized: false,
            rejected: None,
        }
    }

    /// What is due at `now_ms`; `leads` is whether this VM holds the sync lease.
    pub fn due(&self, sync: &SyncSettings, now_ms: u64, leads: bool) -> Due {
        Due {
            sync: leads && !self.sync_in_flight && now_ms >= self.next_sync_ms,
            report: sync.report_interval_s > 0
                && !self.report_in_flight
                && now_ms >= self.next_report_ms,
        }
    }

    /// The sync call went out.
    pub fn sync_sent(&mut self, now_ms: u64) {
        self.sync_in_flight = true;
        self.sync_sent_ms = now_ms;
    }

    /// The sync call could not be sent, or its answer did not help: back off.
    fn sync_failed(&mut self, now_ms: u64, random: u64) {
        self.sync_in_flight = false;
        self.next_sync_ms = now_ms + self.backoff.fail(random);
    }

    /// The host refused to send the sync call.
    pub fn sync_not_sent(&mut self, now_ms: u64, random: u64) {
        self.sync_failed(now_ms, random);
    }

    /// The sync call's answer, handled at `now_ms`: reschedules, and says what is worth a
    /// log line.
    pub fn sync_answered(
        &mut self,
        sync: &SyncSettings,
        answer: Answered,
        now_ms: u64,
        random: u64,
    ) -> Vec<Note> {
        let mut notes = Vec::new();
        let verified = matches!(answer, Answered::Updated | Answered::NotModified);
        if verified && self.rejected.take().is_some() {
            notes.push(Note::Verified);
        }
        match answer {
            Answered::Updated | Answered::NotModified => {
                if std::mem::take(&mut self.unauthorized) {
                    notes.push(Note::TokenAccepted);
                }
                self.backoff.reset();
                self.sync_in_flight = false;
                let changed = answer == Answered::Updated;
                self.next_sync_ms = next_poll_ms(sync, self.sync_sent_ms, now_ms, changed);
            }
            Answered::Unauthorized => {
                if !self.unauthorized {
                    notes.push(Note::Unauthorized);
                }
                self.unauthorized = true;
                self.sync_failed(now_ms, random);
            }
            Answered::Rejected(reason) => {
                if self.rejected != Some(reason) {
                    notes.push(Note::Rejected(reason));
                }
                self.rejected = Some(reason);
                self.sync_failed(now_ms, random);
            }
            Answered::Failed => self.sync_failed(now_ms, random),
        }
        notes
    }

    /// The next report's body: the one not yet acknowledged, unchanged, or a new one made
    /// by `make` with the next sequence number. Schedules the next report.
    pub fn report_body(
        &mut self,
        sync: &SyncSettings,
        now_ms: u64,
        make: impl FnOnce(u64) -> Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        let body = match self.pending_report.take() {
            Some(b) => b,
            None => {
                self.report_seq += 1;
                make(self.report_seq)?
            }
        };
        self.pending_report = Some(body.clone());
        self.next_report_ms = now_ms + u64::from(sync.report_interval_s) * 1000;
        Some(body)
    }

    /// Whether the report went out (a report that did not stays pending).
    pub fn report_sent(&mut self, sent: bool) {
        self.report_in_flight = sent;
    }

    /// The report's answer: acknowledged (2xx) or to be sent again. True when acknowledged.
    pub fn report_answered(&mut self, status: Option<u16>) -> bool {
        self.report_in_flight = false;
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        if ok {
            self.pending_report = None;
        }
        ok
    }

    pub fn next_sync_ms(&self) -> u64 {
        self.next_sync_ms
    }

    pub fn failures(&self) -> u32 {
        self.backoff.failures()
    }
}

/// What a VM takes from another VM's announcement (the policy in shared data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adopt {
    /// Nothing: it holds the announced version, or it already tried this snapshot.
    Nothing,
    /// Apply the shared deltas to the matcher held, then decode the snapshot if they do
    /// not reach the announced version (`and_snapshot`).
    Deltas { and_snapshot: bool },
    /// Decode the shared snapshot (and apply the deltas on top).
    Snapshot,
}

/// What to adopt from `announced`, holding `held` (None: no policy) and having last tried
/// the snapshot publication `tried`.
pub fn adoption(announced: &Announcement, held: Option<Version>, tried: Option<u64>) -> Adopt {
    let fresh_snapshot = tried != Some(announced.snapshot) || held.is_none();
    match held {
        Some(v) if v == announced.version => Adopt::Nothing,
        // On the shared chain: the deltas since the snapshot lead from here.
        Some(v) if announced.base <= v && v < announced.version => Adopt::Deltas {
            and_snapshot: fresh_snapshot,
        },
        _ if fresh_snapshot => Adopt::Snapshot,
        _ => Adopt::Nothing,
    }
}

/// What a failed read of the shared snapshot `tried` means, given the announcement now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFailure {
    /// Another VM published a newer snapshot while this one read (its parts were cleared):
    /// read the new one on the next tick.
    Replaced,
    /// The parts are damaged: keep the policy held, say so, and do not read them again.
    Malformed,
}

pub fn read_failure(tried: u64, now: Option<&Announcement>) -> ReadFailure {
    match now {
        Some(a) if a.snapshot == tried => ReadFailure::Malformed,
        _ => ReadFailure::Replaced,
    }
}

/// Whether a decoded shared snapshot at `version` (after the deltas) replaces what is held.
pub fn adopt_snapshot(version: Version, held: Option<Version>) -> bool {
    held.is_none_or(|h| version > h)
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
