//! Mapping rows to records.

use edge_policy::{Isolation, Mode};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::super::{ActionRecord, ActionStatus, IncidentRecord, TimelineEntry, TokenRecord};
use crate::domain::action::{ActionKind, StoredTarget};
use crate::domain::audit::AuditRecord;
use crate::domain::{CoreError, CoreResult};

fn corrupt(what: &str, v: &str) -> CoreError {
    CoreError::Internal(format!("stored {what} {v:?} is not valid"))
}

pub(crate) fn incident(r: &SqliteRow) -> CoreResult<IncidentRecord> {
    let severity: String = r.try_get("severity")?;
    let phase: String = r.try_get("phase")?;
    let systems: String = r.try_get("systems")?;
    Ok(IncidentRecord {
        id: r.try_get("id")?,
        title: r.try_get("title")?,
        summary: r.try_get("summary")?,
        severity: severity
            .parse()
            .map_err(|_| corrupt("severity", &severity))?,
        phase: phase.parse().map_err(|_| corrupt("phase", &phase))?,
        assignee: r.try_get("assignee")?,
        detected_at: r.try_get("detected_at")?,
        reported_at: r.try_get("reported_at")?,
        systems: serde_json::from_str(&systems)?,
        personal_data: r.try_get("personal_data")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        updated_at: r.try_get("updated_at")?,
        closed_at: r.try_get("closed_at")?,
    })
}

pub(crate) fn action(r: &SqliteRow) -> CoreResult<ActionRecord> {
    let kind: String = r.try_get("kind")?;
    let ty: String = r.try_get("target_type")?;
    let isolation: Option<String> = r.try_get("isolation")?;
    let mode: String = r.try_get("mode")?;
    let state: String = r.try_get("state")?;
    Ok(ActionRecord {
        id: r.try_get("id")?,
        incident_id: r.try_get("incident_id")?,
        kind: ActionKind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
        target: StoredTarget::new(&ty, r.try_get("target_value")?)?,
        isolation: isolation
            .map(|i| i.parse::<Isolation>().map_err(|_| corrupt("isolation", &i)))
            .transpose()?,
        mode: mode.parse::<Mode>().map_err(|_| corrupt("mode", &mode))?,
        reason: r.try_get("reason")?,
        forced: r.try_get("forced")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        created_version: r.try_get("created_version")?,
        expires_at: r.try_get("expires_at")?,
        state: ActionStatus::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        ended_at: r.try_get("ended_at")?,
        ended_by: r.try_get("ended_by")?,
        end_reason: r.try_get("end_reason")?,
        ended_version: r.try_get("ended_version")?,
    })
}

pub(crate) fn timeline(r: &SqliteRow) -> CoreResult<TimelineEntry> {
    let data: Option<String> = r.try_get("data")?;
    Ok(TimelineEntry {
        id: r.try_get("id")?,
        incident_id: r.try_get("incident_id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        kind: r.try_get("kind")?,
        message: r.try_get("message")?,
        reason: r.try_get("reason")?,
        data: data.map(|d| serde_json::from_str(&d)).transpose()?,
    })
}

pub(crate) fn token(r: &SqliteRow) -> CoreResult<TokenRecord> {
    let role: String = r.try_get("role")?;
    Ok(TokenRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: role.parse().map_err(|_| corrupt("role", &role))?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        revoked_at: r.try_get("revoked_at")?,
        revoked_by: r.try_get("revoked_by")?,
    })
}

pub(crate) fn audit(r: &SqliteRow) -> CoreResult<AuditRecord> {
    Ok(AuditRecord {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        verb: r.try_get("verb")?,
        object: r.try_get("object")?,
        incident_id: r.try_get("incident_id")?,
        before: r.try_get("before")?,
        after: r.try_get("after")?,
        reason: r.try_get("reason")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

pub(crate) async fn get_incident(c: &mut SqliteConnection, id: i64) -> CoreResult<IncidentRecord> {
    let row = sqlx::query("SELECT * FROM incidents WHERE id = ?")
        .bind(id)
        .fetch_optional(c)
        .await?
        .ok_or_else(|| CoreError::not_found("incident", id))?;
    incident(&row)
}

pub(crate) async fn get_action(c: &mut SqliteConnection, id: i64) -> CoreResult<ActionRecord> {
    let row = sqlx::query("SELECT * FROM actions WHERE id = ?")
        .bind(id)
        .fetch_optional(c)
        .await?
        .ok_or_else(|| CoreError::not_found("action", id))?;
    action(&row)
}
