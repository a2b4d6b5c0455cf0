//! `GET /v1/incidents/{id}/export`: gathers the complete record of an incident from the
//! store; the document, its audit self-check and its Markdown are [`crate::record::export`].

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::records::{markdown_response, wants_markdown, FormatQuery};
use super::views::{ActionContext, IncidentView, TimelineView};
use crate::auth::{Auth, Readers};
use crate::clock::rfc3339;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiQuery, PathId};
use crate::record::export::{audit_export, retention, to_markdown, IncidentExport, EXPORT_FORMAT};
use crate::record::{deadlines, DeadlineView, EvidenceView, NotificationView, PostMortemView};
use crate::store::{ActionFilter, AuditFilter};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export_incident))
}

/// The complete record of an incident.
#[utoipa::path(get, path = "/v1/incidents/{id}/export", tag = "record", params(("id" = i64, Path, minimum = 1, description = "a positive integer id"), FormatQuery),
    responses((status = 200, description = "the record as JSON, or as Markdown with `format=markdown` (or `Accept: text/markdown`)",
            content((IncidentExport = "application/json"), (String = "text/markdown"))),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn export_incident(
    State(s): State<AppState>,
    auth: Auth<Readers>,
    PathId(id): PathId,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<FormatQuery>,
) -> ApiResult<Response> {
    let markdown = wants_markdown(q.format.as_deref(), &headers)?;
    let now = s.now_ms();
    let facts = s.store.deadline_facts(Some(id)).await?;
    let incident = s.store.get_incident(id).await?;
    let f = ActionFilter {
        status: None,
        incident: Some(id),
        limit: i64::MAX,
        offset: 0,
    };
    let (mut actions, _) = s.store.list_actions(&f, now).await?;
    actions.sort_by_key(|a| a.id);
    let ctx = ActionContext::load(s.store.as_ref(), &actions).await?;
    let timeline = s.store.timeline(id).await?;
    let notifications = s.store.notifications(id).await?;
    let postmortem = s.store.postmortem(id).await?;
    let mut evidence = Vec::new();
    loop {
        let after = evidence
            .last()
            .map(|e: &crate::store::EvidenceRecord| e.id)
            .unwrap_or(0);
        let page = s.store.evidence(id, after, 1000).await?;
        let done = page.len() < 1000;
        evidence.extend(page);
        if done {
            break;
        }
    }
    evidence.sort_by_key(|e| (e.at, e.id));
    let mut events = Vec::new();
    loop {
        let after_seq = events
            .last()
            .map(|e: &crate::domain::audit::AuditRecord| e.seq)
            .unwrap_or(0);
        let page = s
            .store
            .audit(&AuditFilter {
                incident: Some(id),
                after_seq,
                limit: 1000,
                ..AuditFilter::default()
            })
            .await?;
        let done = page.len() < 1000;
        events.extend(page);
        if done {
            break;
        }
    }
    let links = match (events.first(), events.last()) {
        (Some(a), Some(b)) => s.store.audit_links(a.seq, b.seq).await?,
        _ => Vec::new(),
    };
    let chain = s.store.verify_audit().await?;
    let audit = audit_export(events, links, chain);
    let export = IncidentExport {
        format: EXPORT_FORMAT.into(),
        generated_at: rfc3339(now),
        generated_by: auth.actor().to_string(),
        incident: IncidentView::from(&incident),
        retention: retention(incident.closed_at),
        deadlines: deadlines(&facts, &s.settings.holidays, now)
            .iter()
            .map(|(i, t, d)| DeadlineView::new(*i, t, d))
            .collect(),
        timeline: timeline.iter().map(TimelineView::from).collect(),
        actions: ctx.views(&actions, now),
        notifications: notifications.iter().map(NotificationView::from).collect(),
        postmortem: postmortem.as_ref().map(PostMortemView::from),
        evidence: evidence.iter().map(EvidenceView::from).collect(),
        audit,
    };
    Ok(if markdown {
        markdown_response(to_markdown(&export))
    } else {
        Json(export).into_response()
    })
}
