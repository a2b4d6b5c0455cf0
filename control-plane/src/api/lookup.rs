//! `GET /v1/lookup`: is this address, API key, account, pixel, host or path contained right
//! now, and by which action? The comparison is [`crate::domain::lookup`]'s.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::{ActionContext, ActionView};
use crate::auth::{Auth, Readers};
use crate::domain::lookup::{self, LookupInput};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::store::{ActionFilter, ActionStatus};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(lookup))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    /// A client address (IPv4, IPv6; IPv4-mapped IPv6 reads as IPv4).
    pub ip: Option<String>,
    /// A raw API key: the server hashes it (SHA-256) and compares hashes; the key is not
    /// stored or logged. Prefer a POST-less tool that keeps it out of shell history
    /// (`contain lookup --api-key -` reads it from stdin).
    pub api_key: Option<String>,
    pub account: Option<String>,
    /// A pixel id (compared ASCII-case-insensitively, as pixel routes do by default).
    pub pixel: Option<String>,
    /// A request host (lower-cased, port and trailing dot dropped).
    pub host: Option<String>,
    /// A request path, alone or with `host` (canonical form, whole segments).
    pub path: Option<String>,
}

/// An action that matches.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LookupMatch {
    pub action: ActionView,
    /// The target or scope of the action that matched (`203.0.113.0/24`).
    pub matched: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LookupView {
    /// `ip`, `api_key`, `account`, `pixel`, `host` or `path`.
    pub kind: String,
    /// The value as compared (`sha256:<hex>` for an API key).
    pub value: String,
    /// Whether an enforced block or isolation applies (an enforced allow entry for the
    /// address exempts it from address blocks, as at the edge).
    pub contained: bool,
    /// Every active action that matches, any mode or kind, in id order.
    pub matches: Vec<LookupMatch>,
}

/// Is this contained right now, and by which action?
#[utoipa::path(get, path = "/v1/lookup", tag = "containment", params(LookupQuery),
    responses((status = 200, body = LookupView),
        (status = 400, description = "an unknown parameter, none or several of them, or a value no edge could match, named in `field` (`invalid_query`)", body = ErrorBody)),
    security(("bearer" = [])))]
async fn lookup(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
    ApiQuery(q): ApiQuery<LookupQuery>,
) -> ApiResult<Json<LookupView>> {
    let query = lookup::parse(&LookupInput {
        ip: q.ip.as_deref(),
        api_key: q.api_key.as_deref(),
        account: q.account.as_deref(),
        pixel: q.pixel.as_deref(),
        host: q.host.as_deref(),
        path: q.path.as_deref(),
    })
    .map_err(|e| match e {
        crate::domain::CoreError::Invalid { field, message } => ApiError::query(field, message),
        other => other.into(),
    })?;
    let now = s.now_ms();
    let f = ActionFilter {
        status: Some(ActionStatus::Active),
        incident: None,
        limit: i64::MAX,
        offset: 0,
    };
    let (active, _) = s.store.list_actions(&f, now).await?;
    let (found, contained) = lookup::matches(&query, &active, now);
    let hit: Vec<_> = active
        .iter()
        .filter(|a| found.iter().any(|m| m.action_id == a.id))
        .cloned()
        .collect();
    let ctx = ActionContext::load(s.store.as_ref(), &hit).await?;
    let matches = found
        .iter()
        .filter_map(|m| {
            let a = hit.iter().find(|a| a.id == m.action_id)?;
            Some(LookupMatch {
                action: ActionView::new(a, now, &ctx),
                matched: m.matched.clone(),
            })
        })
        .collect();
    Ok(Json(LookupView {
        kind: query.kind().into(),
        value: query.value(),
        contained,
        matches,
    }))
}
