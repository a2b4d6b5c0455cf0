use super::*;
use crate::lease::{self, Claim};

fn settings() -> SyncSettings {
    SyncSettings {
        long_poll_wait_s: 20,
        retry_initial_ms: 100,
        retry_max_ms: 1000,
        report_interval_s: 10,
        ..SyncSettings::default()
    }
}

fn announced(version: Version, base: Version, snapshot: u64) -> Announcement {
    Announcement {
        version,
        base,
        snapshot,
        parts: 3,
    }
}

#[test]
fn the_first_sync_goes_out_on_the_first_tick_and_only_from_the_leader() {
    let cfg = settings();
    let s = Schedule::new(&cfg, 1_000);
    assert!(s.due(&cfg, 1_000, true).sync);
    assert!(
        !s.due(&cfg, 1_000, false).sync,
        "a VM without the lease never polls"
    );
    assert!(
        !s.due(&cfg, 1_000, true).report,
        "the first report after one interval"
    );
    assert!(
        s.due(&cfg, 11_000, false).report,
        "every VM reports its own hits"
    );
}

#[test]
fn one_sync_call_at_a_time_and_news_is_followed_at_once() {
    let cfg = settings();
    let mut s = Schedule::new(&cfg, 0);
    s.sync_sent(10);
    assert!(!s.due(&cfg, 50, true).sync, "in flight");
    assert!(s.sync_answered(&cfg, Answered::Updated, 60, 0).is_empty());
    assert!(s.due(&cfg, 60, true).sync, "news: poll again at once");
    s.sync_sent(60);
    s.sync_answered(&cfg, Answered::NotModified, 70, 0);
    assert!(
        !s.due(&cfg, 70, true).sync,
        "an early 304 waits out the wait"
    );
    assert_eq!(s.next_sync_ms(), 60 + 20_000);
}

#[test]
fn failures_back_off_and_a_success_resets() {
    let cfg = settings();
    let mut s = Schedule::new(&cfg, 0);
    s.sync_sent(0);
    s.sync_answered(&cfg, Answered::Failed, 100, 0);
    assert_eq!(s.failures(), 1);
    let first = s.next_sync_ms();
    assert!((150..=200).contains(&first), "{first}");
    assert!(!s.due(&cfg, first - 1, true).sync);
    assert!(s.due(&cfg, first, true).sync);
    s.sync_not_sent(first, 0);
    assert_eq!(s.failures(), 2);
    s.sync_sent(500);
    s.sync_answered(&cfg, Answered::NotModified, 600, 0);
    assert_eq!(s.failures(), 0);
}

#[test]
fn refusals_are_noted_once_per_streak_and_reason() {
    let cfg = settings();
    let mut s = Schedule::new(&cfg, 0);
    let answer = |s: &mut Schedule, a| {
        s.sync_sent(0);
        s.sync_answered(&cfg, a, 1, 7)
    };
    assert_eq!(answer(&mut s, Answered::Unauthorized), [Note::Unauthorized]);
    assert!(answer(&mut s, Answered::Unauthorized).is_empty());
    assert_eq!(answer(&mut s, Answered::NotModified), [Note::TokenAccepted]);
    assert!(answer(&mut s, Answered::NotModified).is_empty());

    assert_eq!(
        answer(&mut s, Answered::Rejected("altered")),
        [Note::Rejected("altered")]
    );
    assert!(answer(&mut s, Answered::Rejected("altered")).is_empty());
    assert_eq!(
        answer(&mut s, Answered::Rejected("unknown_key")),
        [Note::Rejected("unknown_key")],
        "a new reason is worth a line"
    );
    // A failure of another kind does not end the refusal streak.
    assert!(answer(&mut s, Answered::Failed).is_empty());
    assert!(answer(&mut s, Answered::Rejected("unknown_key")).is_empty());
    assert_eq!(answer(&mut s, Answered::Updated), [Note::Verified]);
    assert_eq!(s.failures(), 0);
}

