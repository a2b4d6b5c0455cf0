//! What creating and revoking a token and adding a signing key do: the refusals and the
//! audit events. Pure: the store loads, calls these, writes.

use serde_json::{json, Value};

use super::audit::NewAuditEvent;
use super::records::TokenRecord;
use super::signing::Rotation;
use super::{CoreError, CoreResult};

/// A token as the audit log shows it (never its hash).
pub fn token_json(t: &TokenRecord) -> Value {
    json!({"id": t.id, "name": t.name, "role": t.role.as_str(), "revoked_at": t.revoked_at})
}

/// May a token named `name` be created? `live` tokens are unrevoked, `same_name` of them
/// carry `name`. With `only_if_none` (the first token, from the CLI), any live token
/// refuses; a live token of the same name always does (the name is the actor in the audit
/// log: it stays unambiguous).
pub fn check_create(live: i64, same_name: i64, only_if_none: bool, name: &str) -> CoreResult<()> {
    if only_if_none && live > 0 {
        return Err(CoreError::conflict(
            "tokens",
            format!("the database already has {live} active token(s); create more through the API"),
        ));
    }
    if same_name > 0 {
        return Err(CoreError::conflict(
            "name",
            format!("an active token is already named {name:?}"),
        ));
    }
    Ok(())
}

/// The audit event of the stored token `rec`.
pub fn created(rec: &TokenRecord, actor: &str) -> NewAuditEvent {
    NewAuditEvent::new(actor, "token.create", format!("token/{}", rec.id), None)
        .after(token_json(rec))
}

/// `before` revoked by `actor` at `now`: the row to write and its audit event. Refused
/// when it is already revoked.
pub fn revoke(
    before: &TokenRecord,
    actor: &str,
    now: i64,
) -> CoreResult<(TokenRecord, NewAuditEvent)> {
    if before.revoked_at.is_some() {
        return Err(CoreError::conflict(
            "id",
            format!("token {} is already revoked", before.id),
        ));
    }
    let after = TokenRecord {
        revoked_at: Some(now),
        revoked_by: Some(actor.to_string()),
        ..before.clone()
    };
    let event = NewAuditEvent::new(actor, "token.revoke", format!("token/{}", before.id), None)
        .before(token_json(before))
        .after(token_json(&after));
    Ok((after, event))
}

/// The audit event of a signing-key rotation planned by [`super::signing::rotate`].
pub fn key_added(plan: &Rotation, actor: &str) -> NewAuditEvent {
    let mut e = NewAuditEvent::new(
        actor,
        plan.verb,
        format!("signing_key/{}", plan.new.key_id),
        None,
    )
    .after(plan.after.clone());
    e.before = plan.before.clone();
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::token::Role;

    fn token(revoked_at: Option<i64>) -> TokenRecord {
        TokenRecord {
            id: 3,
            name: "ci".into(),
            role: Role::Admin,
            created_at: 1,
            created_by: "root".into(),
            revoked_at,
            revoked_by: revoked_at.map(|_| "root".into()),
        }
    }

    #[test]
    fn first_token_and_duplicate_names_are_refused() {
        assert!(check_create(0, 0, true, "ci").is_ok());
        assert!(check_create(2, 0, false, "ci").is_ok());
        let e = check_create(2, 0, true, "ci").unwrap_err().to_string();
        assert!(e.contains("already has 2 active token(s)"), "{e}");
        let e = check_create(2, 1, false, "ci").unwrap_err().to_string();
        assert_eq!(e, "name: an active token is already named \"ci\"");
    }

    #[test]
    fn revoking_once() {
        let (after, e) = revoke(&token(None), "admin", 50).unwrap();
        assert_eq!(
            (after.revoked_at, after.revoked_by.as_deref()),
            (Some(50), Some("admin"))
        );
        assert_eq!(
            (e.verb.as_str(), e.object.as_str()),
            ("token.revoke", "token/3")
        );
        assert_eq!(e.after.unwrap()["revoked_at"], 50);
        assert!(revoke(&after, "admin", 60).is_err());
        assert_eq!(created(&token(None), "root").verb, "token.create");
    }
}
