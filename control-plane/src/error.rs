//! The one API error type: every 4xx and 5xx leaves through here, with one body shape:
//! `{"error": {"code": "invalid_field", "field": "target.cidr", "message": "..."}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::CoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No, malformed, unknown or revoked bearer token.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The token's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Bad input naming the field; `status` is 400, 405, 408, 413, 415, 422 or 431.
    #[error("{field:?}: {message}")]
    Input {
        status: StatusCode,
        code: &'static str,
        field: String,
        message: String,
    },
    /// 422 `invalid_field` naming several fields: `field` and `message` are the first one's,
    /// `errors` lists every one.
    #[error("{} fields are not valid", .0.len())]
    InvalidMany(Vec<(String, String)>),
    /// 422 `missing_facts`: a document or notification needs facts the incident lacks;
    /// every one is named (`field` is the first).
    #[error("missing facts: {}", .0.join(", "))]
    MissingFacts(Vec<String>),
    #[error("{0}")]
    NotFound(String),
    #[error("{field}: {message}")]
    Conflict { field: String, message: String },
    /// 503 `unavailable` with `Retry-After: 1`: this replica cannot answer now (shutting
    /// down); the client retries, here or elsewhere.
    #[error("{0}")]
    Unavailable(String),
    /// Logged with context; the client gets a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The error body.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `unauthenticated`, `forbidden`, `invalid_json`,
    /// `invalid_field`, `invalid_query`, `invalid_path`, `invalid_body`, `guard_rail`,
    /// `not_found`, `method_not_allowed`, `conflict`, `missing_facts`, `body_too_large`,
    /// `body_timeout`, `headers_too_large`, `unsupported_media_type`, `internal`,
    /// `overloaded`, `unavailable`.
    pub code: String,
    /// The offending field (`target.cidr`, `hits[0].count`, `wait`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    /// With `missing_facts`: every missing fact (`impact`, `dpo_contact`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<String>>,
    /// When several fields are not valid (`invalid_field`): every one, in order; `field` and
    /// `message` above are the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// One invalid field of several.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl ApiError {
    pub fn input(
        status: StatusCode,
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ApiError::Input {
            status,
            code,
            field: field.into(),
            message: message.into(),
        }
    }
    /// 422 naming a field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::input(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            field,
            message,
        )
    }
    /// 400 for a bad query parameter.
    pub fn query(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::input(StatusCode::BAD_REQUEST, "invalid_query", field, message)
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Input { status, .. } => *status,
            ApiError::MissingFacts(_) | ApiError::InvalidMany(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> ErrorDetail {
        let d = |code: &str, field: Option<&str>, message: &str| ErrorDetail {
            code: code.to_string(),
            field: field.map(str::to_string),
            message: message.to_string(),
            missing: None,
            errors: None,
        };
        match self {
            ApiError::Unauthenticated(m) => d("unauthenticated", None, m),
            ApiError::Forbidden(m) => d("forbidden", None, m),
            ApiError::Input {
                code,
                field,
                message,
                ..
            } => d(code, Some(field), message),
            ApiError::MissingFacts(m) => ErrorDetail {
                code: "missing_facts".into(),
                field: m.first().cloned(),
                message: format!(
                    "the incident lacks facts this needs; set them first: {}",
                    m.join(", ")
                ),
                missing: Some(m.clone()),
                errors: None,
            },
            ApiError::InvalidMany(list) => ErrorDetail {
                code: "invalid_field".into(),
                field: list.first().map(|(f, _)| f.clone()),
                message: format!(
                    "{} fields are not valid: {}",
                    list.len(),
                    list.iter()
                        .map(|(f, m)| format!("{f}: {m}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                missing: None,
                errors: Some(
                    list.iter()
                        .map(|(field, message)| FieldError {
                            field: field.clone(),
                            message: message.clone(),
                        })
                        .collect(),
                ),
            },
            ApiError::NotFound(m) => d("not_found", None, m),
            ApiError::Conflict { field, message } => d("conflict", Some(field), message),
            ApiError::Unavailable(m) => d("unavailable", None, m),
            ApiError::Internal(_) => d("internal", None, "internal error; see the server log"),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Invalid { field, message } => ApiError::invalid(field, message),
            CoreError::InvalidMany(list) => ApiError::InvalidMany(list),
            CoreError::GuardRail { field, message } => ApiError::input(
                StatusCode::UNPROCESSABLE_ENTITY,
                "guard_rail",
                field,
                message,
            ),
            CoreError::NotFound { what, id } => {
                ApiError::NotFound(format!("{what} {id} not found"))
            }
            CoreError::Conflict { field, message } => ApiError::Conflict { field, message },
            CoreError::MissingFacts(m) => ApiError::MissingFacts(m),
            CoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                ApiError::Unavailable("the database is unreachable; retry".into())
            }
            CoreError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        match &self {
            ApiError::Internal(m) => tracing::error!(error = %m, "request failed"),
            e if status.is_client_error() => {
                tracing::debug!(error = %e, status = status.as_u16(), "request refused")
            }
            _ => {}
        }
        let mut resp = (
            status,
            Json(ErrorBody {
                error: self.detail(),
            }),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
