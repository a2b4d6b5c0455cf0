//! The OpenAPI document's shared parts: the error answers every operation can give,
//! added from what the operation declares (security, parameters, body) so that no handler
//! has to list them and none is forgotten.

use serde_json::Value;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::Modify;

/// Reusable error responses (`#/components/responses/...`), each an `ErrorBody`.
const ERRORS: &[(&str, &str, &str)] = &[
    (
        "400",
        "BadRequest",
        "`invalid_json` (not JSON), `invalid_query` (bad query parameter, named in `field`), `invalid_path` (non-numeric or non-positive id), `invalid_body`",
    ),
    (
        "401",
        "Unauthenticated",
        "`unauthenticated`: no bearer token, or one that is not valid (unknown and revoked tokens get the same answer); with `WWW-Authenticate: Bearer`",
    ),
    ("403", "Forbidden", "`forbidden`: the token's role may not do this"),
    ("404", "NotFound", "`not_found`: no such incident, action, token or document"),
    (
        "408",
        "BodyTimeout",
        "`body_timeout`: the body did not arrive within `--body-read-timeout-ms`",
    ),
    (
        "413",
        "BodyTooLarge",
        "`body_too_large`: the body (or its `Content-Length`) is over the limit",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "`unsupported_media_type`: the body's `Content-Type` is not one this operation reads",
    ),
    (
        "422",
        "Invalid",
        "`invalid_field` (wrong type, missing, unknown or invalid field, named in `field`), `guard_rail`, `missing_facts` (with `missing`)",
    ),
    (
        "500",
        "Internal",
        "`internal`: logged server-side; the body never carries the cause",
    ),
];

/// Adds the shared error responses and fills in every operation's error statuses:
/// 401/403 when secured, 400/404 with a path id, 400 with query parameters, 400/408/413/415/422
/// with a body, 500 always. Statuses an operation already lists keep its description.
pub struct StandardResponses;

fn error_ref(status: &str) -> RefOr<utoipa::openapi::Response> {
    let name = ERRORS
        .iter()
        .find(|(s, _, _)| *s == status)
        .map(|(_, n, _)| *n)
        .unwrap_or("Internal");
    RefOr::Ref(Ref::from_response_name(name))
}

fn complete(op: &mut Operation) {
    let mut statuses: Vec<&str> = vec!["500"];
    if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
        statuses.extend(["401", "403"]);
    }
    let params = op.parameters.as_deref().unwrap_or(&[]);
    if params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path))
    {
        statuses.extend(["400", "404"]);
    }
    if params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Query))
    {
        statuses.push("400");
    }
    if op.request_body.is_some() {
        statuses.extend(["400", "408", "413", "415", "422"]);
    }
    for s in statuses {
        op.responses
            .responses
            .entry(s.to_string())
            .or_insert_with(|| error_ref(s));
    }
}

impl Modify for StandardResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (_, name, description) in ERRORS {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            let resp = ResponseBuilder::new()
                .description(*description)
                .content("application/json", content)
                .build();
            components
                .responses
                .insert((*name).to_string(), RefOr::T(resp));
        }
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                complete(op);
            }
        }
    }
}

/// The document as served: shared error responses added ([`StandardResponses`]), and
/// flattened compositions made satisfiable ([`open_all_of`]).
pub fn finish(mut doc: utoipa::openapi::OpenApi) -> Value {
    StandardResponses.modify(&mut doc);
    let mut v = serde_json::to_value(&doc).unwrap_or(Value::Null);
    open_all_of(&mut v);
    v
}

/// A `#[serde(flatten)]` of a type that refuses unknown fields (a request body reused in
/// a view) comes out as `allOf: [{$ref: X}, {more properties}]` where `X` has
/// `additionalProperties: false`: no object can match both. Inline such members without
/// that keyword; `X` itself stays strict where it is a request body.
pub fn open_all_of(doc: &mut Value) {
    let schemas = doc
        .pointer("/components/schemas")
        .cloned()
        .unwrap_or(Value::Null);
    let Some(all) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for schema in all.values_mut() {
        let Some(members) = schema.get_mut("allOf").and_then(Value::as_array_mut) else {
            continue;
        };
        for m in members.iter_mut() {
            let target = m
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .and_then(|name| schemas.get(name));
            if let Some(t) =
                target.filter(|t| t.get("additionalProperties") == Some(&Value::Bool(false)))
            {
                let mut open = t.clone();
                if let Some(o) = open.as_object_mut() {
                    o.remove("additionalProperties");
                }
                *m = open;
            }
        }
    }
}
