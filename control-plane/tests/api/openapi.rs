//! The served `/openapi.json` is a valid OpenAPI 3.1 document: it validates against the
//! OpenAPI Initiative's schema for 3.1 documents (`tests/fixtures/oas-3.1-schema.json`),
//! every schema object in it is a valid JSON Schema 2020-12 schema, and it passes the checks
//! a validator makes beyond the schema: path parameters are exactly the template's, each
//! (name, location) once per operation, operation ids unique, every `$ref` resolves.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

use crate::common::{expect_status, Req, TestServer};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every problem a standard validator would report, as lines.
pub fn problems(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let meta: Value =
        serde_json::from_str(include_str!("../fixtures/oas-3.1-schema.json")).unwrap();
    let validator = jsonschema::options().build(&meta).unwrap();
    for e in validator.iter_errors(doc) {
        out.push(format!("OAS 3.1 schema: at {}: {e}", e.instance_path()));
    }
    walk_schemas(doc, "", &mut out);
    walk_refs(doc, doc, "", &mut out);
    let mut ids = HashSet::new();
    for (template, item) in doc["paths"].as_object().into_iter().flatten() {
        let in_template: BTreeSet<String> = template
            .split('{')
            .skip(1)
            .filter_map(|s| s.split('}').next())
            .map(str::to_string)
            .collect();
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let what = format!("{} {template}", m.to_uppercase());
            if let Some(id) = op["operationId"].as_str() {
                if !ids.insert(id.to_string()) {
                    out.push(format!("{what}: operationId {id} is not unique"));
                }
            }
            let mut seen = HashSet::new();
            let mut in_path = BTreeSet::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let (name, loc) = (
                    p["name"].as_str().unwrap_or(""),
                    p["in"].as_str().unwrap_or(""),
                );
                if !seen.insert((name.to_string(), loc.to_string())) {
                    out.push(format!("{what}: parameter {name} in {loc} given twice"));
                }
                if loc == "path" {
                    in_path.insert(name.to_string());
                    if p["required"] != Value::Bool(true) {
                        out.push(format!("{what}: path parameter {name} is not required"));
                    }
                }
            }
            if in_path != in_template {
                out.push(format!(
                    "{what}: path parameters {in_path:?} do not match the template's {in_template:?}"
                ));
            }
            for status in op["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|r| r.0)
            {
                let b = status.as_bytes();
                let ok = status == "default"
                    || (b.len() == 3
                        && (b'1'..=b'5').contains(&b[0])
                        && (b[1..].iter().all(u8::is_ascii_digit) || &b[1..] == b"XX"));
                if !ok {
                    out.push(format!("{what}: response key {status:?} is not a status"));
                }
            }
        }
    }
    out
}

/// Every `schema` under paths and every component schema against JSON Schema 2020-12.
fn walk_schemas(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                let here = format!("{at}/{k}");
                let is_schema = k == "schema"
                    || at.ends_with("/components/schemas")
                    || at == "/components/schemas";
                if is_schema && child.is_object() {
                    if let Err(e) = jsonschema::meta::validate(child) {
                        out.push(format!("JSON Schema 2020-12: at {here}: {e}"));
                    }
                } else {
                    walk_schemas(child, &here, out);
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                walk_schemas(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn walk_refs(root: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                let found = r.strip_prefix('#').and_then(|p| root.pointer(p)).is_some();
                if !found {
                    out.push(format!("at {at}: $ref {r} does not resolve"));
                }
            }
            for (k, child) in o {
                walk_refs(root, child, &format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                walk_refs(root, child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn served_document_is_valid_openapi_3_1() {
    let s = TestServer::start().await;
    let r = s
        .api
        .send(reqwest::Method::GET, "/openapi.json", Req::default())
        .await;
    let doc = expect_status(&r, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    let found = problems(doc);
    assert!(
        found.is_empty(),
        "{} problems:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_validator_catches_what_the_issue_found() {
    // A query parameter declared in the path, a path parameter missing, a dangling $ref and
    // a schema that is not a schema: each is reported.
    let doc = serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {"/v1/things/{id}": {"get": {
            "operationId": "things",
            "parameters": [
                {"name": "limit", "in": "path", "required": true, "schema": {"type": "integer"}}
            ],
            "responses": {"200": {"description": "ok", "content": {"application/json":
                {"schema": {"$ref": "#/components/schemas/Missing"}}}},
                "4yy": {"description": "bad"}}
        }}},
        "components": {"schemas": {"Bad": {"type": "thing"}}}
    });
    let found = problems(&doc).join("\n");
    for want in [
        "do not match the template",
        "does not resolve",
        "/components/schemas/Bad",
        "\"4yy\"",
    ] {
        assert!(found.contains(want), "{want} not in:\n{found}");
    }
}
