//! The clock of the incident-response policy: which deadlines apply to an incident, when
//! each is due, whether and when it was met. Pure: computed from the incident's facts and
//! history every time it is read, so a changed fact moves its deadlines at once.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, Time, Weekday};
use utoipa::ToSchema;

use super::incident::Phase;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// A deadline of the policy.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    /// Preliminary report: 2 h after the report.
    PreliminaryReport,
    /// Detection & analysis done: 30 min after detection.
    PhaseDetectionAnalysis,
    /// Containment done: 2 h after detection.
    PhaseContainment,
    /// Eradication & recovery done: 24 h after detection.
    PhaseEradicationRecovery,
    /// Post-incident activity done: 72 h after detection.
    PhasePostIncident,
    /// Supervisory authority notified (GDPR): 72 h after becoming aware; personal data only.
    AuthorityNotification,
    /// HIPAA breach notice: 60 days after becoming aware; health data only.
    HipaaNotice,
    /// Post-mortem submitted: 5 business days after resolution.
    PostMortem,
}

impl DeadlineKind {
    pub const ALL: [DeadlineKind; 8] = [
        DeadlineKind::PreliminaryReport,
        DeadlineKind::PhaseDetectionAnalysis,
        DeadlineKind::PhaseContainment,
        DeadlineKind::PhaseEradicationRecovery,
        DeadlineKind::PhasePostIncident,
        DeadlineKind::AuthorityNotification,
        DeadlineKind::HipaaNotice,
        DeadlineKind::PostMortem,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineKind::PreliminaryReport => "preliminary_report",
            DeadlineKind::PhaseDetectionAnalysis => "phase_detection_analysis",
            DeadlineKind::PhaseContainment => "phase_containment",
            DeadlineKind::PhaseEradicationRecovery => "phase_eradication_recovery",
            DeadlineKind::PhasePostIncident => "phase_post_incident",
            DeadlineKind::AuthorityNotification => "authority_notification",
            DeadlineKind::HipaaNotice => "hipaa_notice",
            DeadlineKind::PostMortem => "post_mortem",
        }
    }
}

impl FromStr for DeadlineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "expected one of: {}",
                    Self::ALL.map(DeadlineKind::as_str).join(", ")
                )
            })
    }
}

/// Where a deadline stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineStatus {
    /// Not met, not yet due.
    Pending,
    /// Met (possibly late: see `late`).
    Met,
    /// Not met and past due (met exactly at the due time is in time).
    Overdue,
}

impl DeadlineStatus {
    pub const ALL: [DeadlineStatus; 3] = [
        DeadlineStatus::Pending,
        DeadlineStatus::Met,
        DeadlineStatus::Overdue,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineStatus::Pending => "pending",
            DeadlineStatus::Met => "met",
            DeadlineStatus::Overdue => "overdue",
        }
    }
}

impl FromStr for DeadlineStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| "expected pending, met, overdue or all".to_string())
    }
}

/// One computed deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub kind: DeadlineKind,
    pub due_at: i64,
    pub met_at: Option<i64>,
    pub status: DeadlineStatus,
    /// Met after it was due.
    pub late: bool,
    /// How the due time was computed, in words.
    pub rule: String,
}

/// Days that do not count as business days besides Saturday and Sunday.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holidays(pub BTreeSet<Date>);

impl Holidays {
    /// Parse `YYYY-MM-DD` dates separated by commas, whitespace or newlines; `#` starts a
    /// comment that runs to the end of the line.
    pub fn parse(s: &str) -> Result<Holidays, String> {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        let mut set = BTreeSet::new();
        for line in s.lines() {
            let line = line.split('#').next().unwrap_or("");
            for d in line
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|d| !d.is_empty())
            {
                let date = Date::parse(d, &fmt)
                    .map_err(|_| format!("{d:?} is not a date (expected YYYY-MM-DD)"))?;
                set.insert(date);
            }
        }
        Ok(Holidays(set))
    }

    pub fn is_business_day(&self, d: Date) -> bool {
        !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) && !self.0.contains(&d)
    }
}

fn utc(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// `n` business days after the UTC date of `from_ms`: the count starts the day after that
/// date (whatever the hour), and the deadline is the end (23:59:59.999 UTC) of the n-th
/// business day. A resolution on Friday evening (or on Saturday) is due the next Friday.
pub fn business_days_after(from_ms: i64, n: u32, holidays: &Holidays) -> i64 {
    let mut d = utc(from_ms).date();
    let mut counted = 0;
    while counted < n {
        match d.next_day() {
            Some(next) => d = next,
            None => return i64::MAX,
        }
        if holidays.is_business_day(d) {
            counted += 1;
        }
    }
    let end = d.with_time(Time::MIDNIGHT).assume_utc() + time::Duration::days(1);
    to_ms(end) - 1
}

/// Everything the deadlines of one incident depend on.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadlineFacts {
    pub phase: Phase,
    pub detected_at: i64,
    pub reported_at: i64,
    pub personal_data: bool,
    pub health_data: bool,
    pub aware_at: Option<i64>,
    pub resolved_at: Option<i64>,
    /// Phase moves in time order: (at, from, to).
    pub phase_moves: Vec<(i64, Phase, Phase)>,
    /// First recorded preliminary report, authority notification and HIPAA notice.
    pub preliminary_report_at: Option<i64>,
    pub authority_notified_at: Option<i64>,
    pub hipaa_notice_at: Option<i64>,
    /// When the post-mortem was first submitted.
    pub postmortem_at: Option<i64>,
}

