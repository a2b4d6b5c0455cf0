//! The incident record: notifications, post-mortem, the policy clock (deadlines) and
//! rendered documents.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_time;
use crate::auth::{Auth, Readers, Responders};
use crate::domain::deadline::{DeadlineKind, DeadlineStatus};
use crate::domain::notification::{Audience, NewNotification, NotificationInput, NotificationKind};
use crate::domain::postmortem::PostMortem;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::record::documents::{render, Document, DocumentKind, Sources};
use crate::record::{deadlines, DeadlineView, NotificationView, PostMortemView};
use crate::store::ActionFilter;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(record_notification, list_notifications))
        .routes(routes!(put_postmortem, get_postmortem))
        .routes(routes!(incident_deadlines))
        .routes(routes!(list_deadlines))
        .routes(routes!(get_document))
}

/// Body of `POST /v1/incidents/{id}/notifications`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordNotification {
    pub audience: Audience,
    /// Default `notification`.
    #[serde(default)]
    pub kind: NotificationKind,
    /// RFC 3339; default now.
    #[schema(format = DateTime)]
    pub notified_at: Option<String>,
    /// Who notified; default the caller's token name.
    #[schema(value_type = Option<crate::schema_items::Name200>)]
    pub notified_by: Option<String>,
    /// How: `email`, `dpa-portal`, `phone`, `status-page`, ...
    #[schema(value_type = crate::schema_items::Name200)]
    pub channel: String,
    /// The recipient's case number, message id, URL.
    #[schema(value_type = Option<crate::schema_items::Name500>)]
    pub reference: Option<String>,
    #[schema(value_type = Option<crate::schema_items::FreeText10000>)]
    pub note: Option<String>,
}

/// Record that the authority, customers or staff were notified. A breach notification to
/// the authority (or customers) is refused with 422 `missing_facts` naming every GDPR fact
/// the incident lacks; what they were told is kept with the record.
#[utoipa::path(post, path = "/v1/incidents/{id}/notifications", tag = "record", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    request_body(content = RecordNotification, example = json!({"audience": "staff", "kind": "internal_alert", "channel": "email", "reference": "msg-1"})),
    responses((status = 201, body = NotificationView), (status = 404, body = ErrorBody),
        (status = 422, description = "invalid field, or `missing_facts` with `missing`", body = ErrorBody)),
    security(("bearer" = [])))]
async fn record_notification(
    State(s): State<AppState>,
    auth: Auth<Responders>,
    PathId(id): PathId,
    ApiJson(b): ApiJson<RecordNotification>,
) -> ApiResult<(StatusCode, Json<NotificationView>)> {
    let now = s.now_ms();
    let input = NotificationInput {
        audience: b.audience,
        kind: b.kind,
        notified_at: parse_time("notified_at", b.notified_at.as_deref())?,
        notified_by: b.notified_by.as_deref(),
        channel: &b.channel,
        reference: b.reference.as_deref(),
        note: b.note.as_deref(),
    };
    let org = s.org_settings().await?;
    let n = NewNotification::validate(id, &input, auth.actor(), org.dpo_contact.as_deref(), now)?;
    let rec = s.store.record_notification(auth.actor(), &n, now).await?;
    Ok((StatusCode::CREATED, Json(NotificationView::from(&rec))))
}

/// The incident's notifications, in the order they were sent.
#[utoipa::path(get, path = "/v1/incidents/{id}/notifications", tag = "record", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    responses((status = 200, body = Vec<NotificationView>), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_notifications(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
    PathId(id): PathId,
) -> ApiResult<Json<Vec<NotificationView>>> {
    let list = s.store.notifications(id).await?;
    Ok(Json(list.iter().map(NotificationView::from).collect()))
}

