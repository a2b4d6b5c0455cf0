//! The store interface: what the handlers need from storage, as one small async trait per
//! aggregate ([`TokenStore`], [`IncidentStore`], [`ActionStore`], [`AuditStore`],
//! [`EdgeStore`], [`RecordStore`], [`SettingsStore`]) and [`Store`], the super-trait the application holds.
//!
//! A backend makes no decisions: every refusal, row value, timeline text and audit event
//! comes from a pure function in [`crate::domain`] (`incident_rules`, `containment`,
//! `record_rules`, `edge_record`, `token_rules`). A backend loads what the function takes,
//! calls it, and writes what it returns, in one transaction per mutating method (the row
//! changes, the policy version bump when active containment changes, the timeline entries
//! and the audit events). Appending to the audit chain reads the last `(seq, hash)` and
//! inserts [`crate::domain::audit::AuditRecord::chained`]; the transaction must make that
//! read-then-insert exclusive among writers (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a row
//! lock such as `SELECT ... FOR UPDATE` on `policy_state`, and `seq` unique).
//!
//! [`sql::SqlStore`] implements each trait in a file of its own under `store/sql/`, on
//! SQLite or PostgreSQL. On PostgreSQL, [`ActionStore::watch_version`] and
//! [`TokenStore::watch_tokens`] are fed by `LISTEN`/`NOTIFY` so every replica's long-polls
//! wake, and every replica's token cache clears, on a commit made by any replica.

mod records;
pub mod sql;

pub use records::*;

pub use crate::domain::records::{
    ActionRecord, ActionStatus, IncidentDeadlines, IncidentRecord, NotificationRecord,
    PostMortemRecord, TimelineEntry, TokenRecord,
};

use async_trait::async_trait;
use edge_policy::report::EdgeReport;
use edge_policy::{Delta, Snapshot, Version};
use tokio::sync::watch;

use crate::domain::action::{GuardRails, NewAction};
use crate::domain::audit::{AuditRecord, BrokenLink};
use crate::domain::incident::{IncidentChange, NewIncident, Phase, Severity};
use crate::domain::notification::NewNotification;
use crate::domain::postmortem::PostMortem;
use crate::domain::settings::{SettingsChange, StoredSettings};
use crate::domain::signing::SigningKeyRecord;
use crate::domain::token::Role;
use crate::domain::CoreResult;

/// A token found by its hash, for authentication.
#[derive(Clone, Debug)]
pub struct AuthToken {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub hash: Vec<u8>,
    pub revoked: bool,
}

#[derive(Clone, Debug, Default)]
pub struct IncidentFilter {
    pub phase: Option<Phase>,
    pub severity: Option<Severity>,
    /// `Some(true)`: not closed; `Some(false)`: closed.
    pub open: Option<bool>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Clone, Debug, Default)]
pub struct ActionFilter {
    /// `None`: every action.
    pub status: Option<ActionStatus>,
    pub incident: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub incident: Option<i64>,
    pub actor: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub after_seq: i64,
    pub limit: i64,
}

/// Result of walking the audit chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    pub checked: u64,
    pub last_seq: i64,
    pub last_hash: String,
    pub first_broken: Option<BrokenLink>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeRecord {
    pub edge_id: String,
    pub boot_id: String,
    /// When its latest report arrived.
    pub last_seen: i64,
    pub policy_version: i64,
    pub reports: i64,
    /// Seconds between its reports, as it said (edges older than the field say nothing).
    pub report_interval_s: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HitRecord {
    pub action_id: i64,
    pub edge_id: String,
    pub count: i64,
}

/// What the edge sync endpoint sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyAnswer {
    Snapshot(Snapshot),
    Delta(Delta),
}

/// Object counts, for health checks and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub incidents: i64,
    pub actions: i64,
    pub tokens: i64,
    pub audit: i64,
    pub edges: i64,
    pub version: i64,
    pub timeline: i64,
    /// Sum of all hit counts.
    pub hits: i64,
    pub notifications: i64,
    pub postmortems: i64,
    pub evidence: i64,
}

/// What recording an edge report did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportOutcome {
    /// False when this `(edge_id, boot_id, seq)` was already counted (nothing changed).
    pub counted: bool,
    /// Rule ids of the report that no containment action ever had, in report order
    /// (their hits are added to no total).
    pub unknown_rule_ids: Vec<u64>,
}

