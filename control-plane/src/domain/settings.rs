//! Organisation settings: the company name, the DPO contact and the security mailbox that
//! documents and notifications use. An admin sets them through the API (audited); until a
//! field is set there, the start-up flag's value applies.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::audit::NewAuditEvent;
use super::{check_name, CoreError, CoreResult};

/// The settings as stored (`None`: not set through the API).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredSettings {
    pub company_name: Option<String>,
    pub dpo_contact: Option<String>,
    pub security_mailbox: Option<String>,
    pub updated_at: Option<i64>,
    pub updated_by: Option<String>,
}

/// The settings in effect: each stored value, else the start-up default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrgSettings {
    /// The company name documents are written in.
    pub company_name: Option<String>,
    /// The data protection officer's contact, stated in breach notifications.
    pub dpo_contact: Option<String>,
    /// Where incidents are reported internally (the internal alert's recipient).
    pub security_mailbox: Option<String>,
}

impl OrgSettings {
    /// `stored` over `defaults`, field by field.
    pub fn effective(stored: &StoredSettings, defaults: &OrgSettings) -> OrgSettings {
        let pick = |s: &Option<String>, d: &Option<String>| s.clone().or_else(|| d.clone());
        OrgSettings {
            company_name: pick(&stored.company_name, &defaults.company_name),
            dpo_contact: pick(&stored.dpo_contact, &defaults.dpo_contact),
            security_mailbox: pick(&stored.security_mailbox, &defaults.security_mailbox),
        }
    }
}

/// A validated change: `Some(None)` clears a field (back to the start-up default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub company_name: Option<Option<String>>,
    pub dpo_contact: Option<Option<String>>,
    pub security_mailbox: Option<Option<String>>,
}

/// An e-mail address as far as a mailbox field needs: one `@`, something either side, no
/// spaces or angle brackets. Deliverability is the mail server's business.
pub fn check_mailbox(field: &str, v: &str) -> CoreResult<String> {
    let v = check_name(field, v, 254)?;
    let ok = match v.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !v.contains(|c: char| c.is_whitespace() || "<>,;\"".contains(c))
        }
        None => false,
    };
    if !ok {
        return Err(CoreError::invalid(
            field,
            "expected an e-mail address such as security@example.com",
        ));
    }
    Ok(v)
}

/// Validate each field given; every invalid one is reported at once.
pub fn validate(
    company_name: Option<Option<&str>>,
    dpo_contact: Option<Option<&str>>,
    security_mailbox: Option<Option<&str>>,
) -> CoreResult<SettingsChange> {
    let mut errors = Vec::new();
    let mut field =
        |name: &str, v: Option<Option<&str>>, check: &dyn Fn(&str, &str) -> CoreResult<String>| {
            match v {
                None => None,
                Some(None) => Some(None),
                Some(Some(s)) => match check(name, s) {
                    Ok(s) => Some(Some(s)),
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                },
            }
        };
    let change = SettingsChange {
        company_name: field("company_name", company_name, &|f, s| check_name(f, s, 200)),
        dpo_contact: field("dpo_contact", dpo_contact, &|f, s| check_name(f, s, 500)),
        security_mailbox: field("security_mailbox", security_mailbox, &check_mailbox),
    };
    match CoreError::all(errors) {
        Some(e) => Err(e),
        None => Ok(change),
    }
}

/// Apply `change` to `before`: the row to store and its audit event, or `None` when
/// nothing changes.
pub fn apply(
    before: &StoredSettings,
    change: &SettingsChange,
    actor: &str,
    now: i64,
) -> Option<(StoredSettings, NewAuditEvent)> {
    let mut after = before.clone();
    let set = |slot: &mut Option<String>, v: &Option<Option<String>>| {
        if let Some(v) = v {
            *slot = v.clone();
        }
    };
    set(&mut after.company_name, &change.company_name);
    set(&mut after.dpo_contact, &change.dpo_contact);
    set(&mut after.security_mailbox, &change.security_mailbox);
    if after.company_name == before.company_name
        && after.dpo_contact == before.dpo_contact
        && after.security_mailbox == before.security_mailbox
    {
        return None;
    }
    after.updated_at = Some(now);
    after.updated_by = Some(actor.to_string());
    let view = |s: &StoredSettings| {
        json!({"company_name": s.company_name, "dpo_contact": s.dpo_contact,
            "security_mailbox": s.security_mailbox})
    };
    let event = NewAuditEvent::new(actor, "settings.update", "settings".into(), None)
        .before(view(before))
        .after(view(&after));
    Some((after, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_override_the_flags_field_by_field() {
        let defaults = OrgSettings {
            company_name: Some("Flag Co".into()),
            dpo_contact: Some("dpo@flag.example".into()),
            security_mailbox: None,
        };
        let stored = StoredSettings {
            dpo_contact: Some("dpo@api.example".into()),
            ..StoredSettings::default()
        };
        let e = OrgSettings::effective(&stored, &defaults);
        assert_eq!(e.company_name.as_deref(), Some("Flag Co"));
        assert_eq!(e.dpo_contact.as_deref(), Some("dpo@api.example"));
        assert_eq!(e.security_mailbox, None);
    }

    #[test]
    fn every_invalid_field_is_named_at_once() {
        let e = validate(Some(Some(" ")), None, Some(Some("not a mailbox"))).unwrap_err();
        let CoreError::InvalidMany(errs) = e else {
            panic!("{e:?}")
        };
        let fields: Vec<_> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["company_name", "security_mailbox"]);
        for bad in ["a@b", "@example.com", "a b@example.com", "a@example.com."] {
            assert!(check_mailbox("m", bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_mailbox("m", " security@example.com ").unwrap(),
            "security@example.com"
        );
    }

    #[test]
    fn apply_audits_changes_and_ignores_no_ops() {
        let before = StoredSettings::default();
        let change = validate(Some(Some("Acme GmbH")), None, None).unwrap();
        let (after, event) = apply(&before, &change, "alice", 5).unwrap();
        assert_eq!(after.company_name.as_deref(), Some("Acme GmbH"));
        assert_eq!(after.updated_by.as_deref(), Some("alice"));
        assert_eq!(event.verb, "settings.update");
        assert!(apply(&after, &change, "alice", 6).is_none());
        let clear = validate(Some(None), None, None).unwrap();
        let (cleared, _) = apply(&after, &clear, "bob", 7).unwrap();
        assert_eq!(cleared.company_name, None);
    }
}
