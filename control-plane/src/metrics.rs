//! Prometheus metrics, one registry per app (no global state).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tracing::Instrument;

use crate::AppState;

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub policy_version: IntGauge,
    pub policy_responses: IntCounterVec,
    pub longpolls_waiting: IntGauge,
    pub edge_reports: IntCounterVec,
    pub actions_expired: IntCounter,
    /// Set at scrape time from the policy clock.
    pub deadlines_overdue: IntGaugeVec,
    pub evidence_lines: IntCounterVec,
    /// Edge policy answers by cache result (`hit`, `miss`, `uncached`).
    pub policy_cache: IntCounterVec,
    /// Long-poll wake-ups: policy versions published to waiting edges (coalesced commits).
    pub policy_wakeups: IntCounter,
    /// Token checks by cache result (`hit`, `miss`).
    pub token_cache: IntCounterVec,
    /// Hits reported for rule ids no action ever had (counted here, never in a total).
    pub edge_unknown_rule_hits: IntCounter,
    /// Client connections open now.
    pub connections_open: IntGauge,
    /// Connections ended by the server, by reason (`over_limit`: refused with 503 at
    /// accept; `header_timeout`, `idle_timeout`).
    pub connections_closed: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("edge_cp".into()), None).unwrap_or_default();
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency (long-polls included)",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0,
            ]),
            &["method", "route"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let policy_version = IntGauge::new("policy_version", "Current policy version")
            .unwrap_or_else(|_| unreachable_metric());
        let policy_responses = IntCounterVec::new(
            Opts::new("policy_responses_total", "Edge policy answers by kind"),
            &["kind"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let longpolls_waiting =
            IntGauge::new("policy_longpolls_waiting", "Edge long-polls waiting now")
                .unwrap_or_else(|_| unreachable_metric());
        let edge_reports = IntCounterVec::new(
            Opts::new("edge_reports_total", "Edge reports by result"),
            &["result"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let actions_expired = IntCounter::new(
            "actions_expired_total",
            "Containment actions expired by the sweep",
        )
        .unwrap_or_else(|_| unreachable_metric());
        let deadlines_overdue = IntGaugeVec::new(
            Opts::new(
                "deadlines_overdue",
                "Response-policy deadlines past due and not met, by kind (computed at scrape)",
            ),
            &["kind"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let evidence_lines = IntCounterVec::new(
            Opts::new(
                "evidence_lines_total",
                "Access-log lines posted, by result (stored, duplicate, unmatched, malformed)",
            ),
            &["result"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let policy_cache = IntCounterVec::new(
            Opts::new(
                "policy_cache_total",
                "Edge policy answers by cache result (hit: shared, miss: computed and kept, uncached: computed, cache full)",
            ),
            &["result"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let policy_wakeups = IntCounter::new(
            "policy_wakeups_total",
            "Policy versions published to waiting long-polls (commits within the wake interval count once)",
        )
        .unwrap_or_else(|_| unreachable_metric());
        let token_cache = IntCounterVec::new(
            Opts::new(
                "token_cache_total",
                "Bearer-token checks by cache result (hit, miss)",
            ),
            &["result"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let edge_unknown_rule_hits = IntCounter::new(
            "edge_unknown_rule_hits_total",
            "Hit-report entries naming a rule id no containment action ever had",
        )
        .unwrap_or_else(|_| unreachable_metric());
        let connections_open = IntGauge::new("connections_open", "Client connections open now")
            .unwrap_or_else(|_| unreachable_metric());
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "connections_closed_total",
                "Connections the server ended, by reason (over_limit, header_timeout, idle_timeout)",
            ),
            &["reason"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let m = Metrics {
            registry,
            http_requests,
            http_duration,
            policy_version,
            policy_responses,
            longpolls_waiting,
            edge_reports,
            actions_expired,
            deadlines_overdue,
            evidence_lines,
            policy_cache,
            policy_wakeups,
            token_cache,
            edge_unknown_rule_hits,
            connections_open,
            connections_closed,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.http_requests.clone()),
            Box::new(m.http_duration.clone()),
            Box::new(m.policy_version.clone()),
            Box::new(m.policy_responses.clone()),
            Box::new(m.longpolls_waiting.clone()),
            Box::new(m.edge_reports.clone()),
            Box::new(m.actions_expired.clone()),
            Box::new(m.deadlines_overdue.clone()),
            Box::new(m.evidence_lines.clone()),
            Box::new(m.policy_cache.clone()),
            Box::new(m.policy_wakeups.clone()),
            Box::new(m.token_cache.clone()),
            Box::new(m.edge_unknown_rule_hits.clone()),
            Box::new(m.connections_open.clone()),
            Box::new(m.connections_closed.clone()),
        ];
        for c in collectors {
            if let Err(e) = m.registry.register(c) {
                tracing::error!(error = %e, "registering a metric failed");
            }
        }
        m
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cold]
fn unreachable_metric<T>() -> T {
    // Metric names and label sets above are static and valid; prometheus only rejects
    // invalid names. Reaching this is a programming error caught by the unit test.
    panic!("invalid static metric definition")
}

/// Middleware: count and time every request by its route template.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!("request", method = %method, route = %route);
    let resp = next.run(req).instrument(span).await;
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    if status >= 500 {
        tracing::warn!(%method, %route, status, elapsed_ms = elapsed.as_millis() as u64, "request");
    } else if status < 400 && route.starts_with("/v1/edge/") {
        // Every edge polls and reports all the time (thousands of lines a second for a
        // fleet): their successful requests are in the metrics, and logged at debug only.
        tracing::debug!(%method, %route, status, elapsed_ms = elapsed.as_millis() as u64, "request");
    } else {
        tracing::info!(%method, %route, status, elapsed_ms = elapsed.as_millis() as u64, "request");
    }
    let m = &state.metrics;
    m.http_requests
        .with_label_values(&[method.as_str(), route.as_str(), resp.status().as_str()])
        .inc();
    m.http_duration
        .with_label_values(&[method.as_str(), route.as_str()])
        .observe(elapsed.as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_build_and_render() {
        let m = super::Metrics::new();
        m.policy_version.set(3);
        m.http_requests
            .with_label_values(&["GET", "/healthz", "200"])
            .inc();
        let text = m.render();
        assert!(text.contains("edge_cp_policy_version 3"), "{text}");
        assert!(text.contains("edge_cp_http_requests_total"), "{text}");
        for r in crate::policy_feed::CacheResult::ALL {
            m.policy_cache.with_label_values(&[r.as_str()]).inc();
        }
        m.policy_wakeups.inc();
        m.token_cache.with_label_values(&["hit"]).inc();
        let text = m.render();
        for r in crate::policy_feed::CacheResult::ALL {
            let line = format!("edge_cp_policy_cache_total{{result=\"{}\"}} 1", r.as_str());
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(text.contains("edge_cp_policy_wakeups_total 1"), "{text}");
        assert!(
            text.contains("edge_cp_token_cache_total{result=\"hit\"} 1"),
            "{text}"
        );
    }
}
