//! Notifications as records: who was told what, when, by whom and how.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::facts::{missing_for_authority, missing_for_customers, IncidentFacts};
use super::incident::FUTURE_SKEW_MS;
use super::{check_name, check_text, CoreError, CoreResult};

/// Who was notified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// The supervisory authority (e.g. the Dutch DPA), or HHS for a HIPAA notice.
    Authority,
    /// Affected customers (data subjects).
    Customers,
    /// Staff and management.
    Staff,
}

impl Audience {
    pub const ALL: [Audience; 3] = [Audience::Authority, Audience::Customers, Audience::Staff];
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Authority => "authority",
            Audience::Customers => "customers",
            Audience::Staff => "staff",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// What was sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A breach notification (to the authority: GDPR Art. 33; to customers: Art. 34).
    #[default]
    Notification,
    /// The preliminary report (staff; meets the 2 h deadline).
    PreliminaryReport,
    /// The internal alert (staff).
    InternalAlert,
    /// A HIPAA breach notice (authority or customers; meets the 60-day deadline).
    HipaaNotice,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 4] = [
        NotificationKind::Notification,
        NotificationKind::PreliminaryReport,
        NotificationKind::InternalAlert,
        NotificationKind::HipaaNotice,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Notification => "notification",
            NotificationKind::PreliminaryReport => "preliminary_report",
            NotificationKind::InternalAlert => "internal_alert",
            NotificationKind::HipaaNotice => "hipaa_notice",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A validated notification to record.
#[derive(Clone, Debug, PartialEq)]
pub struct NewNotification {
    pub incident_id: i64,
    pub audience: Audience,
    pub kind: NotificationKind,
    pub notified_at: i64,
    pub notified_by: String,
    pub channel: String,
    pub reference: Option<String>,
    pub note: Option<String>,
    /// The configured DPO contact, part of what an authority or customers are told.
    pub dpo_contact: Option<String>,
}

/// Input as a client sends it.
#[derive(Clone, Debug)]
pub struct NotificationInput<'a> {
    pub audience: Audience,
    pub kind: NotificationKind,
    pub notified_at: Option<i64>,
    pub notified_by: Option<&'a str>,
    pub channel: &'a str,
    pub reference: Option<&'a str>,
    pub note: Option<&'a str>,
}

impl NewNotification {
    pub fn validate(
        incident_id: i64,
        i: &NotificationInput<'_>,
        actor: &str,
        dpo_contact: Option<&str>,
        now: i64,
    ) -> CoreResult<NewNotification> {
        let staff_only = matches!(
            i.kind,
            NotificationKind::PreliminaryReport | NotificationKind::InternalAlert
        );
        if staff_only && i.audience != Audience::Staff {
            return Err(CoreError::invalid(
                "audience",
                format!("a {} goes to staff", i.kind.as_str()),
            ));
        }
        if i.kind == NotificationKind::HipaaNotice && i.audience == Audience::Staff {
            return Err(CoreError::invalid(
                "audience",
                "a hipaa_notice goes to the authority (HHS) or customers",
            ));
        }
        let notified_at = i.notified_at.unwrap_or(now);
        if notified_at > now + FUTURE_SKEW_MS {
            return Err(CoreError::invalid("notified_at", "is in the future"));
        }
        let notified_by = check_name("notified_by", i.notified_by.unwrap_or(actor), 200)?;
        let channel = check_name("channel", i.channel, 200)?;
        let reference = i
            .reference
            .map(|r| check_name("reference", r, 500))
            .transpose()?;
        let note = i
            .note
            .map(|n| check_text("note", n, 10_000, false))
            .transpose()?
            .filter(|n| !n.is_empty());
        Ok(NewNotification {
            incident_id,
            audience: i.audience,
            kind: i.kind,
            notified_at,
            notified_by,
            channel,
            reference,
            note,
            dpo_contact: dpo_contact.map(str::to_string),
        })
    }

    /// Whether this notification tells a recipient about the breach itself (so it carries,
    /// and needs, the breach facts).
    pub fn is_breach_notification(&self) -> bool {
        self.kind == NotificationKind::Notification
            && matches!(self.audience, Audience::Authority | Audience::Customers)
    }

    /// Facts the incident must have before this can be recorded (every missing one).
    pub fn missing(&self, facts: &IncidentFacts) -> Vec<String> {
        match (self.kind, self.audience) {
            (NotificationKind::Notification, Audience::Authority) => {
                missing_for_authority(facts, self.dpo_contact.as_deref())
            }
            (NotificationKind::Notification, Audience::Customers) => {
                missing_for_customers(facts, self.dpo_contact.as_deref())
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(audience: Audience, kind: NotificationKind) -> NotificationInput<'static> {
        NotificationInput {
            audience,
            kind,
            notified_at: None,
            notified_by: None,
            channel: "email",
            reference: None,
            note: None,
        }
    }

    #[test]
    fn kinds_go_to_their_audiences() {
        for a in Audience::ALL {
            assert_eq!(Audience::parse(a.as_str()), Some(a));
            for k in NotificationKind::ALL {
                assert_eq!(NotificationKind::parse(k.as_str()), Some(k));
                let r = NewNotification::validate(1, &input(a, k), "alice", None, 0);
                let ok = match k {
                    NotificationKind::Notification => true,
                    NotificationKind::PreliminaryReport | NotificationKind::InternalAlert => {
                        a == Audience::Staff
                    }
                    NotificationKind::HipaaNotice => a != Audience::Staff,
                };
                assert_eq!(r.is_ok(), ok, "{a:?} {k:?}");
            }
        }
        let n = NewNotification::validate(
            1,
            &input(Audience::Authority, NotificationKind::Notification),
            "alice",
            None,
            0,
        )
        .unwrap();
        assert_eq!(n.notified_by, "alice");
        assert_eq!(n.missing(&IncidentFacts::default()).len(), 7);
    }
}
