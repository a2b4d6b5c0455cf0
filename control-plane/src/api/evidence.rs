//! Evidence from the edge: Envoy JSON access-log lines posted as NDJSON batches.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Auth, Ingesters, Readers};
use crate::domain::check_name;
use crate::domain::evidence::{parse_batch, MAX_LINES};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{read_body, ApiQuery, PathId};
use crate::record::EvidenceView;
use crate::store::EvidenceBatch;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ingest_access_logs))
        .routes(routes!(list_evidence))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IngestQuery {
    /// The shipper's batch id (or header `X-Batch-Id`); default a hash of the body.
    #[param(min_length = 1, max_length = 128)]
    pub batch_id: Option<String>,
    /// The edge the lines come from (or header `X-Edge-Id`).
    #[param(min_length = 1, max_length = 128)]
    pub edge_id: Option<String>,
}

/// A line that could not be used.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LineError {
    /// 1-based line number in the body.
    pub line: usize,
    pub error: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IngestReport {
    pub batch_id: String,
    /// Non-blank lines in the body.
    pub lines: usize,
    /// Lines parsed.
    pub accepted: usize,
    /// New evidence rows (a line that is evidence of two incidents counts twice).
    pub stored: u64,
    /// Rows already stored by an earlier post of the same lines.
    pub duplicates: u64,
    /// Lines that matched no containment action and no indicator (not stored).
    pub unmatched: u64,
    /// Incidents that received new evidence.
    pub incidents: Vec<i64>,
    /// Lines refused, by line number; the good lines are processed regardless.
    pub errors: Vec<LineError>,
}

fn header_or(headers: &HeaderMap, name: &str, q: Option<String>) -> Option<String> {
    q.or_else(|| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    })
}

/// Post Envoy JSON access-log lines (NDJSON: one JSON object per line, as a log shipper
/// batches them). Lines that match a containment action live at the line's `start_time`
/// (attributed to its incident), or whose client matches an open incident's indicators,
/// are stored as evidence; others are counted and dropped. Malformed lines are reported
/// by line number without rejecting the rest. Re-posting lines stores nothing twice.
#[utoipa::path(post, path = "/v1/evidence/access-logs", tag = "record", params(IngestQuery,
        ("X-Batch-Id" = Option<String>, Header), ("X-Edge-Id" = Option<String>, Header)),
    request_body(content = String, content_type = "application/x-ndjson",
        example = json!("{\"start_time\":\"2026-03-02T10:00:00.123Z\",\"method\":\"GET\",\"path\":\"/login\",\"response_code\":403,\"authority\":\"shop.example\",\"downstream_remote_address\":\"203.0.113.7:51234\",\"user_agent\":\"curl/8\"}\n")),
    responses((status = 200, body = IngestReport), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn ingest_access_logs(
    State(s): State<AppState>,
    auth: Auth<Ingesters>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<IngestQuery>,
    body: Body,
) -> ApiResult<Json<IngestReport>> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let ok_type = ct.as_deref().is_some_and(|c| {
        matches!(
            c,
            "application/x-ndjson" | "application/jsonl" | "application/json" | "text/plain"
        )
    });
    if !ok_type {
        return Err(ApiError::input(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "content-type",
            "expected Content-Type: application/x-ndjson (or application/json, text/plain)",
        ));
    }
    let bytes = read_body(&headers, body, s.settings.max_evidence_bytes).await?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| ApiError::invalid("body", "must be UTF-8 text"))?;
    let batch_id = match header_or(&headers, "x-batch-id", q.batch_id) {
        Some(b) => check_name("batch_id", &b, 128)?,
        None => hex::encode(&Sha256::digest(&bytes)[..16]),
    };
    let edge_id = header_or(&headers, "x-edge-id", q.edge_id)
        .map(|e| check_name("edge_id", &e, 128))
        .transpose()?;
    let (lines, errors) = parse_batch(text);
    let total = lines.len() + errors.len();
    if total == 0 {
        return Err(ApiError::invalid("body", "no access-log lines"));
    }
    if total > MAX_LINES {
        return Err(ApiError::invalid(
            "body",
            format!("at most {MAX_LINES} lines per batch"),
        ));
    }
    let accepted = lines.len();
    let batch = EvidenceBatch {
        batch_id: batch_id.clone(),
        edge_id,
        lines,
    };
    let out = s
        .store
        .ingest_evidence(auth.actor(), &batch, s.now_ms())
        .await?;
    for (result, n) in [
        ("stored", out.stored),
        ("duplicate", out.duplicates),
        ("unmatched", out.unmatched),
        ("malformed", errors.len() as u64),
    ] {
        s.metrics
            .evidence_lines
            .with_label_values(&[result])
            .inc_by(n);
    }
    Ok(Json(IngestReport {
        batch_id,
        lines: total,
        accepted,
        stored: out.stored,
        duplicates: out.duplicates,
        unmatched: out.unmatched,
        incidents: out.incidents,
        errors: errors
            .into_iter()
            .map(|(line, error)| LineError { line, error })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EvidenceQuery {
    /// Page on: rows with a larger id.
    pub after_id: Option<i64>,
    /// 1..=1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// The incident's evidence, in ingestion (id) order.
#[utoipa::path(get, path = "/v1/incidents/{id}/evidence", tag = "record", params(("id" = i64, Path, minimum = 1, description = "a positive integer id"), EvidenceQuery),
    responses((status = 200, body = Vec<EvidenceView>), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_evidence(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
    PathId(id): PathId,
    ApiQuery(q): ApiQuery<EvidenceQuery>,
) -> ApiResult<Json<Vec<EvidenceView>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::query("limit", "must be 1..=1000"));
    }
    let rows = s
        .store
        .evidence(id, q.after_id.unwrap_or(0).max(0), limit)
        .await?;
    Ok(Json(rows.iter().map(EvidenceView::from).collect()))
}
