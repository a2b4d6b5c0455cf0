//! The edge sync contract: policy snapshots/deltas with long-poll, hit reports, edge list.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use edge_policy::report::EdgeReport;
use edge_policy::{wire, Version};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Auth, Edges, Readers};
use crate::clock::rfc3339;
use crate::domain::{check_name, CoreError};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::policy_feed::Answer;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_policy))
        .routes(routes!(post_report))
        .routes(routes!(list_edges))
        .routes(routes!(list_keys))
}

/// Counts a waiting long-poll while alive (also when the client hangs up mid-wait).
struct Waiting<'a>(&'a prometheus::IntGauge);

impl<'a> Waiting<'a> {
    fn new(g: &'a prometheus::IntGauge) -> Self {
        g.inc();
        Waiting(g)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The longest long-poll.
pub const MAX_WAIT_SECS: u64 = 60;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PolicyQuery {
    /// The version the edge holds (0 is the empty policy). Without it, `If-None-Match:
    /// "<version>"` is used; with neither, the edge holds nothing and gets the policy at once.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub since: Option<u64>,
    /// Seconds to wait for a newer version when `since` is current (0..=60, default 0).
    #[param(minimum = 0, maximum = 60)]
    pub wait: Option<u64>,
}

/// A sealed policy message (`edge-policy/WIRE.md`): the seal (signatures over the message's
/// kind, versions, time, length and SHA-256), then the message (4-byte header + postcard
/// body).
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct PolicyMessage(pub Vec<u8>);

/// Parse `If-None-Match: "12"` (or `W/"12"`).
fn if_none_match(headers: &HeaderMap) -> Option<Version> {
    let v = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.trim_matches('"').parse().ok()
}

fn etag(v: Version) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{v}\"")).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// How long an edge ahead of this process's version is held for the news of that version
/// to arrive (above the PostgreSQL store's 1 s fallback check).
const AHEAD_GRACE: Duration = Duration::from_millis(1500);

/// The policy for an edge: a snapshot, a delta since `since`, or 304 when nothing newer
/// appears within `wait` seconds (answered as soon as a newer version is published to
/// long-polls: at once after a quiet interval, else at the end of `--policy-wake-interval-ms`).
///
/// No database query in the common case: versions come from [`crate::policy_feed`]'s
/// channels and the encoded answers from its cache (computed once per since and version).
#[utoipa::path(get, path = "/v1/edge/policy", tag = "edge", params(PolicyQuery,
        ("If-None-Match" = Option<String>, Header, description = "\"<version>\", used when since is absent")),
    responses(
        (status = 200, description = "a seal (`edge_policy::seal`: Ed25519 signatures by every signing key) followed by `wire::encode_snapshot` or `wire::encode_delta` bytes; headers ETag, X-Policy-Version, X-Policy-Kind (snapshot|delta), X-Policy-Key (the newest signing key id)",
            content_type = "application/vnd.edge-containment.policy", body = PolicyMessage),
        (status = 304, description = "no newer version within `wait`"),
        (status = 400, body = ErrorBody),
        (status = 503, description = "`unavailable`: the long-poll was cut short by a shutdown; retry (`Retry-After`)", body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_policy(
    State(s): State<AppState>,
    _auth: Auth<Edges>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PolicyQuery>,
) -> ApiResult<Response> {
    let wait = q.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::query(
            "wait",
            format!("must be 0..={MAX_WAIT_SECS} seconds"),
        ));
    }
    if q.since.is_some_and(|v| v > MAX_COUNTER) {
        return Err(ApiError::query(
            "since",
            format!("must be 0..={MAX_COUNTER}"),
        ));
    }
    let held = edge_policy::sync::held_version(q.since, if_none_match(&headers));
    let since = held.unwrap_or(0);
    let feed = &s.policy;
    if wait == 0 {
        // A plain poll sees every commit (a write followed by a poll reads its own write).
        let committed = feed.committed();
        if held == Some(committed) {
            return Ok(not_modified(&s, since));
        }
        return policy_response(&s, feed.answer(since, committed).await?).await;
    }
    // A long-poll's "current" is the published version (commits coalesced per interval).
    // Subscribe, then read published before committed: published <= committed.
    let mut rx = feed.subscribe();
    let published = *rx.borrow_and_update();
    let mut committed = feed.committed();
    if held.is_some() && since > committed {
        // An edge ahead of what this process has heard: a commit whose news is on its way
        // (another replica's notification, or this process's own publish a moment after an
        // answer read the database). Wait for it without asking the database (thousands of
        // edges can be here at once); only an edge still ahead after that holds a version
        // this control plane never had, and gets the full policy.
        let mut heard = s.store.watch_version();
        let _ = tokio::time::timeout(AHEAD_GRACE, heard.wait_for(|v| *v >= since)).await;
        committed = feed.committed();
    }
    if held.is_none() || since > committed {
        // No version, or one this control plane never had: the full policy at once. An edge
        // holding version 0 (the empty policy) waits like any other current edge: answering
        // it at once made every fresh edge re-poll in a loop until the first action.
        return policy_response(&s, feed.answer(since, committed).await?).await;
    }
    if since < published {
        return policy_response(&s, feed.answer(since, published).await?).await;
    }
    // `since` is current (or newer than published and soon to be): wait for a newer one.
    {
        let _waiting = Waiting::new(&s.metrics.longpolls_waiting);
        let mut shutdown = s.shutdown.clone();
        tokio::select! {
            _ = tokio::time::timeout(Duration::from_secs(wait), rx.wait_for(|v| *v > since)) => {}
            _ = shutdown.wait_for(|s| *s) => {
                // Not a 304: an edge waits out the rest of its wait after an early "nothing
                // new", but retries soon after a 503 (another replica, or this one restarted).
                return Err(ApiError::Unavailable("the control plane is shutting down".into()));
            }
        }
    }
    let published = *rx.borrow();
    if published > since {
        let spread = feed.spread();
        if !spread.is_zero() {
            tokio::time::sleep(spread).await;
        }
        return policy_response(&s, feed.answer(since, published).await?).await;
    }
    Ok(not_modified(&s, since))
}