/// Tokens and the policy signing keys.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Create a token. With `only_if_none`, refuse when any unrevoked token exists.
    async fn create_token(
        &self,
        actor: &str,
        name: &str,
        role: Role,
        hash: [u8; 32],
        only_if_none: bool,
        now: i64,
    ) -> CoreResult<TokenRecord>;
    async fn find_token(&self, hash: &[u8; 32]) -> CoreResult<Option<AuthToken>>;
    async fn list_tokens(&self) -> CoreResult<Vec<TokenRecord>>;
    async fn revoke_token(&self, actor: &str, id: i64, now: i64) -> CoreResult<TokenRecord>;
    /// Moves whenever a token is revoked, here or on another replica (clear token caches).
    fn watch_tokens(&self) -> watch::Receiver<u64>;
    /// Every signing key, oldest first.
    async fn signing_keys(&self) -> CoreResult<Vec<SigningKeyRecord>>;
    /// Add `new` as [`crate::domain::signing::rotate`] plans it, with its audit event, in one
    /// transaction; with `only_if_none`, do nothing when a key exists (first start). Returns
    /// every key afterwards.
    async fn add_signing_key(
        &self,
        actor: &str,
        new: SigningKeyRecord,
        overlap_ms: i64,
        only_if_none: bool,
        now: i64,
    ) -> CoreResult<Vec<SigningKeyRecord>>;
}

/// Incidents and their timelines.
#[async_trait]
pub trait IncidentStore: Send + Sync {
    async fn create_incident(
        &self,
        actor: &str,
        new: &NewIncident,
        now: i64,
    ) -> CoreResult<IncidentRecord>;
    async fn list_incidents(&self, f: &IncidentFilter) -> CoreResult<(Vec<IncidentRecord>, i64)>;
    async fn get_incident(&self, id: i64) -> CoreResult<IncidentRecord>;
    /// Apply `change` as [`crate::domain::incident_rules::update`] decides.
    async fn update_incident(
        &self,
        actor: &str,
        id: i64,
        change: &IncidentChange,
        now: i64,
    ) -> CoreResult<IncidentRecord>;
    async fn timeline(&self, incident_id: i64) -> CoreResult<Vec<TimelineEntry>>;
}

/// Containment actions and the policy versions they make.
#[async_trait]
pub trait ActionStore: Send + Sync {
    /// Create an action as [`crate::domain::containment`] decides, in a new policy version.
    async fn create_action(
        &self,
        actor: &str,
        new: &NewAction,
        rails: GuardRails,
        now: i64,
    ) -> CoreResult<ActionRecord>;
    async fn lift_action(
        &self,
        actor: &str,
        id: i64,
        reason: &str,
        now: i64,
    ) -> CoreResult<ActionRecord>;
    /// Lift every live action of an incident in one policy version (none: nothing changes).
    async fn lift_all(
        &self,
        actor: &str,
        incident_id: i64,
        reason: &str,
        now: i64,
    ) -> CoreResult<Vec<ActionRecord>>;
    /// File the action under incident `to` instead ([`crate::domain::refile`]); a live rule is
    /// re-sent with its new incident in a new policy version (no gap in enforcement).
    async fn move_action(
        &self,
        actor: &str,
        id: i64,
        to: i64,
        reason: &str,
        now: i64,
    ) -> CoreResult<ActionRecord>;
    /// Show the action on incident `to` too (no policy change).
    async fn link_action(
        &self,
        actor: &str,
        id: i64,
        to: i64,
        reason: &str,
        now: i64,
    ) -> CoreResult<ActionRecord>;
    /// The `(action_id, incident_id)` links of these actions.
    async fn links(&self, action_ids: &[i64]) -> CoreResult<Vec<(i64, i64)>>;
    async fn get_action(&self, id: i64) -> CoreResult<ActionRecord>;
    /// With `f.incident`: the incident's own actions and those linked to it.
    async fn list_actions(
        &self,
        f: &ActionFilter,
        now: i64,
    ) -> CoreResult<(Vec<ActionRecord>, i64)>;
    /// Record every active action whose expiry is at or before `now` as expired, in one
    /// policy version (actor `system`). Returns how many expired.
    async fn expire_due(&self, now: i64) -> CoreResult<usize>;
    async fn hits(&self, action_ids: &[i64]) -> CoreResult<Vec<HitRecord>>;
    /// The latest committed version, read from the database.
    async fn policy_version(&self) -> CoreResult<Version>;
    /// A delta when `0 < since < current`, else a snapshot.
    async fn policy(&self, since: Version) -> CoreResult<PolicyAnswer>;
    /// The latest committed version, updated after every commit that bumps it.
    fn watch_version(&self) -> watch::Receiver<Version>;
}

