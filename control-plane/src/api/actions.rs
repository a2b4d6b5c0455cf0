//! Containment actions: create (under an incident), list, read, lift.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::page;
use super::views::{ActionContext, ActionList, ActionView};
use crate::auth::{Auth, Readers, Responders};
use crate::domain::action::{self, ActionRequest};
use crate::domain::check_text;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::store::{ActionFilter, ActionStatus};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_action))
        .routes(routes!(list_actions))
        .routes(routes!(get_action))
        .routes(routes!(lift_action))
        .routes(routes!(move_action))
        .routes(routes!(link_action))
}

/// The view of one action with its hits and links.
async fn one_view(s: &AppState, a: crate::store::ActionRecord, now: i64) -> ApiResult<ActionView> {
    let ctx = ActionContext::load(s.store.as_ref(), std::slice::from_ref(&a)).await?;
    Ok(ActionView::new(&a, now, &ctx))
}

/// Body of `POST /v1/actions/{id}/move` and `/link`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Refile {
    /// The incident to file the action under (move) or to show it on too (link).
    #[schema(minimum = 1)]
    pub incident_id: i64,
    #[schema(value_type = crate::schema_items::Text2000, example = "filed under the wrong incident")]
    pub reason: String,
}

/// Move (or, with `link`, link) action `id` as `b` asks.
async fn refile(
    s: &AppState,
    actor: &str,
    id: i64,
    b: &Refile,
    link: bool,
) -> ApiResult<Json<ActionView>> {
    if b.incident_id < 1 {
        return Err(ApiError::invalid(
            "incident_id",
            "must be a positive integer",
        ));
    }
    let reason = check_text("reason", &b.reason, 2000, true)?;
    let now = s.now_ms();
    let a = if link {
        s.store
            .link_action(actor, id, b.incident_id, &reason, now)
            .await?
    } else {
        s.store
            .move_action(actor, id, b.incident_id, &reason, now)
            .await?
    };
    Ok(Json(one_view(s, a, now).await?))
}