fn not_modified(s: &AppState, version: Version) -> Response {
    s.metrics
        .policy_responses
        .with_label_values(&["not_modified"])
        .inc();
    (StatusCode::NOT_MODIFIED, [(header::ETAG, etag(version))]).into_response()
}

async fn policy_response(s: &AppState, a: Answer) -> ApiResult<Response> {
    // Sealed per request (the seal says when); the message itself is cached and not copied.
    let seal = s.signer.seal_prefix(&a.body, &a.digest).await?;
    s.metrics
        .policy_responses
        .with_label_values(&[a.kind.as_str()])
        .inc();
    s.metrics.policy_version.set(a.version as i64);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, wire::CONTENT_TYPE)
        .header(header::ETAG, etag(a.version))
        .header("X-Policy-Version", a.version.to_string())
        .header("X-Policy-Kind", a.kind.as_str())
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::new(Chunks::new([seal, a.body])))
        .map_err(|e| ApiError::Internal(format!("building policy response: {e}")))
}

/// A body of a few chunks sent one after the other, with its exact length (so the answer has
/// a `Content-Length`, as a single buffer would).
struct Chunks(std::collections::VecDeque<Bytes>);

impl Chunks {
    fn new<const N: usize>(parts: [Bytes; N]) -> Chunks {
        Chunks(parts.into_iter().filter(|b| !b.is_empty()).collect())
    }
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

/// The policy signing keys: what goes into every edge's `control_plane.trusted_keys`.
/// Public keys only; `active` and `retiring` keys sign every answer.
#[utoipa::path(get, path = "/v1/edge/keys", tag = "edge",
    responses(
        (status = 200, body = [crate::domain::signing::KeyView])),
    security(("bearer" = [])))]
async fn list_keys(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
) -> ApiResult<Json<Vec<crate::domain::signing::KeyView>>> {
    let keys = s.signer.keys().await?;
    let now = s.now_ms();
    Ok(Json(keys.iter().map(|k| k.view(now)).collect()))
}

/// The OpenAPI schema of `edge_policy::report::EdgeReport` (that crate has no utoipa
/// dependency; `edge_report_schema_matches` keeps the two in step).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = EdgeReport)]
#[serde(deny_unknown_fields)]
pub struct EdgeReportSchema {
    /// The edge's configured id (e.g. `envoy-ams-1`).
    #[schema(value_type = crate::schema_items::Name128)]
    pub edge_id: String,
    /// Random per start of the edge process (or VM).
    #[schema(value_type = crate::schema_items::Name128)]
    pub boot_id: String,
    /// 1 for the first report after a start, then +1 per report.
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub seq: u64,
    /// The policy version the edge enforces now (0: none yet).
    #[schema(maximum = 9_223_372_036_854_775_807_i64)]
    pub policy_version: u64,
    /// Hits per rule (action id) since the previous report; increments, not totals.
    #[serde(default)]
    #[schema(max_items = 10000)]
    pub hits: Vec<RuleHitsSchema>,
    /// Seconds between this edge's reports (hit counts lag by up to this); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 4_294_967_295_u64)]
    pub interval_s: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = RuleHits)]
#[serde(deny_unknown_fields)]
pub struct RuleHitsSchema {
    /// The action id.
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub rule_id: u64,
    #[schema(maximum = 1_099_511_627_776_i64)]
    pub count: u64,
}

/// Most rule entries one report may carry.
pub const MAX_REPORT_HITS: usize = 10_000;

/// The answer to a report naming rule ids no containment action ever had.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportAnswer {
    /// False when this `(edge_id, boot_id, seq)` was already counted.
    pub counted: bool,
    /// Rule ids of the report that no action ever had: their hits were added to no total
    /// (a stale or foreign policy at the edge).
    pub unknown_rule_ids: Vec<u64>,
}

