//! `/v1/incidents`: open, list, read, update; the timeline.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::{
    ActionContext, ActionView, IncidentDetail, IncidentList, IncidentView, TimelineView,
};
use super::{page, parse_time};
use crate::auth::{Auth, Readers, Responders};
use crate::domain::facts::{FactsChange, FactsInput, IndicatorsInput};
use crate::domain::incident::{ChangeInput, IncidentChange, NewIncident, Phase, Severity};
use crate::domain::CoreError;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::record::DeadlineView;
use crate::store::{ActionFilter, IncidentFilter};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_incident, list_incidents))
        .routes(routes!(get_incident, update_incident))
        .routes(routes!(get_timeline))
        .routes(routes!(lift_all))
}

/// Body of `POST /v1/incidents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIncident {
    /// Required (with `severity`: a body missing both is told so at once).
    #[serde(default)]
    #[schema(value_type = crate::schema_items::Name200, example = "Credential stuffing on /login", required = true)]
    pub title: String,
    #[serde(default)]
    #[schema(value_type = crate::schema_items::FreeText10000)]
    pub summary: String,
    /// `P0`..`P3`, or `critical`, `high`, `medium`, `low`.
    #[serde(default)]
    #[schema(value_type = String, example = "P1", pattern = "^(P[0-3]|critical|high|medium|low)$", required = true)]
    pub severity: Option<Severity>,
    /// RFC 3339; default now.
    #[schema(format = DateTime)]
    pub detected_at: Option<String>,
    /// RFC 3339; default now.
    #[schema(format = DateTime)]
    pub reported_at: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<crate::schema_items::Name200>, max_items = 100)]
    pub systems_affected: Vec<String>,
    /// Whether personal data is involved (GDPR: notify the authority within 72 h).
    #[serde(default)]
    pub personal_data: bool,
    #[schema(value_type = Option<crate::schema_items::Name200>)]
    pub assignee: Option<String>,
    /// Whether health data is involved (HIPAA: notice within 60 days).
    #[serde(default)]
    pub health_data: bool,
    /// RFC 3339: when the company became aware of the personal-data breach; default the
    /// reported time when personal or health data is involved.
    #[schema(format = DateTime)]
    pub aware_at: Option<String>,
    /// RFC 3339: when the next update is due (internal alert, preliminary report).
    #[schema(format = DateTime)]
    pub next_update_at: Option<String>,
    /// Who and what is affected.
    #[schema(value_type = Option<crate::schema_items::FreeText10000>)]
    pub impact: Option<String>,
    /// Indicators of compromise (replaces the whole set on update).
    pub indicators: Option<IndicatorsInput>,
    /// GDPR: the nature of the breach.
    #[schema(value_type = Option<crate::schema_items::FreeText10000>)]
    pub breach_nature: Option<String>,
    /// GDPR: categories of personal data concerned.
    #[schema(value_type = Option<Vec<crate::schema_items::Name200>>, max_items = 50)]
    pub data_categories: Option<Vec<String>>,
    /// GDPR: approximate number of data subjects concerned.
    #[schema(maximum = 100_000_000_000_u64)]
    pub data_subjects_approx: Option<u64>,
    /// GDPR: approximate number of personal-data records concerned.
    #[schema(maximum = 100_000_000_000_u64)]
    pub records_approx: Option<u64>,
    /// GDPR: likely consequences.
    #[schema(value_type = Option<crate::schema_items::FreeText10000>)]
    pub likely_consequences: Option<String>,
    /// GDPR: measures taken or proposed.
    #[schema(value_type = Option<crate::schema_items::FreeText10000>)]
    pub measures_taken: Option<String>,
    /// The heading customers see in the customer notification (never the internal title).
    #[schema(value_type = Option<crate::schema_items::Name200>)]
    pub customer_title: Option<String>,
    /// What customers are told happened (the customer notification).
    #[schema(value_type = Option<crate::schema_items::FreeText10000>)]
    pub customer_summary: Option<String>,
}

