//! Incidents: severity, phases and the rules for changing them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::facts::{FactsChange, IncidentFacts};
use super::{check_name, check_text, CoreError, CoreResult};

/// Incident severity. `P0` is the most severe. On input the older scale is accepted too:
/// `critical` → P0, `high` → P1, `medium` → P2, `low` → P3 (case-insensitive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String")]
pub enum Severity {
    /// Critical: active breach, exfiltration, compromise.
    P0,
    /// High: potential breach, vulnerability exploitation.
    P1,
    /// Medium: policy violation, suspicious activity.
    P2,
    /// Low: awareness issue, minor violation.
    P3,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::P0, Severity::P1, Severity::P2, Severity::P3];
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P0 => "P0",
            Severity::P1 => "P1",
            Severity::P2 => "P2",
            Severity::P3 => "P3",
        }
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "p0" | "critical" => Ok(Severity::P0),
            "p1" | "high" => Ok(Severity::P1),
            "p2" | "medium" => Ok(Severity::P2),
            "p3" | "low" => Ok(Severity::P3),
            _ => Err(format!(
                "unknown severity {:?} (expected one of: P0, P1, P2, P3, critical, high, medium, low)",
                s.chars().take(32).collect::<String>()
            )),
        }
    }
}

impl TryFrom<String> for Severity {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Incident phase, in order. Moving to an earlier phase needs a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Detection & analysis (target: 0–30 min from detection).
    DetectionAnalysis,
    /// Containment (30 min–2 h).
    Containment,
    /// Eradication & recovery (2–24 h).
    EradicationRecovery,
    /// Post-incident activity (24–72 h).
    PostIncident,
    /// Closed.
    Closed,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::DetectionAnalysis,
        Phase::Containment,
        Phase::EradicationRecovery,
        Phase::PostIncident,
        Phase::Closed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::DetectionAnalysis => "detection_analysis",
            Phase::Containment => "containment",
            Phase::EradicationRecovery => "eradication_recovery",
            Phase::PostIncident => "post_incident",
            Phase::Closed => "closed",
        }
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown phase {:?} (expected one of: {})",
                    s.chars().take(32).collect::<String>(),
                    Phase::ALL.map(Phase::as_str).join(", ")
                )
            })
    }
}

/// A validated new incident.
#[derive(Clone, Debug, PartialEq)]
pub struct NewIncident {
    pub title: String,
    pub summary: String,
    pub severity: Severity,
    pub assignee: Option<String>,
    pub detected_at_ms: i64,
    pub reported_at_ms: i64,
    pub systems: Vec<String>,
    pub personal_data: bool,
    pub health_data: bool,
    /// When the company became aware of a personal-data breach (set when personal or
    /// health data is involved; defaults to `reported_at_ms`).
    pub aware_at_ms: Option<i64>,
    pub next_update_at_ms: Option<i64>,
    pub facts: IncidentFacts,
}

/// Allowed clock skew for "when was it detected" times given by clients.
pub const FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

impl NewIncident {
    #[allow(clippy::too_many_arguments)]
    pub fn validate(
        title: &str,
        summary: &str,
        severity: Severity,
        assignee: Option<&str>,
        detected_at_ms: i64,
        reported_at_ms: i64,
        systems: &[String],
        personal_data: bool,
        now_ms: i64,
    ) -> CoreResult<NewIncident> {
        let title = check_name("title", title, 200)?;
        let summary = check_text("summary", summary, 10_000, false)?;
        let assignee = assignee
            .map(|a| check_name("assignee", a, 200))
            .transpose()?;
        if detected_at_ms > now_ms + FUTURE_SKEW_MS {
            return Err(CoreError::invalid("detected_at", "is in the future"));
        }
        if reported_at_ms > now_ms + FUTURE_SKEW_MS {
            return Err(CoreError::invalid("reported_at", "is in the future"));
        }
        if reported_at_ms < detected_at_ms {
            return Err(CoreError::invalid("reported_at", "is before detected_at"));
        }
        if systems.len() > 100 {
            return Err(CoreError::invalid(
                "systems_affected",
                "at most 100 entries",
            ));
        }
        let systems = systems
            .iter()
            .enumerate()
            .map(|(i, s)| check_name(&format!("systems_affected[{i}]"), s, 200))
            .collect::<CoreResult<Vec<_>>>()?;
        Ok(NewIncident {
            title,
            summary,
            severity,
            assignee,
            detected_at_ms,
            reported_at_ms,
            systems,
            personal_data,
            health_data: false,
            aware_at_ms: None,
            next_update_at_ms: None,
            facts: IncidentFacts::default(),
        })
    }