/// When the incident last moved past `p` (from `p` or earlier to a later phase), if it is
/// past `p` now.
fn left_phase(f: &DeadlineFacts, p: Phase) -> Option<i64> {
    if f.phase <= p {
        return None;
    }
    f.phase_moves
        .iter()
        .rev()
        .find(|(_, from, to)| *from <= p && *to > p)
        .map(|(at, _, _)| *at)
}

fn deadline(
    kind: DeadlineKind,
    due_at: i64,
    met_at: Option<i64>,
    now: i64,
    rule: String,
) -> Deadline {
    let status = match met_at {
        Some(_) => DeadlineStatus::Met,
        None if now > due_at => DeadlineStatus::Overdue,
        None => DeadlineStatus::Pending,
    };
    Deadline {
        kind,
        due_at,
        met_at,
        status,
        late: met_at.is_some_and(|m| m > due_at),
        rule,
    }
}

/// The deadlines that apply to an incident at `now`.
pub fn compute(f: &DeadlineFacts, holidays: &Holidays, now: i64) -> Vec<Deadline> {
    let mut out = vec![deadline(
        DeadlineKind::PreliminaryReport,
        f.reported_at + 2 * HOUR,
        f.preliminary_report_at,
        now,
        "2 h after reported_at".into(),
    )];
    for (kind, phase, after, words) in [
        (
            DeadlineKind::PhaseDetectionAnalysis,
            Phase::DetectionAnalysis,
            30 * MIN,
            "30 min",
        ),
        (
            DeadlineKind::PhaseContainment,
            Phase::Containment,
            2 * HOUR,
            "2 h",
        ),
        (
            DeadlineKind::PhaseEradicationRecovery,
            Phase::EradicationRecovery,
            24 * HOUR,
            "24 h",
        ),
        (
            DeadlineKind::PhasePostIncident,
            Phase::PostIncident,
            72 * HOUR,
            "72 h",
        ),
    ] {
        out.push(deadline(
            kind,
            f.detected_at + after,
            left_phase(f, phase),
            now,
            format!("{} left {words} after detected_at", phase.as_str()),
        ));
    }
    let aware = f.aware_at.unwrap_or(f.reported_at);
    if f.personal_data {
        out.push(deadline(
            DeadlineKind::AuthorityNotification,
            aware + 72 * HOUR,
            f.authority_notified_at,
            now,
            "72 h after aware_at (personal data involved)".into(),
        ));
    }
    if f.health_data {
        out.push(deadline(
            DeadlineKind::HipaaNotice,
            aware + 60 * DAY,
            f.hipaa_notice_at,
            now,
            "60 days after aware_at (health data involved)".into(),
        ));
    }
    if let Some(resolved) = f.resolved_at {
        out.push(deadline(
            DeadlineKind::PostMortem,
            business_days_after(resolved, 5, holidays),
            f.postmortem_at,
            now,
            "end of the 5th business day (UTC, Mon–Fri, holidays skipped) after the day of resolved_at".into(),
        ));
    }
    out
}

