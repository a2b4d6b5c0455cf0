//! Mapping rows to records.

use edge_policy::{Isolation, Mode};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;

use super::super::{
    ActionRecord, ActionStatus, EvidenceRecord, IncidentRecord, NotificationRecord,
    PostMortemRecord, TimelineEntry, TokenRecord,
};
use crate::domain::action::{ActionKind, StoredTarget};
use crate::domain::audit::AuditRecord;
use crate::domain::notification::{Audience, NotificationKind};
use crate::domain::postmortem::PostMortem;
use crate::domain::{CoreError, CoreResult};

/// A 0/1 flag column (an integer on both engines).
fn flag(r: &AnyRow, column: &str) -> CoreResult<bool> {
    Ok(r.try_get::<i64, _>(column)? != 0)
}

fn corrupt(what: &str, v: &str) -> CoreError {
    CoreError::Internal(format!("stored {what} {v:?} is not valid"))
}

pub(crate) fn incident(r: &AnyRow) -> CoreResult<IncidentRecord> {
    let severity: String = r.try_get("severity")?;
    let phase: String = r.try_get("phase")?;
    let systems: String = r.try_get("systems")?;
    let facts: String = r.try_get("facts")?;
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
        personal_data: flag(r, "personal_data")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        updated_at: r.try_get("updated_at")?,
        closed_at: r.try_get("closed_at")?,
        health_data: flag(r, "health_data")?,
        aware_at: r.try_get("aware_at")?,
        resolved_at: r.try_get("resolved_at")?,
        next_update_at: r.try_get("next_update_at")?,
        facts: serde_json::from_str(&facts)?,
    })
}

pub(crate) fn notification(r: &AnyRow) -> CoreResult<NotificationRecord> {
    let audience: String = r.try_get("audience")?;
    let kind: String = r.try_get("kind")?;
    let facts: Option<String> = r.try_get("facts")?;
    Ok(NotificationRecord {
        id: r.try_get("id")?,
        incident_id: r.try_get("incident_id")?,
        audience: Audience::parse(&audience).ok_or_else(|| corrupt("audience", &audience))?,
        kind: NotificationKind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
        notified_at: r.try_get("notified_at")?,
        notified_by: r.try_get("notified_by")?,
        channel: r.try_get("channel")?,
        reference: r.try_get("reference")?,
        note: r.try_get("note")?,
        facts: facts.map(|f| serde_json::from_str(&f)).transpose()?,
        recorded_at: r.try_get("recorded_at")?,
        recorded_by: r.try_get("recorded_by")?,
    })
}

pub(crate) fn postmortem(r: &AnyRow) -> CoreResult<PostMortemRecord> {
    let vectors: String = r.try_get("attack_vectors")?;
    let follow_ups: String = r.try_get("follow_ups")?;
    Ok(PostMortemRecord {
        incident_id: r.try_get("incident_id")?,
        content: PostMortem {
            lessons_learned: r.try_get("lessons_learned")?,
            root_cause: r.try_get("root_cause")?,
            attack_vectors: serde_json::from_str(&vectors)?,
            data_impact: r.try_get("data_impact")?,
            follow_ups: serde_json::from_str(&follow_ups)?,
            policy_changes: r.try_get("policy_changes")?,
        },
        submitted_at: r.try_get("submitted_at")?,
        submitted_by: r.try_get("submitted_by")?,
        updated_at: r.try_get("updated_at")?,
        updated_by: r.try_get("updated_by")?,
    })
}

pub(crate) fn evidence(r: &AnyRow) -> CoreResult<EvidenceRecord> {
    let matched: String = r.try_get("matched")?;
    Ok(EvidenceRecord {
        id: r.try_get("id")?,
        incident_id: r.try_get("incident_id")?,
        action_id: r.try_get("action_id")?,
        matched: serde_json::from_str(&matched)?,
        line_hash: r.try_get("line_hash")?,
        batch_id: r.try_get("batch_id")?,
        edge_id: r.try_get("edge_id")?,
        at: r.try_get("at")?,
        client_ip: r.try_get("client_ip")?,
        method: r.try_get("method")?,
        host: r.try_get("host")?,
        path: r.try_get("path")?,
        status: r.try_get("status")?,
        user_agent: r.try_get("user_agent")?,
        line: r.try_get("line")?,
        ingested_at: r.try_get("ingested_at")?,
        ingested_by: r.try_get("ingested_by")?,
    })
}

pub(crate) fn action(r: &AnyRow) -> CoreResult<ActionRecord> {
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
        forced: flag(r, "forced")?,
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

pub(crate) fn timeline(r: &AnyRow) -> CoreResult<TimelineEntry> {
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

pub(crate) fn token(r: &AnyRow) -> CoreResult<TokenRecord> {
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

pub(crate) fn audit(r: &AnyRow) -> CoreResult<AuditRecord> {
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

pub(crate) async fn get_incident(c: &mut AnyConnection, id: i64) -> CoreResult<IncidentRecord> {
    let row = sqlx::query("SELECT * FROM incidents WHERE id = $1")
        .bind(id)
        .fetch_optional(c)
        .await?
        .ok_or_else(|| CoreError::not_found("incident", id))?;
    incident(&row)
}

pub(crate) async fn get_action(c: &mut AnyConnection, id: i64) -> CoreResult<ActionRecord> {
    let row = sqlx::query("SELECT * FROM actions WHERE id = $1")
        .bind(id)
        .fetch_optional(c)
        .await?
        .ok_or_else(|| CoreError::not_found("action", id))?;
    action(&row)
}