    /// Add the response-policy facts. `aware_at` defaults to the reported time when personal
    /// or health data is involved.
    pub fn with_record(
        mut self,
        health_data: bool,
        aware_at_ms: Option<i64>,
        next_update_at_ms: Option<i64>,
        facts: &FactsChange,
        now_ms: i64,
    ) -> CoreResult<NewIncident> {
        if aware_at_ms.is_some_and(|t| t > now_ms + FUTURE_SKEW_MS) {
            return Err(CoreError::invalid("aware_at", "is in the future"));
        }
        self.health_data = health_data;
        self.aware_at_ms = match aware_at_ms {
            Some(t) => Some(t),
            None if self.personal_data || health_data => Some(self.reported_at_ms),
            None => None,
        };
        self.next_update_at_ms = next_update_at_ms;
        facts.apply(&mut self.facts);
        Ok(self)
    }
}

/// A validated change to an incident. `assignee: Some(None)` clears the assignee.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IncidentChange {
    pub severity: Option<Severity>,
    pub phase: Option<Phase>,
    pub assignee: Option<Option<String>>,
    pub reason: Option<String>,
    pub summary: Option<String>,
    pub personal_data: Option<bool>,
    pub health_data: Option<bool>,
    pub aware_at_ms: Option<i64>,
    pub next_update_at_ms: Option<i64>,
    pub facts: FactsChange,
    /// What closing does with containment still live (required when there is some).
    pub live_containment: Option<LiveContainment>,
}

/// What closing an incident does with its live containment actions (`lift_all` or
/// `keep_containment` in the request, each with its `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveContainment {
    /// Lift every live action in the same change (one policy version).
    LiftAll,
    /// Keep them enforced on purpose, as the timeline records.
    Keep,
}

/// A change as a client sends it.
#[derive(Clone, Debug, Default)]
pub struct ChangeInput<'a> {
    pub severity: Option<Severity>,
    pub phase: Option<Phase>,
    pub assignee: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub summary: Option<&'a str>,
    pub personal_data: Option<bool>,
    pub health_data: Option<bool>,
    pub aware_at_ms: Option<i64>,
    pub next_update_at_ms: Option<i64>,
    pub lift_all: Option<bool>,
    pub keep_containment: Option<bool>,
}