impl fmt::Display for DeadlineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many deadlines of each kind (every kind, in [`DeadlineKind::ALL`] order) are
/// overdue at `now` over the incidents whose `facts` are given (the `/metrics` gauge).
pub fn overdue_by_kind<'a>(
    facts: impl IntoIterator<Item = &'a DeadlineFacts>,
    holidays: &Holidays,
    now: i64,
) -> Vec<(DeadlineKind, usize)> {
    let mut counts: Vec<(DeadlineKind, usize)> =
        DeadlineKind::ALL.into_iter().map(|k| (k, 0)).collect();
    for f in facts {
        for d in compute(f, holidays, now) {
            if d.status == DeadlineStatus::Overdue {
                if let Some(c) = counts.iter_mut().find(|(k, _)| *k == d.kind) {
                    c.1 += 1;
                }
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{parse_rfc3339, rfc3339};

    fn t(s: &str) -> i64 {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn business_days_skip_weekends_and_holidays() {
        let none = Holidays::default();
        // 2026-03-06 is a Friday: Friday evening counts from Monday.
        let fri = t("2026-03-06T22:30:00Z");
        assert_eq!(
            rfc3339(business_days_after(fri, 5, &none)),
            "2026-03-13T23:59:59.999Z"
        );
        let sat = t("2026-03-07T10:00:00Z");
        assert_eq!(
            rfc3339(business_days_after(sat, 5, &none)),
            "2026-03-13T23:59:59.999Z"
        );
        let mon = t("2026-03-09T00:00:00Z");
        assert_eq!(
            rfc3339(business_days_after(mon, 5, &none)),
            "2026-03-16T23:59:59.999Z"
        );
        let h = Holidays::parse("2026-03-10, 2026-03-11 # two days\n2026-12-25").unwrap();
        assert_eq!(h.0.len(), 3);
        assert_eq!(
            rfc3339(business_days_after(mon, 5, &h)),
            "2026-03-18T23:59:59.999Z"
        );
        assert!(Holidays::parse("2026-13-01").is_err());
    }

    fn facts() -> DeadlineFacts {
        DeadlineFacts {
            phase: Phase::DetectionAnalysis,
            detected_at: t("2026-03-02T10:00:00Z"),
            reported_at: t("2026-03-02T10:10:00Z"),
            personal_data: false,
            health_data: false,
            aware_at: None,
            resolved_at: None,
            phase_moves: vec![],
            preliminary_report_at: None,
            authority_notified_at: None,
            hipaa_notice_at: None,
            postmortem_at: None,
        }
    }

    fn find(ds: &[Deadline], k: DeadlineKind) -> Option<&Deadline> {
        ds.iter().find(|d| d.kind == k)
    }

    #[test]
    fn phase_windows_met_when_left() {
        let mut f = facts();
        let now = t("2026-03-02T10:20:00Z");
        let ds = compute(&f, &Holidays::default(), now);
        assert_eq!(ds.len(), 5);
        assert!(ds.iter().all(|d| d.status == DeadlineStatus::Pending));
        f.phase = Phase::Containment;
        f.phase_moves = vec![(
            t("2026-03-02T10:40:00Z"),
            Phase::DetectionAnalysis,
            Phase::Containment,
        )];
        let ds = compute(&f, &Holidays::default(), t("2026-03-02T13:00:00Z"));
        let da = find(&ds, DeadlineKind::PhaseDetectionAnalysis).unwrap();
        assert_eq!((da.status, da.late), (DeadlineStatus::Met, true));
        let c = find(&ds, DeadlineKind::PhaseContainment).unwrap();
        assert_eq!(c.status, DeadlineStatus::Overdue);
        assert_eq!(
            find(&ds, DeadlineKind::PreliminaryReport).unwrap().status,
            DeadlineStatus::Overdue
        );
        // Reopened: detection & analysis is not done any more.
        f.phase = Phase::DetectionAnalysis;
        f.phase_moves.push((
            t("2026-03-02T11:00:00Z"),
            Phase::Containment,
            Phase::DetectionAnalysis,
        ));
        let ds = compute(&f, &Holidays::default(), t("2026-03-02T13:00:00Z"));
        assert_eq!(
            find(&ds, DeadlineKind::PhaseDetectionAnalysis)
                .unwrap()
                .status,
            DeadlineStatus::Overdue
        );
    }

    #[test]
    fn conditional_deadlines() {
        let mut f = facts();
        let ds = compute(&f, &Holidays::default(), f.reported_at);
        assert!(find(&ds, DeadlineKind::AuthorityNotification).is_none());
        assert!(find(&ds, DeadlineKind::HipaaNotice).is_none());
        assert!(find(&ds, DeadlineKind::PostMortem).is_none());
        f.personal_data = true;
        f.health_data = true;
        f.aware_at = Some(t("2026-03-03T00:00:00Z"));
        f.resolved_at = Some(t("2026-03-06T18:00:00Z"));
        let ds = compute(&f, &Holidays::default(), f.reported_at);
        let a = find(&ds, DeadlineKind::AuthorityNotification).unwrap();
        assert_eq!(rfc3339(a.due_at), "2026-03-06T00:00:00.000Z");
        let h = find(&ds, DeadlineKind::HipaaNotice).unwrap();
        assert_eq!(rfc3339(h.due_at), "2026-05-02T00:00:00.000Z");
        let p = find(&ds, DeadlineKind::PostMortem).unwrap();
        assert_eq!(rfc3339(p.due_at), "2026-03-13T23:59:59.999Z");
        for k in DeadlineKind::ALL {
            assert_eq!(k.as_str().parse::<DeadlineKind>(), Ok(k));
        }
        for s in DeadlineStatus::ALL {
            assert_eq!(s.as_str().parse::<DeadlineStatus>(), Ok(s));
        }
    }

    #[test]
    fn overdue_deadlines_are_counted_by_kind() {
        let now = t("2026-03-02T13:00:00Z");
        let all = [facts(), facts()];
        let counts = overdue_by_kind(&all, &Holidays::default(), now);
        assert_eq!(counts.len(), DeadlineKind::ALL.len());
        let want: Vec<(DeadlineKind, usize)> = DeadlineKind::ALL
            .into_iter()
            .map(|k| {
                let n = compute(&facts(), &Holidays::default(), now)
                    .iter()
                    .filter(|d| d.kind == k && d.status == DeadlineStatus::Overdue)
                    .count();
                (k, 2 * n)
            })
            .collect();
        assert_eq!(counts, want);
        assert!(counts.iter().any(|(_, n)| *n > 0));
        assert!(overdue_by_kind([], &Holidays::default(), now)
            .iter()
            .all(|(_, n)| *n == 0));
    }
}