/// The facts fields of a create or update body.
macro_rules! facts_input {
    ($b:expr) => {
        FactsInput {
            impact: $b.impact.as_deref(),
            indicators: $b.indicators.as_ref(),
            breach_nature: $b.breach_nature.as_deref(),
            data_categories: $b.data_categories.as_deref(),
            data_subjects_approx: $b.data_subjects_approx,
            records_approx: $b.records_approx,
            likely_consequences: $b.likely_consequences.as_deref(),
            measures_taken: $b.measures_taken.as_deref(),
            customer_title: $b.customer_title.as_deref(),
            customer_summary: $b.customer_summary.as_deref(),
        }
        .validate()
    };
}

/// Body of `PATCH /v1/incidents/{id}`: any of severity, phase, assignee (`""` unassigns),
/// summary, the data flags, times and facts. Moving to an earlier phase needs `reason`;
/// closing an incident with personal or health data needs its post-mortem.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIncident {
    #[schema(value_type = Option<String>, example = "P0", pattern = "^(P[0-3]|critical|high|medium|low)$")]
    pub severity: Option<Severity>,
    pub phase: Option<Phase>,
    /// `""` unassigns.
    #[schema(max_length = 200)]
    pub assignee: Option<String>,
    /// Why (required to move back a phase).
    #[schema(value_type = Option<crate::schema_items::Text2000>)]
    pub reason: Option<String>,
    #[schema(value_type = Option<crate::schema_items::FreeText10000>)]
    pub summary: Option<String>,
    /// Turning it on sets `aware_at` to now unless given (or already set).
    pub personal_data: Option<bool>,
    pub health_data: Option<bool>,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub aware_at: Option<String>,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub next_update_at: Option<String>,
    /// Who and what is affected.
    #[schema(value_type = Option<crate::schema_items::FreeText10000>)]
    pub impact: Option<String>,
    /// Indicators of compromise (replaces the whole set on update).
    pub indicators: Option<IndicatorsInput>,
    /// GDPR: the nature of the breach.
    #[schema(value_type = Option<crate::schema_items::FreeText10000>)]
    pub breach_nature: Option<String>,
    /// GDPR: categories of personal data concerned.
    #[schema(value_type = Option<Vec<crate::schema_items::Name200>>, max_items = 50)]
    pub data_categories: Option<Vec<String>>,
    /// GDPR: approximate number of data subjects concerned.
    #[schema(maximum = 100_000_000_000_u64)]
    pub data_subjects_approx: Option<u64>,
    /// GDPR: approximate number of personal-data records concerned.
    #[schema(maximum = 100_000_000_000_u64)]
    pub records_approx: Option<u64>,
    /// GDPR: likely consequences.
    #[schema(value_type = Option<crate::schema_items::FreeText10000>)]
    pub likely_consequences: Option<String>,
    /// GDPR: measures taken or proposed.
    #[schema(value_type = Option<crate::schema_items::FreeText10000>)]
    pub measures_taken: Option<String>,
    /// The heading customers see in the customer notification (never the internal title).
    #[schema(value_type = Option<crate::schema_items::Name200>)]
    pub customer_title: Option<String>,
    /// What customers are told happened (the customer notification).
    #[schema(value_type = Option<crate::schema_items::FreeText10000>)]
    pub customer_summary: Option<String>,
    /// Closing with live containment: lift every live action in the same change (one
    /// policy version); needs `reason`. Without it (or `keep_containment`), closing an
    /// incident with live containment is refused (409 naming the actions).
    pub lift_all: Option<bool>,
    /// Closing with live containment: keep it enforced on purpose (recorded on the timeline
    /// with `reason`, which is required).
    pub keep_containment: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IncidentQuery {
    /// `open` (not closed), `closed` or `all` (default).
    #[param(pattern = "^(open|closed|all)$")]
    pub status: Option<String>,
    #[param(inline)]
    pub phase: Option<Phase>,
    /// `P0`..`P3`, or `critical`, `high`, `medium`, `low`.
    #[param(value_type = Option<String>, pattern = "^(P[0-3]|critical|high|medium|low)$")]
    pub severity: Option<Severity>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Open an incident (phase `detection_analysis`).
#[utoipa::path(post, path = "/v1/incidents", tag = "incidents",
    request_body(content = CreateIncident, example = json!({"title": "Credential stuffing on /login", "summary": "Spike of failed logins from one range", "severity": "high", "systems_affected": ["web-login"], "personal_data": true, "impact": "login service degraded", "next_update_at": "2030-01-01T12:00:00Z"})),
    responses((status = 201, body = IncidentView),
        (status = 422, description = "a field that is not valid, named in `field`; also rules across fields and against the clock no schema states: `detected_at` and `reported_at` not in the future, `reported_at` not before `detected_at`", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_incident(
    State(s): State<AppState>,
    auth: Auth<Responders>,
    ApiJson(b): ApiJson<CreateIncident>,
) -> ApiResult<(StatusCode, Json<IncidentView>)> {
    let now = s.now_ms();
    // The two required fields are checked together, so a client learns both at once.
    let severity = match (
        crate::domain::check_name("title", &b.title, 200),
        b.severity,
    ) {
        (Ok(_), Some(severity)) => severity,
        (title, severity) => {
            let mut errors: Vec<CoreError> = title.err().into_iter().collect();
            if severity.is_none() {
                errors.push(CoreError::invalid(
                    "severity",
                    "required: P0..P3, or critical, high, medium, low",
                ));
            }
            return Err(CoreError::all(errors)
                .unwrap_or_else(|| CoreError::invalid("title", "invalid"))
                .into());
        }
    };
    let detected = parse_time("detected_at", b.detected_at.as_deref())?.unwrap_or(now);
    let reported =
        parse_time("reported_at", b.reported_at.as_deref())?.unwrap_or(now.max(detected));
    let aware = parse_time("aware_at", b.aware_at.as_deref())?;
    let next_update = parse_time("next_update_at", b.next_update_at.as_deref())?;
    let facts: FactsChange = facts_input!(b)?;
    let new = NewIncident::validate(
        &b.title,
        &b.summary,
        severity,
        b.assignee.as_deref(),
        detected,
        reported,
        &b.systems_affected,
        b.personal_data,
        now,
    )?
    .with_record(b.health_data, aware, next_update, &facts, now)?;
    let rec = s.store.create_incident(auth.actor(), &new, now).await?;
    Ok((StatusCode::CREATED, Json(IncidentView::from(&rec))))
}

/// List incidents, newest first.
#[utoipa::path(get, path = "/v1/incidents", tag = "incidents", params(IncidentQuery),
    responses((status = 200, body = IncidentList), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_incidents(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
    ApiQuery(q): ApiQuery<IncidentQuery>,
) -> ApiResult<Json<IncidentList>> {
    let open = match q.status.as_deref() {
        None | Some("all") => None,
        Some("open") => Some(true),
        Some("closed") => Some(false),
        Some(_) => return Err(ApiError::query("status", "expected open, closed or all")),
    };
    let (limit, offset) = page(q.limit, q.offset)?;
    let f = IncidentFilter {
        phase: q.phase,
        severity: q.severity,
        open,
        limit,
        offset,
    };
    let (items, total) = s.store.list_incidents(&f).await?;
    Ok(Json(IncidentList {
        items: items.iter().map(IncidentView::from).collect(),
        total,
        limit,
        offset,
    }))
}

/// One incident with its containment actions (and their hit totals) and timeline.
#[utoipa::path(get, path = "/v1/incidents/{id}", tag = "incidents", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    responses((status = 200, body = IncidentDetail), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_incident(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
    PathId(id): PathId,
) -> ApiResult<Json<IncidentDetail>> {
    let rec = s.store.get_incident(id).await?;
    let now = s.now_ms();
    let f = ActionFilter {
        status: None,
        incident: Some(id),
        limit: i64::MAX,
        offset: 0,
    };
    let (actions, _) = s.store.list_actions(&f, now).await?;
    let ctx = ActionContext::load(s.store.as_ref(), &actions).await?;
    let timeline = s.store.timeline(id).await?;
    let facts = s.store.deadline_facts(Some(id)).await?;
    let deadlines = crate::record::deadlines(&facts, &s.settings.holidays, now)
        .iter()
        .map(|(id, title, d)| DeadlineView::new(*id, title, d))
        .collect();
    let actions: Vec<ActionView> = ctx.views(&actions, now);
    Ok(Json(IncidentDetail {
        incident: IncidentView::from(&rec),
        hits_total: actions.iter().map(|a| a.hits.total).sum(),
        actions,
        deadlines,
        timeline: timeline.iter().map(TimelineView::from).collect(),
    }))
}

/// Change severity, phase or assignee; each change becomes a timeline entry.
#[utoipa::path(patch, path = "/v1/incidents/{id}", tag = "incidents", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    request_body(content = UpdateIncident, example = json!({"phase": "containment", "assignee": "alice"})),
    responses((status = 200, body = IncidentView), (status = 404, body = ErrorBody),
        (status = 409, description = "closing an incident with personal or health data before its post-mortem (`field: postmortem`)", body = ErrorBody),
        (status = 422, description = "a field that is not valid (named in `field`), or a move to an earlier phase than the incident's without `reason` (`field: reason`; which moves are earlier depends on the incident's phase, so no schema can say it)", body = ErrorBody)),
    security(("bearer" = [])))]
async fn update_incident(
    State(s): State<AppState>,
    auth: Auth<Responders>,
    PathId(id): PathId,
    ApiJson(b): ApiJson<UpdateIncident>,
) -> ApiResult<Json<IncidentView>> {
    let now = s.now_ms();
    let input = ChangeInput {
        severity: b.severity,
        phase: b.phase,
        assignee: b.assignee.as_deref(),
        reason: b.reason.as_deref(),
        summary: b.summary.as_deref(),
        personal_data: b.personal_data,
        health_data: b.health_data,
        aware_at_ms: parse_time("aware_at", b.aware_at.as_deref())?,
        next_update_at_ms: parse_time("next_update_at", b.next_update_at.as_deref())?,
        lift_all: b.lift_all,
        keep_containment: b.keep_containment,
    };
    let change = IncidentChange::validate(input, facts_input!(b)?, now)?;
    let rec = s
        .store
        .update_incident(auth.actor(), id, &change, now)
        .await?;
    Ok(Json(IncidentView::from(&rec)))
}

/// The incident's timeline, oldest first.
#[utoipa::path(get, path = "/v1/incidents/{id}/timeline", tag = "incidents", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    responses((status = 200, body = Vec<TimelineView>), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_timeline(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
    PathId(id): PathId,
) -> ApiResult<Json<Vec<TimelineView>>> {
    let t = s.store.timeline(id).await?;
    Ok(Json(t.iter().map(TimelineView::from).collect()))
}