#[test]
fn an_unacknowledged_report_is_resent_unchanged_with_its_sequence_number() {
    let cfg = settings();
    let mut s = Schedule::new(&cfg, 0);
    let made = std::cell::RefCell::new(Vec::new());
    let make = |seq: u64| {
        made.borrow_mut().push(seq);
        Some(format!("report {seq}").into_bytes())
    };
    let first = s.report_body(&cfg, 10_000, make).unwrap();
    s.report_sent(true);
    assert!(!s.due(&cfg, 20_000, true).report, "one report in flight");
    assert!(!s.report_answered(Some(503)));
    assert!(s.due(&cfg, 20_000, true).report);
    let again = s.report_body(&cfg, 20_000, make).unwrap();
    assert_eq!(
        again, first,
        "resent as is: the control plane drops duplicates"
    );
    s.report_sent(true);
    assert!(!s.report_answered(None), "no answer at all: resent too");
    let third = s.report_body(&cfg, 30_000, make).unwrap();
    assert_eq!(third, first);
    assert!(s.report_answered(Some(204)));
    let next = s.report_body(&cfg, 40_000, make).unwrap();
    assert_eq!(next, b"report 2");
    assert_eq!(*made.borrow(), [1, 2]);
    // A report that could not even be sent stays pending.
    s.report_sent(false);
    assert!(s.due(&cfg, 50_000, true).report);
    assert_eq!(s.report_body(&cfg, 50_000, make).unwrap(), b"report 2");
}

#[test]
fn what_to_adopt_from_an_announcement() {
    let a = announced(7, 4, 0xaa);
    // Nothing held: the snapshot, even one tried before.
    assert_eq!(adoption(&a, None, None), Adopt::Snapshot);
    assert_eq!(adoption(&a, None, Some(0xaa)), Adopt::Snapshot);
    // Current: nothing.
    assert_eq!(adoption(&a, Some(7), None), Adopt::Nothing);
    // On the chain: the deltas, and the snapshot only if not tried yet.
    assert_eq!(
        adoption(&a, Some(5), None),
        Adopt::Deltas { and_snapshot: true }
    );
    assert_eq!(
        adoption(&a, Some(4), Some(0xaa)),
        Adopt::Deltas {
            and_snapshot: false
        }
    );
    // Behind the snapshot, or ahead of the announcement: the snapshot once.
    assert_eq!(adoption(&a, Some(2), None), Adopt::Snapshot);
    assert_eq!(adoption(&a, Some(2), Some(0xaa)), Adopt::Nothing);
    assert_eq!(adoption(&a, Some(9), Some(0xbb)), Adopt::Snapshot);
    assert!(
        !adopt_snapshot(7, Some(9)),
        "never go back to an older policy"
    );
    assert!(adopt_snapshot(7, Some(6)));
    assert!(adopt_snapshot(0, None), "the empty policy is a policy");
}

#[test]
fn a_snapshot_replaced_while_reading_is_read_again_a_damaged_one_is_not() {
    let tried = announced(7, 7, 0xaa);
    // A newer publication replaced the parts mid-read.
    let newer = announced(8, 8, 0xbb);
    assert_eq!(read_failure(0xaa, Some(&newer)), ReadFailure::Replaced);
    assert_eq!(adoption(&newer, Some(5), Some(0xaa)), Adopt::Snapshot);
    // Announcement gone (cleared): read whatever comes next.
    assert_eq!(read_failure(0xaa, None), ReadFailure::Replaced);
    // Same publication still announced: the parts are damaged.
    assert_eq!(read_failure(0xaa, Some(&tried)), ReadFailure::Malformed);
    assert_eq!(adoption(&tried, Some(5), Some(0xaa)), Adopt::Nothing);
}

#[test]
fn a_leader_that_lost_the_lease_during_a_long_load_stops_polling() {
    let cfg = settings();
    let lease_ms = lease::lease_ms(&cfg);
    // VM 1 leads and sends its long-poll.
    let Claim::Write { lease: l1, .. } = lease::claim(None, 1, 0, lease_ms) else {
        panic!("a free lease is taken")
    };
    let mut s = Schedule::new(&cfg, 0);
    s.sync_sent(0);
    // Its answer (a big snapshot) takes longer than the lease: VM 2 takes it meanwhile.
    let Claim::Write { lease: l2, moved } =
        lease::claim(Some(&l1.encode()), 2, lease_ms + 1, lease_ms)
    else {
        panic!("a lapsed lease is taken over")
    };
    assert!(moved);
    // VM 1 finishes loading and tries to renew: refused, so it does not poll again.
    let done = lease_ms + 500;
    assert_eq!(
        lease::claim(Some(&l2.encode()), 1, done, lease_ms),
        Claim::HeldByOther(2)
    );
    s.sync_answered(&cfg, Answered::Updated, done, 0);
    assert!(!s.due(&cfg, done, false).sync);
    // It keeps reporting its own hits.
    assert!(s.due(&cfg, done + 10_000, false).report);
}
