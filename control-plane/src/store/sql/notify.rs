//! How PostgreSQL replicas learn of each other's commits: a commit that bumps the policy
//! version or changes tokens sends a notification (`pg_notify`, delivered when the
//! transaction commits, never for one rolled back); every replica listens on its own
//! connection and wakes its long-polls or clears its token cache.
//!
//! A notification can be lost when the listening connection drops; the listener then treats
//! everything as changed (re-reads the version, clears the token cache) once it has
//! reconnected, and a second task re-reads the version every
//! [`super::VERSION_CHECK_INTERVAL`] whatever happens to the listener.

use std::sync::Arc;
use std::time::Duration;

use edge_policy::Version;
use sqlx::postgres::PgListener;
use sqlx::AnyConnection;
use sqlx::AnyPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{publish, read_version, VERSION_CHECK_INTERVAL};
use crate::domain::{CoreError, CoreResult};

/// Channel of policy version changes; the payload is the new version.
const POLICY: &str = "edge_containment_policy";
/// Channel of token changes (a revocation must apply on every replica at once).
const TOKENS: &str = "edge_containment_tokens";

/// Stops the listener tasks when dropped.
pub(crate) struct ListenerGuard(Vec<JoinHandle<()>>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

pub(crate) async fn policy_changed(c: &mut AnyConnection, version: i64) -> CoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(POLICY)
        .bind(version.to_string())
        .execute(c)
        .await?;
    Ok(())
}

pub(crate) async fn tokens_changed(c: &mut AnyConnection) -> CoreResult<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(TOKENS)
        .execute(c)
        .await?;
    Ok(())
}

/// Start listening (the first connection must succeed, later losses are recovered).
pub(crate) async fn listen(
    url: &str,
    pool: AnyPool,
    version: Arc<watch::Sender<Version>>,
    tokens: Arc<watch::Sender<u64>>,
) -> CoreResult<ListenerGuard> {
    let mut listener = PgListener::connect(url)
        .await
        .map_err(|e| CoreError::Unavailable(format!("listening for changes: {e}")))?;
    listener.listen_all([POLICY, TOKENS]).await?;
    let (pool2, version2) = (pool.clone(), version.clone());
    let notifications = tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.channel() == POLICY => {
                    if let Ok(v) = n.payload().parse::<Version>() {
                        publish(&version, v);
                    }
                }
                Ok(Some(_)) => tokens.send_modify(|g| *g += 1),
                Ok(None) => {
                    // The connection dropped (the next call reconnects): whatever was sent
                    // meanwhile is lost, so assume everything changed.
                    tracing::warn!("change notifications interrupted; resynchronising");
                    tokens.send_modify(|g| *g += 1);
                    if let Ok(v) = read_version(&pool).await {
                        publish(&version, v as Version);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listening for changes failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    let checks = tokio::spawn(async move {
        let mut tick = tokio::time::interval(VERSION_CHECK_INTERVAL);
        loop {
            tick.tick().await;
            if let Ok(v) = read_version(&pool2).await {
                publish(&version2, v as Version);
            }
        }
    });
    Ok(ListenerGuard(vec![notifications, checks]))
}
