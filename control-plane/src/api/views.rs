//! Response bodies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::domain::action::{ActionKind, IsolationInput, ModeInput};
use crate::domain::facts::IncidentFacts;
use crate::domain::incident::{Phase, Severity};
use crate::domain::token::Role;
use crate::domain::CoreResult;
use crate::record::DeadlineView;
use crate::store::{
    ActionRecord, ActionStatus, EdgeRecord, HitRecord, IncidentRecord, Store, TimelineEntry,
    TokenRecord,
};

fn ts(ms: i64) -> String {
    rfc3339(ms)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IncidentView {
    pub id: i64,
    pub title: String,
    pub summary: String,
    pub severity: Severity,
    pub phase: Phase,
    /// `open` or `closed`.
    pub status: String,
    pub assignee: Option<String>,
    /// RFC 3339 UTC.
    pub detected_at: String,
    pub reported_at: String,
    pub systems_affected: Vec<String>,
    pub personal_data: bool,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
    pub health_data: bool,
    /// When the company became aware of the personal-data breach (the authority and HIPAA
    /// deadlines run from here).
    pub aware_at: Option<String>,
    /// When the incident entered post-incident activity (the post-mortem deadline runs
    /// from here); cleared when it moves back.
    pub resolved_at: Option<String>,
    pub next_update_at: Option<String>,
    /// Impact, indicators and GDPR facts.
    #[serde(flatten)]
    pub facts: IncidentFacts,
}

impl From<&IncidentRecord> for IncidentView {
    fn from(r: &IncidentRecord) -> Self {
        IncidentView {
            id: r.id,
            title: r.title.clone(),
            summary: r.summary.clone(),
            severity: r.severity,
            phase: r.phase,
            status: if r.phase == Phase::Closed {
                "closed"
            } else {
                "open"
            }
            .into(),
            assignee: r.assignee.clone(),
            detected_at: ts(r.detected_at),
            reported_at: ts(r.reported_at),
            systems_affected: r.systems.clone(),
            personal_data: r.personal_data,
            created_at: ts(r.created_at),
            created_by: r.created_by.clone(),
            updated_at: ts(r.updated_at),
            closed_at: r.closed_at.map(ts),
            health_data: r.health_data,
            aware_at: r.aware_at.map(ts),
            resolved_at: r.resolved_at.map(ts),
            next_update_at: r.next_update_at.map(ts),
            facts: r.facts.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IncidentList {
    pub items: Vec<IncidentView>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// An incident with its containment actions and timeline.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: IncidentView,
    pub actions: Vec<ActionView>,
    /// Hits reported for all of the incident's actions.
    pub hits_total: u64,
    /// The response policy's deadlines, in due order.
    pub deadlines: Vec<DeadlineView>,
    pub timeline: Vec<TimelineView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TimelineView {
    pub id: i64,
    pub at: String,
    pub actor: String,
    /// `created`, `severity_changed`, `phase_changed`, `assignee_changed`,
    /// `facts_changed`, `data_flags_changed`, `aware_at_changed`, `action_created`,
    /// `action_lifted`, `action_expired`, `notification_recorded`, `postmortem_submitted`,
    /// `postmortem_updated`, `edge_hits` (one per minute), `evidence` (one per minute of
    /// log time). Ordered by `at`.
    pub kind: String,
    pub message: String,
    pub reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

impl From<&TimelineEntry> for TimelineView {
    fn from(t: &TimelineEntry) -> Self {
        TimelineView {
            id: t.id,
            at: ts(t.at),
            actor: t.actor.clone(),
            kind: t.kind.clone(),
            message: t.message.clone(),
            reason: t.reason.clone(),
            data: t.data.clone(),
        }
    }
}

/// A block or allow target as stored: exactly one key. API keys appear only as their
/// SHA-256 (`api_key_sha256`).
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TargetView {
    Cidr(String),
    ApiKeySha256(String),
    Account(String),
    Pixel(String),
    Host(String),
    PathPrefix(String),
}

/// An isolation scope: exactly one key.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScopeView {
    Host(String),
    PathPrefix(String),
    Pixel(String),
}

/// Hits the edges reported for an action. Edges report every `report_interval_secs`, so
/// the counts lag the traffic by up to that much; they are complete up to `last_report_at`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct HitsView {
    pub total: u64,
    pub by_edge: BTreeMap<String, u64>,
    /// The latest report of the edges that counted hits for this action (of any edge when
    /// none has); null when no edge has reported.
    pub last_report_at: Option<String>,
    /// The longest report interval of those edges, in seconds (null: unknown, the edges
    /// do not say).
    pub report_interval_secs: Option<u64>,
}

/// What action views are made of besides the actions: hits, links, the edges' reports.
#[derive(Debug, Default)]
pub struct ActionContext {
    pub hits: Vec<HitRecord>,
    pub links: Vec<(i64, i64)>,
    pub edges: Vec<EdgeRecord>,
}

impl ActionContext {
    /// Everything [`ActionView::new`] needs for `actions`, in three reads.
    pub async fn load(store: &dyn Store, actions: &[ActionRecord]) -> CoreResult<ActionContext> {
        let ids: Vec<i64> = actions.iter().map(|a| a.id).collect();
        Ok(ActionContext {
            hits: store.hits(&ids).await?,
            links: store.links(&ids).await?,
            edges: store.list_edges().await?,
        })
    }

    /// The views of `actions`, in order.
    pub fn views(&self, actions: &[ActionRecord], now_ms: i64) -> Vec<ActionView> {
        actions
            .iter()
            .map(|a| ActionView::new(a, now_ms, self))
            .collect()
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActionView {
    /// Also the rule id the edges report hits for.
    pub id: i64,
    pub incident_id: i64,
    pub kind: ActionKind,
    pub target: Option<TargetView>,
    pub scope: Option<ScopeView>,
    pub isolation: Option<IsolationInput>,
    pub mode: ModeInput,
    /// `active`, `lifted` or `expired` (computed from the clock at read time).
    pub status: ActionStatus,
    pub reason: String,
    pub forced: bool,
    pub created_at: String,
    pub created_by: String,
    /// The policy version that added the rule.
    pub created_version: i64,
    pub expires_at: Option<String>,
    pub ended_at: Option<String>,
    pub ended_by: Option<String>,
    pub end_reason: Option<String>,
    /// The policy version that removed the rule.
    pub ended_version: Option<i64>,
    pub hits: HitsView,
    /// Further incidents this action is linked to (`POST /v1/actions/{id}/link`); it
    /// belongs to `incident_id`.
    pub linked_incident_ids: Vec<i64>,
    /// Normalisations applied to the request (only in the create response).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ActionView {
    pub fn new(a: &ActionRecord, now_ms: i64, ctx: &ActionContext) -> ActionView {
        let v = a.target.value.clone();
        let (target, scope) = match (a.kind, a.target.ty) {
            (ActionKind::Isolate, "host") => (None, Some(ScopeView::Host(v))),
            (ActionKind::Isolate, "path_prefix") => (None, Some(ScopeView::PathPrefix(v))),
            (ActionKind::Isolate, _) => (None, Some(ScopeView::Pixel(v))),
            (_, "cidr") => (Some(TargetView::Cidr(v)), None),
            (_, "api_key") => (Some(TargetView::ApiKeySha256(v)), None),
            (_, "account") => (Some(TargetView::Account(v)), None),
            (_, "pixel") => (Some(TargetView::Pixel(v)), None),
            (_, "host") => (Some(TargetView::Host(v)), None),
            (_, _) => (Some(TargetView::PathPrefix(v)), None),
        };
        let mut h = HitsView::default();
        for r in ctx.hits.iter().filter(|r| r.action_id == a.id) {
            let n = u64::try_from(r.count).unwrap_or(0);
            h.total = h.total.saturating_add(n);
            *h.by_edge.entry(r.edge_id.clone()).or_default() += n;
        }
        let counted: Vec<&EdgeRecord> = ctx
            .edges
            .iter()
            .filter(|e| h.by_edge.contains_key(&e.edge_id))
            .collect();
        let reporting: Vec<&EdgeRecord> = if counted.is_empty() {
            ctx.edges.iter().collect()
        } else {
            counted
        };
        h.last_report_at = reporting.iter().map(|e| e.last_seen).max().map(ts);
        h.report_interval_secs = reporting
            .iter()
            .filter_map(|e| e.report_interval_s)
            .max()
            .and_then(|s| u64::try_from(s).ok());
        let linked_incident_ids = ctx
            .links
            .iter()
            .filter(|(action, _)| *action == a.id)
            .map(|(_, incident)| *incident)
            .collect();
        ActionView {
            id: a.id,
            incident_id: a.incident_id,
            kind: a.kind,
            target,
            scope,
            isolation: a.isolation.map(|i| match i {
                edge_policy::Isolation::Block => IsolationInput::Block,
                edge_policy::Isolation::ReadOnly => IsolationInput::ReadOnly,
                edge_policy::Isolation::PixelKill => IsolationInput::PixelKill,
            }),
            mode: match a.mode {
                edge_policy::Mode::Enforce => ModeInput::Enforce,
                edge_policy::Mode::Simulate => ModeInput::Simulate,
            },
            status: a.status(now_ms),
            reason: a.reason.clone(),
            forced: a.forced,
            created_at: ts(a.created_at),
            created_by: a.created_by.clone(),
            created_version: a.created_version,
            expires_at: a.expires_at.map(ts),
            ended_at: a.ended_at.map(ts),
            ended_by: a.ended_by.clone(),
            end_reason: a.end_reason.clone(),
            ended_version: a.ended_version,
            hits: h,
            linked_incident_ids,
            warnings: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActionList {
    pub items: Vec<ActionView>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
}

impl From<&TokenRecord> for TokenView {
    fn from(t: &TokenRecord) -> Self {
        TokenView {
            id: t.id,
            name: t.name.clone(),
            role: t.role,
            created_at: ts(t.created_at),
            created_by: t.created_by.clone(),
            revoked_at: t.revoked_at.map(ts),
            revoked_by: t.revoked_by.clone(),
        }
    }
}