impl IncidentChange {
    pub fn validate(
        input: ChangeInput<'_>,
        facts: FactsChange,
        now_ms: i64,
    ) -> CoreResult<IncidentChange> {
        let nothing = input.severity.is_none()
            && input.phase.is_none()
            && input.assignee.is_none()
            && input.summary.is_none()
            && input.personal_data.is_none()
            && input.health_data.is_none()
            && input.aware_at_ms.is_none()
            && input.next_update_at_ms.is_none()
            && facts.is_empty();
        if nothing {
            return Err(CoreError::invalid(
                "body",
                "give at least one of severity, phase, assignee, summary, personal_data, health_data, \
                 aware_at, next_update_at, impact, indicators or a GDPR fact",
            ));
        }
        let assignee = match input.assignee {
            None => None,
            Some(a) if a.trim().is_empty() => Some(None),
            Some(a) => Some(Some(check_name("assignee", a, 200)?)),
        };
        let reason = match input.reason {
            None => None,
            Some(r) => Some(check_text("reason", r, 2000, true)?),
        };
        let summary = input
            .summary
            .map(|s| check_text("summary", s, 10_000, false))
            .transpose()?;
        if input
            .aware_at_ms
            .is_some_and(|t| t > now_ms + FUTURE_SKEW_MS)
        {
            return Err(CoreError::invalid("aware_at", "is in the future"));
        }
        let live_containment = match (input.lift_all, input.keep_containment) {
            (Some(true), Some(true)) => {
                return Err(CoreError::invalid(
                    "keep_containment",
                    "give lift_all or keep_containment, not both",
                ))
            }
            (Some(true), _) => Some(("lift_all", LiveContainment::LiftAll)),
            (_, Some(true)) => Some(("keep_containment", LiveContainment::Keep)),
            _ => None,
        };
        if let Some((field, _)) = live_containment {
            if input.phase != Some(Phase::Closed) {
                return Err(CoreError::invalid(
                    field,
                    "only applies when closing (phase: closed)",
                ));
            }
            if reason.is_none() {
                return Err(CoreError::invalid(
                    "reason",
                    format!("{field} needs a reason (it is recorded on the timeline)"),
                ));
            }
        }
        let live_containment = live_containment.map(|(_, l)| l);
        Ok(IncidentChange {
            severity: input.severity,
            phase: input.phase,
            assignee,
            reason,
            summary,
            personal_data: input.personal_data,
            health_data: input.health_data,
            aware_at_ms: input.aware_at_ms,
            next_update_at_ms: input.next_update_at_ms,
            facts,
            live_containment,
        })
    }
}

/// Check a phase move: forward (or staying) is free, backward needs a reason.
pub fn check_phase_move(from: Phase, to: Phase, reason: Option<&str>) -> CoreResult<()> {
    if to < from && reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(CoreError::invalid(
            "reason",
            format!(
                "moving back from {} to {} needs a reason",
                from.as_str(),
                to.as_str()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_accepts_both_scales() {
        for (s, want) in [
            ("P0", Severity::P0),
            ("p1", Severity::P1),
            ("critical", Severity::P0),
            ("High", Severity::P1),
            ("medium", Severity::P2),
            ("LOW", Severity::P3),
        ] {
            assert_eq!(s.parse::<Severity>(), Ok(want), "{s}");
        }
        assert!("P4".parse::<Severity>().is_err());
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
        }
    }

    #[test]
    fn phase_round_trip_and_order() {
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>(), Ok(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
        }
        assert!(Phase::DetectionAnalysis < Phase::Closed);
    }

    #[test]
    fn backwards_needs_reason() {
        for from in Phase::ALL {
            for to in Phase::ALL {
                let r = check_phase_move(from, to, None);
                assert_eq!(r.is_ok(), to >= from, "{from:?} -> {to:?}");
                assert!(check_phase_move(from, to, Some("reopened: new evidence")).is_ok());
            }
        }
    }

    #[test]
    fn new_incident_validation_names_fields() {
        let now = 1_000_000_000;
        let err = |r: CoreResult<NewIncident>| match r {
            Err(CoreError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        let ok = NewIncident::validate("t", "", Severity::P1, None, now, now, &[], false, now);
        assert!(ok.is_ok());
        let f = err(NewIncident::validate(
            " ",
            "",
            Severity::P1,
            None,
            now,
            now,
            &[],
            false,
            now,
        ));
        assert_eq!(f, "title");
        let f = err(NewIncident::validate(
            "t",
            "",
            Severity::P1,
            None,
            now + FUTURE_SKEW_MS + 1,
            now + FUTURE_SKEW_MS + 1,
            &[],
            false,
            now,
        ));
        assert_eq!(f, "detected_at");
        let f = err(NewIncident::validate(
            "t",
            "",
            Severity::P1,
            None,
            now,
            now - 1,
            &[],
            false,
            now,
        ));
        assert_eq!(f, "reported_at");
        let systems = vec!["web".to_string(), String::new()];
        let f = err(NewIncident::validate(
            "t",
            "",
            Severity::P1,
            None,
            now,
            now,
            &systems,
            false,
            now,
        ));
        assert_eq!(f, "systems_affected[1]");
    }
}
