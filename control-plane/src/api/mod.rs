//! HTTP API: one router per domain, merged here with `/healthz`, `/metrics` and
//! `/openapi.json` (generated from the handlers' `#[utoipa::path]` and types).

pub mod actions;
pub mod audit;
pub mod doc;
pub mod edge;
pub mod evidence;
pub mod export;
pub mod incidents;
pub mod intake;
pub mod lookup;
pub mod records;
pub mod settings;
pub mod tokens;
pub mod views;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{middleware, Json, Router};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::clock::parse_rfc3339;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Edge containment control plane", description = "Incidents, containment actions, audit chain and edge policy sync. Every 4xx and 5xx answer has one shape, `ErrorBody`: `{\"error\": {\"code\", \"field\", \"message\"}}`. Besides the statuses listed per operation, any request may get 405 (`method_not_allowed`), 431 (`headers_too_large`), 413 before routing when `Content-Length` exceeds every body limit, and a connection over the server's limit gets 503 (`overloaded`)."),
    paths(healthz, metrics),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "incidents"), (name = "containment"), (name = "record"), (name = "audit"), (name = "edge"), (name = "tokens"), (name = "operations")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// The OpenAPI document as served (see [`doc::finish`]).
pub fn openapi() -> serde_json::Value {
    doc::finish(api_routes().split_for_parts().1)
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(incidents::router())
        .merge(actions::router())
        .merge(audit::router())
        .merge(edge::router())
        .merge(tokens::router())
        .merge(records::router())
        .merge(evidence::router())
        .merge(export::router())
        .merge(settings::router())
        .merge(lookup::router())
        .merge(intake::router())
}

/// The full router with state, body limit and metrics middleware.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_routes().split_for_parts();
    let doc = std::sync::Arc::new(doc::finish(doc));
    api.route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(move || async move { Json(doc.as_ref().clone()) }),
        )
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::input(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method",
                "this route does not take this method",
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .with_state(state)
}

/// `/healthz`'s answer.
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `database unavailable`.
    pub status: String,
}

/// Whether the service and its database answer (public).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, description = "the database does not answer", body = Health)))]
async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    match s.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "database unavailable"})),
            )
        }
    }
}

/// Prometheus metrics in the text exposition format (public).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    s.metrics
        .policy_version
        .set(*s.store.watch_version().borrow() as i64);
    match s.store.deadline_facts(None).await {
        Ok(inputs) => {
            let overdue = crate::domain::deadline::overdue_by_kind(
                inputs.iter().map(|i| &i.facts),
                &s.settings.holidays,
                s.now_ms(),
            );
            for (kind, n) in overdue {
                s.metrics
                    .deadlines_overdue
                    .with_label_values(&[kind.as_str()])
                    .set(n as i64);
            }
        }
        Err(e) => tracing::error!(error = %e, "computing deadlines for /metrics failed"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

/// Validate `limit` (1..=200, default 50) and `offset` (≥ 0, default 0).
pub(crate) fn page(limit: Option<i64>, offset: Option<i64>) -> ApiResult<(i64, i64)> {
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::query("limit", "must be 1..=200"));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::query("offset", "must be 0 or more"));
    }
    Ok((limit, offset))
}

/// An optional RFC 3339 body field.
pub(crate) fn parse_time(field: &str, v: Option<&str>) -> ApiResult<Option<i64>> {
    v.map(|s| parse_rfc3339(s).ok_or_else(|| ApiError::invalid(field, "expected an RFC 3339 time")))
        .transpose()
}

/// An optional RFC 3339 query parameter.
pub(crate) fn parse_time_query(field: &str, v: Option<&str>) -> ApiResult<Option<i64>> {
    v.map(|s| parse_rfc3339(s).ok_or_else(|| ApiError::query(field, "expected an RFC 3339 time")))
        .transpose()
}