/// The largest value a report's counters may take: they are stored as signed 64-bit.
const MAX_COUNTER: u64 = i64::MAX as u64;

/// Check every number of a report against what can be stored, naming the field.
fn check_report(r: &EdgeReport) -> Result<(), CoreError> {
    if !(1..=MAX_COUNTER).contains(&r.seq) {
        return Err(CoreError::invalid(
            "seq",
            format!("must be 1..={MAX_COUNTER}"),
        ));
    }
    if r.policy_version > MAX_COUNTER {
        return Err(CoreError::invalid(
            "policy_version",
            format!("must be 0..={MAX_COUNTER}"),
        ));
    }
    if r.hits.len() > MAX_REPORT_HITS {
        return Err(CoreError::invalid(
            "hits",
            format!("at most {MAX_REPORT_HITS} entries"),
        ));
    }
    for (i, h) in r.hits.iter().enumerate() {
        if !(1..=MAX_COUNTER).contains(&h.rule_id) {
            return Err(CoreError::invalid(
                format!("hits[{i}].rule_id"),
                format!("must be 1..={MAX_COUNTER} (an action id)"),
            ));
        }
        if h.count > MAX_HIT_COUNT {
            return Err(CoreError::invalid(
                format!("hits[{i}].count"),
                format!("implausibly large (at most {MAX_HIT_COUNT})"),
            ));
        }
    }
    Ok(())
}

/// Most hits one entry may add (2^40).
const MAX_HIT_COUNT: u64 = 1 << 40;

/// Post hit counts (increments since the edge's previous report). A report whose
/// `(edge_id, boot_id, seq)` was already counted is acknowledged and not counted again.
/// Hits for rule ids no action ever had are counted in no total: the answer is then 200
/// naming them (and `edge_cp_edge_unknown_rule_hits_total` counts them).
#[utoipa::path(post, path = "/v1/edge/reports", tag = "edge",
    request_body(content = EdgeReportSchema, example = json!({"edge_id": "envoy-ams-1", "boot_id": "6f1c2a", "seq": 42, "policy_version": 7, "hits": [{"rule_id": 1, "count": 120}]})),
    responses((status = 204, description = "counted, or already counted"),
        (status = 200, description = "counted, but some rule ids are unknown", body = ReportAnswer),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn post_report(
    State(s): State<AppState>,
    _auth: Auth<Edges>,
    ApiJson(r): ApiJson<EdgeReport>,
) -> ApiResult<Response> {
    check_name("edge_id", &r.edge_id, 128)?;
    check_name("boot_id", &r.boot_id, 128)?;
    check_report(&r)?;
    let out = s.store.record_report(&r, s.now_ms()).await?;
    s.metrics
        .edge_reports
        .with_label_values(&[if out.counted { "counted" } else { "duplicate" }])
        .inc();
    if out.unknown_rule_ids.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    s.metrics
        .edge_unknown_rule_hits
        .inc_by(out.unknown_rule_ids.len() as u64);
    tracing::info!(edge_id = %r.edge_id, unknown = ?out.unknown_rule_ids, "edge reported hits for unknown rule ids");
    Ok((
        StatusCode::OK,
        Json(ReportAnswer {
            counted: out.counted,
            unknown_rule_ids: out.unknown_rule_ids,
        }),
    )
        .into_response())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EdgeView {
    pub edge_id: String,
    pub boot_id: String,
    /// RFC 3339 UTC time of the last counted report.
    pub last_seen: String,
    pub policy_version: i64,
    /// The control plane's current version.
    pub current_version: i64,
    /// Whether the edge enforces an older version than the current one.
    pub behind: bool,
    pub reports: i64,
    /// Seconds between its reports, as it says (null: an edge older than the field): hit
    /// counts from it lag by up to this much.
    pub report_interval_secs: Option<i64>,
}

/// Edges that reported, with last-seen time and whether they are behind.
#[utoipa::path(get, path = "/v1/edges", tag = "edge",
    responses((status = 200, body = Vec<EdgeView>)), security(("bearer" = [])))]
async fn list_edges(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
) -> ApiResult<Json<Vec<EdgeView>>> {
    let current = s.store.policy_version().await? as i64;
    let edges = s.store.list_edges().await?;
    Ok(Json(
        edges
            .into_iter()
            .map(|e| EdgeView {
                behind: e.policy_version < current,
                edge_id: e.edge_id,
                boot_id: e.boot_id,
                last_seen: rfc3339(e.last_seen),
                policy_version: e.policy_version,
                current_version: current,
                reports: e.reports,
                report_interval_secs: e.report_interval_s,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_report_schema_matches() {
        let json = serde_json::json!({"edge_id": "e", "boot_id": "b", "seq": 3, "policy_version": 7,
            "hits": [{"rule_id": 1, "count": 2}], "interval_s": 5});
        let a: EdgeReport = serde_json::from_value(json.clone()).unwrap();
        let b: EdgeReportSchema = serde_json::from_value(json).unwrap();
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::to_value(&b).unwrap()
        );
    }
}
