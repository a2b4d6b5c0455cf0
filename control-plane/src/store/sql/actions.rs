//! [`ActionStore`] in SQL: containment actions and the policy versions they make.

use async_trait::async_trait;
use edge_policy::Version;
use sqlx::AnyConnection;
use tokio::sync::watch;

use super::{bump_version, rows, write_effects, Job, Sql, SqlStore};
use crate::domain::action::{GuardRails, NewAction};
use crate::domain::CoreResult;
use crate::domain::{containment, policy};
use crate::store::{
    ActionFilter, ActionRecord, ActionStatus, ActionStore, HitRecord, PolicyAnswer,
};

/// Record that `version` changed `action_id`: the change log deltas are computed from. Every
/// write that bumps the policy version for an action goes through here.
pub(super) async fn record_policy_change(
    c: &mut AnyConnection,
    version: i64,
    action_id: i64,
) -> CoreResult<()> {
    sqlx::query("INSERT INTO policy_changes (version, action_id) VALUES ($1, $2)")
        .bind(version)
        .bind(action_id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Write the end of an action (lift or expiry) as [`containment`] decided it.
async fn write_end(c: &mut AnyConnection, a: &ActionRecord) -> CoreResult<()> {
    sqlx::query(
        "UPDATE actions SET state = $1, ended_at = $2, ended_by = $3, end_reason = $4, ended_version = $5 WHERE id = $6",
    )
    .bind(a.state.as_str())
    .bind(a.ended_at)
    .bind(&a.ended_by)
    .bind(&a.end_reason)
    .bind(a.ended_version)
    .bind(a.id)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Mark every due active action expired as part of `version`. Returns how many.
async fn sweep_expired(c: &mut AnyConnection, now: i64, version: i64) -> CoreResult<usize> {
    let due = sqlx::query(
        "SELECT * FROM actions WHERE state = 'active' AND expires_at IS NOT NULL AND expires_at <= $1 ORDER BY id",
    )
    .bind(now)
    .fetch_all(&mut *c)
    .await?;
    for row in &due {
        let before = rows::action(row)?;
        let (after, writes) = containment::expired(&before, version, now);
        write_end(c, &after).await?;
        record_policy_change(c, version, after.id).await?;
        write_effects(c, writes, now).await?;
    }
    Ok(due.len())
}

/// The live (active, not yet expired) actions of an incident, oldest first.
pub(super) async fn live_actions(
    c: &mut AnyConnection,
    incident_id: i64,
    now: i64,
) -> CoreResult<Vec<ActionRecord>> {
    Ok(
        sqlx::query(
            "SELECT * FROM actions WHERE incident_id = $1 AND state = 'active' ORDER BY id",
        )
        .bind(incident_id)
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(rows::action)
        .collect::<CoreResult<Vec<_>>>()?
        .into_iter()
        .filter(|a| a.status(now) == ActionStatus::Active)
        .collect(),
    )
}

/// Lift `actions` (checked live by the caller) in one new policy version; returns the
/// version and the lifted rows.
pub(super) async fn lift_many(
    c: &mut AnyConnection,
    actions: &[ActionRecord],
    actor: &str,
    reason: &str,
    now: i64,
) -> CoreResult<(i64, Vec<ActionRecord>)> {
    let version = bump_version(c).await?;
    sweep_expired(c, now, version).await?;
    let mut lifted = Vec::with_capacity(actions.len());
    for before in actions {
        let (after, writes) = containment::lifted(before, actor, reason, version, now);
        write_end(c, &after).await?;
        record_policy_change(c, version, after.id).await?;
        write_effects(c, writes, now).await?;
        lifted.push(after);
    }
    Ok((version, lifted))
}

#[async_trait]
impl ActionStore for SqlStore {
    async fn create_action(
        &self,
        actor: &str,
        new: &NewAction,
        rails: GuardRails,
        now: i64,
    ) -> CoreResult<ActionRecord> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let incident = rows::get_incident(c, new.incident_id).await?;
        let candidates = sqlx::query(
            "SELECT * FROM actions WHERE state = 'active' AND (expires_at IS NULL OR expires_at > $1)
             AND (target_key = $2 OR kind = 'allow')",
        )
        .bind(now)
        .bind(new.target_key())
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(rows::action)
        .collect::<CoreResult<Vec<_>>>()?;
        containment::check_create(&incident, new, &candidates, rails, now)?;

        let version = bump_version(c).await?;
        sweep_expired(c, now, version).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO actions (incident_id, kind, target_type, target_value, isolation, target_key, mode, reason,
                forced, created_at, created_by, created_version, expires_at, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'active') RETURNING id",
        )
        .bind(new.incident_id)
        .bind(new.kind.as_str())
        .bind(new.target.ty)
        .bind(&new.target.value)
        .bind(new.isolation.map(|i| i.as_str()))
        .bind(new.target_key())
        .bind(new.mode.as_str())
        .bind(&new.reason)
        .bind(i64::from(new.force))
        .bind(now)
        .bind(actor)
        .bind(version)
        .bind(new.expires_at_ms)
        .fetch_one(&mut *c)
        .await?;
        record_policy_change(c, version, id).await?;
        let rec = rows::get_action(c, id).await?;
        write_effects(c, containment::created(&rec, new, version, actor), now).await?;
        self.commit(w, Some(version)).await?;
        Ok(rec)
    }

    async fn lift_action(
        &self,
        actor: &str,
        id: i64,
        reason: &str,
        now: i64,
    ) -> CoreResult<ActionRecord> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let before = rows::get_action(c, id).await?;
        containment::check_lift(&before, now)?;
        let (version, mut lifted) = lift_many(c, &[before], actor, reason, now).await?;
        self.commit(w, Some(version)).await?;
        Ok(lifted.remove(0))
    }

    async fn lift_all(
        &self,
        actor: &str,
        incident_id: i64,
        reason: &str,
        now: i64,
    ) -> CoreResult<Vec<ActionRecord>> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        rows::get_incident(c, incident_id).await?;
        let live = live_actions(c, incident_id, now).await?;
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let (version, lifted) = lift_many(c, &live, actor, reason, now).await?;
        self.commit(w, Some(version)).await?;
        Ok(lifted)
    }

    async fn move_action(
        &self,
        actor: &str,
        id: i64,
        to: i64,
        reason: &str,
        now: i64,
    ) -> CoreResult<ActionRecord> {
        self.refile(actor, id, to, reason, false, now).await
    }

    async fn link_action(
        &self,
        actor: &str,
        id: i64,
        to: i64,
        reason: &str,
        now: i64,
    ) -> CoreResult<ActionRecord> {
        self.refile(actor, id, to, reason, true, now).await
    }

    async fn links(&self, action_ids: &[i64]) -> CoreResult<Vec<(i64, i64)>> {
        SqlStore::links(self, action_ids).await
    }

    async fn get_action(&self, id: i64) -> CoreResult<ActionRecord> {
        rows::get_action(&mut *self.pool.acquire().await?, id).await
    }

    async fn list_actions(
        &self,
        f: &ActionFilter,
        now: i64,
    ) -> CoreResult<(Vec<ActionRecord>, i64)> {
        let filter = |q: &mut Sql| {
            q.push(" WHERE 1 = 1");
            if let Some(i) = f.incident {
                q.push(" AND (incident_id = ")
                    .push_bind(i)
                    .push(" OR id IN (SELECT action_id FROM action_links WHERE incident_id = ")
                    .push_bind(i)
                    .push("))");
            }
            match f.status {
                None => {}
                Some(ActionStatus::Active) => {
                    q.push(" AND state = 'active' AND (expires_at IS NULL OR expires_at > ")
                        .push_bind(now)
                        .push(")");
                }
                Some(ActionStatus::Lifted) => {
                    q.push(" AND state = 'lifted'");
                }
                Some(ActionStatus::Expired) => {
                    q.push(" AND (state = 'expired' OR (state = 'active' AND expires_at <= ")
                        .push_bind(now)
                        .push("))");
                }
            }
        };
        let mut q = Sql::new("SELECT COUNT(*) FROM actions");
        filter(&mut q);
        let total: i64 = q.build_query_scalar().fetch_one(&self.pool).await?;
        let mut q = Sql::new("SELECT * FROM actions");
        filter(&mut q);
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(f.limit)
            .push(" OFFSET ")
            .push_bind(f.offset);
        let rows = q.build().fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(rows::action)
            .collect::<CoreResult<Vec<_>>>()?;
        Ok((items, total))
    }

    async fn expire_due(&self, now: i64) -> CoreResult<usize> {
        // Cheap check outside the writer lock first: most ticks find nothing.
        let due: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM actions WHERE state = 'active' AND expires_at IS NOT NULL AND expires_at <= $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        if due == 0 {
            return Ok(0);
        }
        // One replica sweeps at a time; the others find the job taken and skip this tick.
        let Some(mut w) = self.begin_job(Job::ExpirySweep).await? else {
            return Ok(0);
        };
        let c = &mut *w.tx;
        let version = bump_version(c).await?;
        let n = sweep_expired(c, now, version).await?;
        if n == 0 {
            // Someone else swept them first; roll back so the version is not bumped.
            return Ok(0);
        }
        self.commit(w, Some(version)).await?;
        Ok(n)
    }

    async fn hits(&self, action_ids: &[i64]) -> CoreResult<Vec<HitRecord>> {
        let mut out = Vec::new();
        for chunk in action_ids.chunks(500) {
            let mut q =
                Sql::new("SELECT action_id, edge_id, count FROM action_hits WHERE action_id IN (");
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            q.push(") ORDER BY action_id, edge_id");
            let rows: Vec<(i64, String, i64)> = q.build_query_as().fetch_all(&self.pool).await?;
            out.extend(
                rows.into_iter()
                    .map(|(action_id, edge_id, count)| HitRecord {
                        action_id,
                        edge_id,
                        count,
                    }),
            );
        }
        Ok(out)
    }

    async fn policy_version(&self) -> CoreResult<Version> {
        Ok(super::read_version(&self.pool).await? as Version)
    }

    async fn policy(&self, since: Version) -> CoreResult<PolicyAnswer> {
        // One read transaction: the version and the rules come from the same snapshot.
        let mut tx = self.begin_read().await?;
        let (current, floor): (i64, i64) =
            sqlx::query_as("SELECT version, min_delta_since FROM policy_state WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
        let current = current as Version;
        let answer = if policy::answers_with_delta(since, current, floor as Version) {
            let changed = sqlx::query(
                "SELECT * FROM actions WHERE id IN (SELECT action_id FROM policy_changes WHERE version > $1) ORDER BY id",
            )
            .bind(since as i64)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(rows::action)
            .collect::<CoreResult<Vec<_>>>()?;
            PolicyAnswer::Delta(policy::delta(since, current, &changed)?)
        } else {
            let active = sqlx::query("SELECT * FROM actions WHERE state = 'active' ORDER BY id")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(rows::action)
                .collect::<CoreResult<Vec<_>>>()?;
            PolicyAnswer::Snapshot(policy::snapshot(current, &active)?)
        };
        tx.commit().await?;
        Ok(answer)
    }

    fn watch_version(&self) -> watch::Receiver<Version> {
        self.version_tx.subscribe()
    }
}
