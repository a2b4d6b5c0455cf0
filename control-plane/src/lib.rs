//! Edge containment control plane: incidents, containment actions, an append-only
//! hash-chained audit log, and the policy sync API the edge filter calls.
//!
//! [`app`] builds the router from an [`AppState`]; [`serve`] runs it with graceful
//! shutdown and the expiry task. `main.rs` only calls [`cli::main`].

pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod domain;
pub mod error;
pub mod expiry;
pub mod extract;
pub mod json;
pub mod json_de;
pub mod metrics;
pub mod policy_feed;
pub mod record;
pub mod schema_items;
pub mod server;
pub mod signing;
pub mod store;
pub mod token_cache;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::domain::action::GuardRails;
use crate::domain::deadline::Holidays;
use crate::store::Store;

/// Default of [`Settings::policy_wake_interval`] (`--policy-wake-interval-ms`).
pub const DEFAULT_POLICY_WAKE_INTERVAL_MS: u64 = 250;
/// Default of [`Settings::token_cache_ttl`] (`--token-cache-ttl-ms`).
pub const DEFAULT_TOKEN_CACHE_TTL_MS: u64 = 5000;

/// Settings the handlers need.
#[derive(Clone, Debug)]
pub struct Settings {
    pub rails: GuardRails,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How often the expiry task looks for due actions.
    pub expiry_interval: Duration,
    /// Days the post-mortem deadline skips besides weekends.
    pub holidays: Holidays,
    /// The organisation settings' defaults (start-up flags): company name, DPO contact,
    /// security mailbox. Values set through `PATCH /v1/settings` take precedence.
    pub org: domain::settings::OrgSettings,
    /// How Alertmanager notifications map to incidents (`--intake-config`).
    pub intake: domain::intake::IntakeConfig,
    /// Largest accepted access-log batch (`POST /v1/evidence/access-logs`), in bytes.
    pub max_evidence_bytes: usize,
    /// Waiting long-polls are woken at most once per this interval: the first commit after a
    /// quiet interval at once, later ones together at the interval's end (zero: every commit).
    pub policy_wake_interval: Duration,
    /// How long a successful token check is reused without asking the database (zero: never).
    /// Revocations through this process apply at once; this bounds the others.
    pub token_cache_ttl: Duration,
    /// Connection limits of the API listener (timeouts, connection cap, header limits).
    pub conn: server::ConnLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rails: GuardRails::default(),
            max_body_bytes: 1 << 20,
            expiry_interval: Duration::from_secs(1),
            holidays: Holidays::default(),
            org: domain::settings::OrgSettings::default(),
            intake: domain::intake::IntakeConfig::default(),
            max_evidence_bytes: 8 << 20,
            policy_wake_interval: Duration::from_millis(DEFAULT_POLICY_WAKE_INTERVAL_MS),
            token_cache_ttl: Duration::from_millis(DEFAULT_TOKEN_CACHE_TTL_MS),
            conn: server::ConnLimits::default(),
        }
    }
}

/// Everything a handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<Settings>,
    pub metrics: Arc<metrics::Metrics>,
    /// The edge policy as served: committed version, coalesced wake-ups, cached answers.
    pub policy: Arc<policy_feed::PolicyFeed>,
    /// Seals every policy answer with the store's signing keys.
    pub signer: Arc<signing::Signer>,
    /// Successful token checks, reused for `token_cache_ttl`.
    pub tokens: Arc<token_cache::TokenCache>,
    /// Becomes `true` when the server shuts down (long-polls answer at once).
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// The organisation settings in effect: what was set through the API, else the flags.
    pub async fn org_settings(&self) -> domain::CoreResult<domain::settings::OrgSettings> {
        let stored = self.store.settings().await?;
        Ok(domain::settings::OrgSettings::effective(
            &stored,
            &self.settings.org,
        ))
    }

    /// State with a fresh metrics registry. Returns the sender that signals shutdown.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> (AppState, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let metrics = Arc::new(metrics::Metrics::new());
        let policy = Arc::new(policy_feed::PolicyFeed::new(
            store.clone(),
            settings.policy_wake_interval,
            &metrics,
        ));
        let tokens = Arc::new(token_cache::TokenCache::new(
            settings.token_cache_ttl,
            token_cache::TOKEN_CACHE_CAPACITY,
        ));
        let signer = Arc::new(signing::Signer::new(store.clone(), clock.clone()));
        let state = AppState {
            store,
            clock,
            signer,
            settings: Arc::new(settings),
            metrics,
            policy,
            tokens,
            shutdown: rx,
        };
        (state, tx)
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// The router: every API route, `/healthz`, `/metrics` and `/openapi.json`.
pub fn app(state: AppState) -> Router {
    api::router(state)
}

/// Serve on `listener` until `shutdown` becomes true, running the expiry task alongside,
/// under the connection limits of `state.settings.conn` (see [`server`]). In-flight
/// requests finish; long-polls answer 304 at once.
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    let expiry = tokio::spawn(expiry::run(state.clone()));
    let revocations = tokio::spawn(clear_tokens_on_change(state.clone()));
    let router = app(state.clone());
    server::run(listener, router, &state).await;
    expiry.abort();
    revocations.abort();
    Ok(())
}

/// Clear the token cache whenever the store says tokens changed (on PostgreSQL, a
/// revocation made on any replica), so a revoked token is refused here on its next request.
async fn clear_tokens_on_change(state: AppState) {
    let mut changes = state.store.watch_tokens();
    while changes.changed().await.is_ok() {
        state.tokens.invalidate();
    }
}