/// Body of `POST /v1/incidents/{id}/lift-all`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiftAll {
    #[schema(value_type = crate::schema_items::Text2000, example = "attack over, source blocked upstream")]
    pub reason: String,
}

/// What `POST /v1/incidents/{id}/lift-all` lifted.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct LiftedAll {
    /// The actions lifted (empty when none was live: nothing changed).
    pub lifted: Vec<ActionView>,
}

/// Lift every live containment action of the incident at once, in one policy version.
#[utoipa::path(post, path = "/v1/incidents/{id}/lift-all", tag = "containment", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    request_body(content = LiftAll, example = json!({"reason": "attack over"})),
    responses((status = 200, body = LiftedAll), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn lift_all(
    State(s): State<AppState>,
    auth: Auth<Responders>,
    PathId(id): PathId,
    ApiJson(b): ApiJson<LiftAll>,
) -> ApiResult<Json<LiftedAll>> {
    let reason = crate::domain::check_text("reason", &b.reason, 2000, true)?;
    let now = s.now_ms();
    let lifted = s.store.lift_all(auth.actor(), id, &reason, now).await?;
    let ctx = ActionContext::load(s.store.as_ref(), &lifted).await?;
    Ok(Json(LiftedAll {
        lifted: ctx.views(&lifted, now),
    }))
}