/// Body of `POST /v1/actions/{id}/lift`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiftAction {
    #[schema(value_type = crate::schema_items::Text2000, example = "source blocked upstream")]
    pub reason: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ActionQuery {
    /// `active` (default), `lifted`, `expired` or `all`.
    #[param(pattern = "^(active|lifted|expired|all)$")]
    pub status: Option<String>,
    /// Only this incident's actions.
    pub incident: Option<i64>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Take a containment action for an incident: block a target, set an isolation flag or add
/// an allow-list entry. Each bumps the policy version once.
#[utoipa::path(post, path = "/v1/incidents/{id}/actions", tag = "containment", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    request_body(content = ActionRequest, example = json!({"kind": "block", "target": {"cidr": "203.0.113.0/24"}, "mode": "enforce", "reason": "credential stuffing source", "expires_in": "1h"})),
    responses(
        (status = 201, body = ActionView),
        (status = 404, description = "unknown incident", body = ErrorBody),
        (status = 409, description = "duplicate active target, or incident closed", body = ErrorBody),
        (status = 422, description = "invalid field or guard rail (code `guard_rail`); also rules across fields no schema states: `expires_in` or `expires_at`, not both, and in the future; the target or scope its `kind` needs", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_action(
    State(s): State<AppState>,
    auth: Auth<Responders>,
    PathId(incident): PathId,
    ApiJson(req): ApiJson<ActionRequest>,
) -> ApiResult<(StatusCode, Json<ActionView>)> {
    let now = s.now_ms();
    let new = action::validate(incident, &req, now)?;
    let rec = s
        .store
        .create_action(auth.actor(), &new, s.settings.rails, now)
        .await?;
    s.metrics.policy_version.set(rec.created_version);
    let mut view = ActionView::new(&rec, now, &ActionContext::default());
    view.warnings = new.warnings;
    Ok((StatusCode::CREATED, Json(view)))
}

/// List actions, newest first.
#[utoipa::path(get, path = "/v1/actions", tag = "containment", params(ActionQuery),
    responses((status = 200, body = ActionList), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_actions(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
    ApiQuery(q): ApiQuery<ActionQuery>,
) -> ApiResult<Json<ActionList>> {
    let status =
        match q.status.as_deref() {
            None => Some(ActionStatus::Active),
            Some("all") => None,
            Some(x) => Some(ActionStatus::parse(x).ok_or_else(|| {
                ApiError::query("status", "expected active, lifted, expired or all")
            })?),
        };
    let (limit, offset) = page(q.limit, q.offset)?;
    let now = s.now_ms();
    let (items, total) = s
        .store
        .list_actions(
            &ActionFilter {
                status,
                incident: q.incident,
                limit,
                offset,
            },
            now,
        )
        .await?;
    let ctx = ActionContext::load(s.store.as_ref(), &items).await?;
    Ok(Json(ActionList {
        items: ctx.views(&items, now),
        total,
        limit,
        offset,
    }))
}

/// One action, with its hit totals.
#[utoipa::path(get, path = "/v1/actions/{id}", tag = "containment", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    responses((status = 200, body = ActionView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_action(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
    PathId(id): PathId,
) -> ApiResult<Json<ActionView>> {
    let a = s.store.get_action(id).await?;
    Ok(Json(one_view(&s, a, s.now_ms()).await?))
}

/// Lift an active action (the next policy version removes its rule).
#[utoipa::path(post, path = "/v1/actions/{id}/lift", tag = "containment", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    request_body(content = LiftAction, example = json!({"reason": "source blocked upstream"})),
    responses((status = 200, body = ActionView), (status = 404, body = ErrorBody),
        (status = 409, description = "already lifted or expired", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn lift_action(
    State(s): State<AppState>,
    auth: Auth<Responders>,
    PathId(id): PathId,
    ApiJson(b): ApiJson<LiftAction>,
) -> ApiResult<Json<ActionView>> {
    let reason = check_text("reason", &b.reason, 2000, true)?;
    let now = s.now_ms();
    let a = s.store.lift_action(auth.actor(), id, &reason, now).await?;
    if let Some(v) = a.ended_version {
        s.metrics.policy_version.set(v);
    }
    Ok(Json(one_view(&s, a, now).await?))
}

/// Move an action to another incident without lifting it: enforcement does not stop (a
/// live rule is re-sent with its new incident in one policy version). Recorded on both
/// incidents' timelines and in the audit log (`action.move`).
#[utoipa::path(post, path = "/v1/actions/{id}/move", tag = "containment", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    request_body(content = Refile, example = json!({"incident_id": 7, "reason": "filed under the wrong incident"})),
    responses((status = 200, body = ActionView), (status = 404, description = "unknown action or incident", body = ErrorBody),
        (status = 409, description = "the incident is closed, or already the action's", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn move_action(
    State(s): State<AppState>,
    auth: Auth<Responders>,
    PathId(id): PathId,
    ApiJson(b): ApiJson<Refile>,
) -> ApiResult<Json<ActionView>> {
    refile(&s, auth.actor(), id, &b, false).await
}

/// Link an action to a further incident: it stays the first incident's and also shows on
/// this one (its actions, documents and export). No policy change. Recorded on both
/// timelines and in the audit log (`action.link`).
#[utoipa::path(post, path = "/v1/actions/{id}/link", tag = "containment", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    request_body(content = Refile, example = json!({"incident_id": 7, "reason": "same source as incident 7"})),
    responses((status = 200, body = ActionView), (status = 404, description = "unknown action or incident", body = ErrorBody),
        (status = 409, description = "the incident is closed, is the action's own, or is linked already", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn link_action(
    State(s): State<AppState>,
    auth: Auth<Responders>,
    PathId(id): PathId,
    ApiJson(b): ApiJson<Refile>,
) -> ApiResult<Json<ActionView>> {
    refile(&s, auth.actor(), id, &b, true).await
}
