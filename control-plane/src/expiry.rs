//! The background task that records expired actions, so the next policy version omits them.

use crate::AppState;

/// Run until shutdown: every `expiry_interval`, expire due actions (one version bump per
/// sweep, audited as actor `system`). Errors are logged and retried on the next tick.
pub async fn run(state: AppState) {
    let mut shutdown = state.shutdown.clone();
    let mut tick = tokio::time::interval(state.settings.expiry_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match state.store.expire_due(state.now_ms()).await {
            Ok(0) => {}
            Ok(n) => {
                state.metrics.actions_expired.inc_by(n as u64);
                tracing::info!(
                    expired = n,
                    "expired containment actions removed from policy"
                );
            }
            Err(e) => tracing::error!(error = %e, "expiry sweep failed"),
        }
    }
}
