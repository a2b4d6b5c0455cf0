//! Extractors whose rejections are [`ApiError`]s naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// JSON body. Syntax errors → 400 `invalid_json`; wrong types, missing or unknown fields and
/// unknown enum values → 422 `invalid_field`; both name the field path (`target.cidr`).
pub struct ApiJson<T>(pub T);

/// Query string, parsed the same way (400 `invalid_query` naming the parameter).
pub struct ApiQuery<T>(pub T);

/// A numeric id in the path (400 `invalid_path`).
pub struct PathId(pub i64);

/// Strip serde_json's " at line X column Y" suffix.
fn clean(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The field a serde error is about: the path, completed with the name in a
/// `missing field`/`unknown field` message.
fn field_of(path: &serde_path_to_error::Path, msg: &str) -> String {
    let p = path.to_string();
    let base = if p == "." || p == "?" {
        String::new()
    } else {
        p
    };
    for prefix in ["missing field `", "unknown field `"] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            if let Some(name) = rest.split('`').next() {
                if !base.ends_with(name) {
                    return if base.is_empty() {
                        name.to_string()
                    } else {
                        format!("{base}.{name}")
                    };
                }
            }
        }
    }
    if base.is_empty() {
        "body".to_string()
    } else {
        base
    }
}

/// Parse JSON bytes into `T`, or an [`ApiError`] naming the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let msg = clean(&e.inner().to_string());
        let field = field_of(e.path(), &msg);
        match e.inner().classify() {
            serde_json::error::Category::Data => ApiError::invalid(field, msg),
            _ => ApiError::input(StatusCode::BAD_REQUEST, "invalid_json", field, msg),
        }
    })?;
    de.end().map_err(|_| {
        ApiError::input(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "body",
            "trailing characters after the JSON value",
        )
    })?;
    Ok(value)
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
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
            .unwrap_or(false);
        if !json {
            return Err(ApiError::input(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "content-type",
                "expected Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::input(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "body",
                    "request body is too large",
                )
            } else {
                ApiError::input(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "body",
                    "could not read the request body",
                )
            }
        })?;
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
                let msg = e.inner().to_string();
                ApiError::query(field_of(e.path(), &msg), msg)
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
