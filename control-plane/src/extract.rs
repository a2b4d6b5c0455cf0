//! Extractors whose rejections are [`ApiError`]s naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use http_body_util::LengthLimitError;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::server::body::BodyTimeout;
use crate::AppState;

/// JSON body, read strictly ([`crate::json`]: duplicate keys refused, integral numbers are
/// integers). Syntax errors → 400 `invalid_json`; wrong types, missing or unknown fields,
/// unknown enum values and out-of-range numbers → 422 `invalid_field`; both name the field
/// path (`target.cidr`). Not JSON → 415; over `--max-body-bytes` → 413 (at once when
/// `Content-Length` says so); not arrived within the body-read timeout → 408.
pub struct ApiJson<T>(pub T);

/// Query string, parsed the same way (400 `invalid_query` naming the parameter).
pub struct ApiQuery<T>(pub T);

/// A numeric id in the path (400 `invalid_path`).
pub struct PathId(pub i64);

/// Parse a JSON body into `T`, or an [`ApiError`] naming the field (see [`crate::json`]).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    crate::json::parse(bytes).map_err(|e| {
        if e.syntax {
            ApiError::input(StatusCode::BAD_REQUEST, "invalid_json", e.field, e.message)
        } else {
            ApiError::invalid(e.field, e.message)
        }
    })
}

/// 413 for a body over `limit` bytes.
pub fn body_too_large(limit: usize) -> ApiError {
    ApiError::input(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "body",
        format!("the request body may be at most {limit} bytes"),
    )
}

/// Read a whole body of at most `limit` bytes: 413 at once when `Content-Length` says more,
/// 413 when more arrives, 408 when it does not arrive within the body-read timeout.
pub async fn read_body(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(body_too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
        while let Some(c) = cause {
            if c.is::<LengthLimitError>() {
                return body_too_large(limit);
            }
            if let Some(t) = c.downcast_ref::<BodyTimeout>() {
                return ApiError::input(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "body",
                    t.to_string(),
                );
            }
            cause = c.source();
        }
        ApiError::input(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "body",
            "could not read the request body",
        )
    })
}

/// Whether the request says its body is JSON (`application/json` or `*/*+json`).
fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
        .unwrap_or(false)
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(ApiError::input(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "content-type",
                "expected Content-Type: application/json",
            ));
        }
        let (parts, body) = req.into_parts();
        let bytes = read_body(&parts.headers, body, state.settings.max_body_bytes).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let msg = crate::json::humanize(&e.inner().to_string());
                ApiError::query(crate::json::field_of(&e.path().to_string(), &msg), msg)
            })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let bad = || {
            ApiError::input(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                "id",
                "must be a positive integer",
            )
        };
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| bad())?;
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(PathId(id)),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        cidr: String,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        reason: String,
        target: Inner,
    }

    fn field(body: &str) -> (u16, String) {
        match parse_json::<Outer>(body.as_bytes()) {
            Err(ApiError::Input { status, field, .. }) => (status.as_u16(), field),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_the_field() {
        assert_eq!(
            field(r#"{"target": {"cidr": 5}, "reason": "x"}"#),
            (422, "target.cidr".into())
        );
        assert_eq!(
            field(r#"{"target": {"cidr": "a"}}"#),
            (422, "reason".into())
        );
        assert_eq!(
            field(r#"{"reason": "x", "target": {}}"#),
            (422, "target.cidr".into())
        );
        assert_eq!(
            field(r#"{"reason": "x", "bogus": 1, "target": {"cidr": "a"}}"#),
            (422, "bogus".into())
        );
        assert_eq!(field(r#"{"reason": "x", "#), (400, "body".into()));
        assert_eq!(
            field(r#"{"reason": "x", "target": {"cidr": "a"}} x"#),
            (400, "body".into())
        );
        assert_eq!(field("5"), (422, "body".into()));
    }
}
