//! `/v1/audit`: read the append-only log and verify its hash chain.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_time_query;
use crate::auth::{Auth, Readers};
use crate::domain::audit::AuditRecord;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::store::AuditFilter;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(verify_audit))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this incident's events.
    pub incident: Option<i64>,
    /// Only this actor's events (a token name, `cli` or `system`).
    pub actor: Option<String>,
    /// RFC 3339, inclusive.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Page on: events with a larger sequence number.
    pub after_seq: Option<i64>,
    /// 1..=1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    pub seq: i64,
    /// RFC 3339 UTC.
    pub at: String,
    pub actor: String,
    /// `incident.create`, `incident.update`, `action.create`, `action.lift`,
    /// `action.expire`, `token.create`, `token.revoke`, `signing_key.create`,
    /// `signing_key.rotate`.
    pub verb: String,
    /// `incident/3`, `action/7`, `token/2`, `signing_key/<key id>`.
    pub object: String,
    pub incident_id: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    pub reason: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl From<AuditRecord> for AuditEvent {
    fn from(r: AuditRecord) -> Self {
        let parse = |s: Option<String>| {
            s.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
        };
        AuditEvent {
            seq: r.seq,
            at: r.at,
            actor: r.actor,
            verb: r.verb,
            object: r.object,
            incident_id: r.incident_id,
            before: parse(r.before),
            after: parse(r.after),
            reason: r.reason,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

/// The first broken link found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BrokenLinkView {
    pub seq: i64,
    pub problem: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    /// True when every event's hash matches its content and links to the previous one.
    pub ok: bool,
    /// Events checked and found intact.
    pub checked: u64,
    /// Sequence number of the last intact event.
    pub last_seq: i64,
    /// Hash of the last intact event; keep a copy elsewhere to detect a truncated tail.
    pub last_hash: String,
    pub first_broken: Option<BrokenLinkView>,
}

/// Audit events in sequence order.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEvent>), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_audit(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEvent>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::query("limit", "must be 1..=1000"));
    }
    let f = AuditFilter {
        incident: q.incident,
        actor: q.actor,
        from_ms: parse_time_query("from", q.from.as_deref())?,
        to_ms: parse_time_query("to", q.to.as_deref())?,
        after_seq: q.after_seq.unwrap_or(0).max(0),
        limit,
    };
    let events = s.store.audit(&f).await?;
    Ok(Json(events.into_iter().map(AuditEvent::from).collect()))
}

/// Walk the whole chain and report the first broken link.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = VerifyReport)), security(("bearer" = [])))]
async fn verify_audit(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
) -> ApiResult<Json<VerifyReport>> {
    let r = s.store.verify_audit().await?;
    Ok(Json(VerifyReport {
        ok: r.first_broken.is_none(),
        checked: r.checked,
        last_seq: r.last_seq,
        last_hash: r.last_hash,
        first_broken: r.first_broken.map(|b| BrokenLinkView {
            seq: b.seq,
            problem: b.problem,
        }),
    }))
}
