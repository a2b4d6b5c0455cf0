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
use crate::error::{ApiResult, ErrorBody};
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
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn create_token(
    State(s): State<AppState>,
    auth: Auth<Admins>,
    ApiJson(b): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let name = check_name("name", &b.name, 100)?;
    let clear = token::generate();
    let rec = s
        .store
        .create_token(
            auth.actor(),
            &name,
            b.role,
            token::hash(&clear),
            false,
            s.now_ms(),
        )
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

/// Revoke a token; it stops working at once.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = i64, Path)),
    responses((status = 200, body = TokenView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn revoke_token(
    State(s): State<AppState>,
    auth: Auth<Admins>,
    PathId(id): PathId,
) -> ApiResult<Json<TokenView>> {
    let rec = s.store.revoke_token(auth.actor(), id, s.now_ms()).await?;
    Ok(Json(TokenView::from(&rec)))
}
