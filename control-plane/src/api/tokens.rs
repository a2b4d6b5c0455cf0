//! `/v1/tokens`: admin-only token management. Tokens are shown once, stored as hashes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::TokenView;
use crate::auth::{Admins, Auth};
use crate::domain::check_name;
use crate::domain::token::{self, Role};
use crate::domain::CoreResult;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, PathId};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Recorded as the actor of every change made with the token.
    #[schema(value_type = crate::schema_items::Name100, example = "alice")]
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The token itself: shown this once, never again.
    pub token: String,
    #[serde(flatten)]
    pub info: TokenView,
}

/// Create a token.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens",
    request_body(content = CreateToken, example = json!({"name": "alice", "role": "responder"})),
    responses((status = 201, body = CreatedToken), (status = 409, description = "an active token already has this name", body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn create_token(
    State(s): State<AppState>,
    auth: Auth<Admins>,
    ApiJson(b): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let name = check_name("name", &b.name, 100)?;
    let clear = token::generate();
    let (store, tokens) = (s.store.clone(), s.tokens.clone());
    let (actor, hash, now) = (auth.actor().to_string(), token::hash(&clear), s.now_ms());
    let rec = finish_then_invalidate(async move {
        let r = store
            .create_token(&actor, &name, b.role, hash, false, now)
            .await;
        tokens.invalidate();
        r
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: clear,
            info: TokenView::from(&rec),
        }),
    ))
}

/// List tokens (never the tokens themselves).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenView>)), security(("bearer" = [])))]
async fn list_tokens(
    State(s): State<AppState>,
    _auth: Auth<Admins>,
) -> ApiResult<Json<Vec<TokenView>>> {
    Ok(Json(
        s.store
            .list_tokens()
            .await?
            .iter()
            .map(TokenView::from)
            .collect(),
    ))
}

/// Revoke a token; it stops working at once (its next request gets 401).
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = i64, Path, minimum = 1, description = "a positive integer id")),
    responses((status = 200, body = TokenView), (status = 404, body = ErrorBody), (status = 409, description = "already revoked", body = ErrorBody)),
    security(("bearer" = [])))]
async fn revoke_token(
    State(s): State<AppState>,
    auth: Auth<Admins>,
    PathId(id): PathId,
) -> ApiResult<Json<TokenView>> {
    let (store, tokens) = (s.store.clone(), s.tokens.clone());
    let (actor, now) = (auth.actor().to_string(), s.now_ms());
    let rec = finish_then_invalidate(async move {
        let r = store.revoke_token(&actor, id, now).await;
        tokens.invalidate();
        r
    })
    .await?;
    Ok(Json(TokenView::from(&rec)))
}

/// Run a token change to its end and clear the token cache after it, even if the client
/// hangs up meanwhile (a dropped handler would otherwise leave a committed revoke whose
/// token is still cached).
async fn finish_then_invalidate<T: Send + 'static>(
    change: impl std::future::Future<Output = CoreResult<T>> + Send + 'static,
) -> ApiResult<T> {
    tokio::spawn(change)
        .await
        .map_err(|e| ApiError::Internal(format!("token change task: {e}")))?
        .map_err(ApiError::from)
}