/// The audit chain (appending is part of every other store's writes).
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn audit(&self, f: &AuditFilter) -> CoreResult<Vec<AuditRecord>>;
    async fn verify_audit(&self) -> CoreResult<ChainReport>;
    /// The chain links (seq, prev_hash, hash) from `from_seq` to `to_seq` inclusive.
    async fn audit_links(&self, from_seq: i64, to_seq: i64) -> CoreResult<Vec<AuditLink>>;
}

/// What the edges send: reports (hit counts) and access-log evidence.
#[async_trait]
pub trait EdgeStore: Send + Sync {
    /// Count a report (nothing when `(edge_id, boot_id, seq)` was already counted); hits
    /// for rule ids no action ever had are returned, not counted.
    async fn record_report(&self, r: &EdgeReport, now: i64) -> CoreResult<ReportOutcome>;
    async fn list_edges(&self) -> CoreResult<Vec<EdgeRecord>>;
    /// Match and store access-log lines; idempotent per (incident, line hash).
    async fn ingest_evidence(
        &self,
        actor: &str,
        batch: &EvidenceBatch,
        now: i64,
    ) -> CoreResult<IngestOutcome>;
    /// Evidence of an incident in time order, after the row `after_id` (paging).
    async fn evidence(
        &self,
        incident_id: i64,
        after_id: i64,
        limit: i64,
    ) -> CoreResult<Vec<EvidenceRecord>>;
}

/// The incident record: notifications, post-mortems, deadline inputs, retention.
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Record a notification; refuses (listing every missing fact) a breach notification
    /// the incident lacks the facts for.
    async fn record_notification(
        &self,
        actor: &str,
        n: &NewNotification,
        now: i64,
    ) -> CoreResult<NotificationRecord>;
    async fn notifications(&self, incident_id: i64) -> CoreResult<Vec<NotificationRecord>>;
    /// Submit (first time) or revise the post-mortem.
    async fn submit_postmortem(
        &self,
        actor: &str,
        incident_id: i64,
        pm: &PostMortem,
        now: i64,
    ) -> CoreResult<PostMortemRecord>;
    async fn postmortem(&self, incident_id: i64) -> CoreResult<Option<PostMortemRecord>>;
    /// Deadline inputs of one incident, or of every incident.
    async fn deadline_facts(&self, incident: Option<i64>) -> CoreResult<Vec<IncidentDeadlines>>;
    /// Delete the records of incidents closed before `cutoff` (never younger than 5 years:
    /// the caller checks and the database refuses), keeping their audit events, and append
    /// an audit event for the purge.
    async fn purge(
        &self,
        actor: &str,
        cutoff: i64,
        older_than_years: u32,
        dry_run: bool,
        now: i64,
    ) -> CoreResult<PurgeReport>;
}

/// Alert intake: which incident an alert group opened.
#[async_trait]
pub trait IntakeStore: Send + Sync {
    /// A notification of `group`: the incident the group opened (its timeline says so),
    /// else (new group, or its incident closed) `new`, opened for it. Returns the incident
    /// and whether it was opened now.
    async fn intake_alert(
        &self,
        group: &crate::domain::intake::AlertGroup,
        new: &NewIncident,
        now: i64,
    ) -> CoreResult<(IncidentRecord, bool)>;
    /// The incident an alert group opened, if any.
    async fn intake_incident(&self, group_key: &str) -> CoreResult<Option<i64>>;
}

/// The organisation settings (one row).
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// What was set through the API (`None` fields: not set).
    async fn settings(&self) -> CoreResult<StoredSettings>;
    /// Apply `change` with its audit event (nothing when it changes nothing).
    async fn update_settings(
        &self,
        actor: &str,
        change: &SettingsChange,
        now: i64,
    ) -> CoreResult<StoredSettings>;
}

/// Everything the handlers need from storage: every aggregate's store, plus health.
#[async_trait]
pub trait Store:
    TokenStore
    + IncidentStore
    + ActionStore
    + AuditStore
    + EdgeStore
    + RecordStore
    + SettingsStore
    + IntakeStore
    + 'static
{
    async fn counts(&self) -> CoreResult<Counts>;
    /// Cheap liveness check of the database.
    async fn ping(&self) -> CoreResult<()>;
    /// Whether other processes (replicas) change this store too, so that what this process
    /// caches can be stale for as long as their change notification takes to arrive.
    fn replicated(&self) -> bool {
        false
    }
}