/// Submit or revise the post-mortem. The first submission meets the post-mortem deadline;
/// it is required before an incident with personal or health data can be closed.
#[utoipa::path(put, path = "/v1/incidents/{id}/postmortem", tag = "record", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    request_body(content = PostMortem, example = json!({"lessons_learned": "rate limits came late", "root_cause": "no rate limit on /login", "attack_vectors": ["credential stuffing"], "data_impact": "none", "follow_ups": [{"item": "rate-limit /login", "owner": "web team", "due": "2030-02-01"}]})),
    responses((status = 200, body = PostMortemView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn put_postmortem(
    State(s): State<AppState>,
    auth: Auth<Responders>,
    PathId(id): PathId,
    ApiJson(b): ApiJson<PostMortem>,
) -> ApiResult<Json<PostMortemView>> {
    let pm = b.validate()?;
    let rec = s
        .store
        .submit_postmortem(auth.actor(), id, &pm, s.now_ms())
        .await?;
    Ok(Json(PostMortemView::from(&rec)))
}

/// The post-mortem (404 until submitted).
#[utoipa::path(get, path = "/v1/incidents/{id}/postmortem", tag = "record", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    responses((status = 200, body = PostMortemView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_postmortem(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
    PathId(id): PathId,
) -> ApiResult<Json<PostMortemView>> {
    match s.store.postmortem(id).await? {
        Some(p) => Ok(Json(PostMortemView::from(&p))),
        None => Err(ApiError::NotFound(format!(
            "incident {id} has no post-mortem yet"
        ))),
    }
}

/// The incident's deadlines, in due order.
#[utoipa::path(get, path = "/v1/incidents/{id}/deadlines", tag = "record", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    responses((status = 200, body = Vec<DeadlineView>), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn incident_deadlines(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
    PathId(id): PathId,
) -> ApiResult<Json<Vec<DeadlineView>>> {
    let facts = s.store.deadline_facts(Some(id)).await?;
    let list = deadlines(&facts, &s.settings.holidays, s.now_ms());
    Ok(Json(
        list.iter()
            .map(|(id, t, d)| DeadlineView::new(*id, t, d))
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeadlineQuery {
    /// `pending`, `met`, `overdue` or `all` (default).
    #[param(pattern = "^(pending|met|overdue|all)$")]
    pub status: Option<String>,
    /// Only deadlines of this kind (`preliminary_report`, `authority_notification`, ...).
    #[param(value_type = Option<String>, pattern = "^(preliminary_report|phase_detection_analysis|phase_containment|phase_eradication_recovery|phase_post_incident|authority_notification|hipaa_notice|post_mortem)$")]
    pub kind: Option<DeadlineKind>,
    /// Only this incident's deadlines.
    pub incident: Option<i64>,
}

/// Deadlines across incidents, in due order: `?status=overdue` is what is late now.
#[utoipa::path(get, path = "/v1/deadlines", tag = "record", params(DeadlineQuery),
    responses((status = 200, body = Vec<DeadlineView>), (status = 400, body = ErrorBody),
        (status = 404, description = "`incident` names no incident", body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_deadlines(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
    ApiQuery(q): ApiQuery<DeadlineQuery>,
) -> ApiResult<Json<Vec<DeadlineView>>> {
    let status = match q.status.as_deref() {
        None | Some("all") => None,
        Some(x) => Some(
            x.parse::<DeadlineStatus>()
                .map_err(|e| ApiError::query("status", e))?,
        ),
    };
    let facts = match q.incident {
        Some(id) => s.store.deadline_facts(Some(id)).await?,
        None => s.store.deadline_facts(None).await?,
    };
    let list = deadlines(&facts, &s.settings.holidays, s.now_ms());
    Ok(Json(
        list.iter()
            .filter(|(_, _, d)| status.is_none_or(|st| d.status == st))
            .filter(|(_, _, d)| q.kind.is_none_or(|k| d.kind == k))
            .map(|(id, t, d)| DeadlineView::new(*id, t, d))
            .collect(),
    ))
}

/// `?format=json|markdown`, else `Accept: text/markdown` asks for Markdown.
pub(crate) fn wants_markdown(format: Option<&str>, headers: &HeaderMap) -> ApiResult<bool> {
    match format {
        Some("json") => Ok(false),
        Some("markdown" | "md") => Ok(true),
        Some(_) => Err(ApiError::query("format", "expected json or markdown")),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/markdown"))),
    }
}

pub(crate) fn markdown_response(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        body,
    )
        .into_response()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FormatQuery {
    /// `json` (default) or `markdown` (also chosen by `Accept: text/markdown`).
    #[param(pattern = "^(json|markdown|md)$")]
    pub format: Option<String>,
}

/// Render a document from the incident's own data: `internal_alert`, `preliminary_report`
/// or `customer_notification`. 422 `missing_facts` names every fact it would lack.
#[utoipa::path(get, path = "/v1/incidents/{id}/documents/{kind}", tag = "record",
    params(("id" = i64, Path, minimum = 1, description = "a positive integer id"), ("kind" = String, Path, pattern = "^(internal_alert|preliminary_report|customer_notification)$", description = "internal_alert, preliminary_report or customer_notification"), FormatQuery),
    responses((status = 200, description = "the document as JSON, or as Markdown with `format=markdown` (or `Accept: text/markdown`)",
            content((Document = "application/json"), (String = "text/markdown"))),
        (status = 404, body = ErrorBody),
        (status = 422, description = "`missing_facts`: the incident lacks facts this document needs (listed in `missing`); which ones depends on the incident, so no schema can say it", body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_document(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<FormatQuery>,
) -> ApiResult<Response> {
    let bad_path = |field: &str, msg: &str| {
        ApiError::input(StatusCode::BAD_REQUEST, "invalid_path", field, msg)
    };
    let Path((id, kind)) = path.map_err(|_| bad_path("id", "must be a positive integer"))?;
    let id: i64 = id
        .parse()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| bad_path("id", "must be a positive integer"))?;
    let kind: DocumentKind = kind
        .parse()
        .map_err(|e: String| ApiError::input(StatusCode::NOT_FOUND, "not_found", "kind", e))?;
    let markdown = wants_markdown(q.format.as_deref(), &headers)?;
    let now = s.now_ms();
    let facts = s.store.deadline_facts(Some(id)).await?;
    let incident = &facts
        .first()
        .ok_or_else(|| ApiError::NotFound(format!("incident {id} not found")))?
        .incident;
    let f = ActionFilter {
        status: None,
        incident: Some(id),
        limit: i64::MAX,
        offset: 0,
    };
    let (mut actions, _) = s.store.list_actions(&f, now).await?;
    actions.sort_by_key(|a| a.id);
    let ds: Vec<_> = deadlines(&facts, &s.settings.holidays, now)
        .into_iter()
        .map(|(_, _, d)| d)
        .collect();
    let org = s.org_settings().await?;
    let src = Sources {
        incident,
        actions: &actions,
        deadlines: &ds,
        org: &org,
        now,
    };
    let doc = render(kind, &src).map_err(ApiError::MissingFacts)?;
    Ok(if markdown {
        markdown_response(doc.markdown)
    } else {
        Json(doc).into_response()
    })
}
