//! Moving and linking actions between incidents (see [`crate::domain::refile`]).

use sqlx::AnyConnection;

use super::{bump_version, rows, write_effects, Sql, SqlStore};
use crate::domain::refile;
use crate::domain::CoreResult;
use crate::store::{ActionRecord, ActionStatus};

/// The incidents `action_id` is linked to.
async fn links_of(c: &mut AnyConnection, action_id: i64) -> CoreResult<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT incident_id FROM action_links WHERE action_id = $1 ORDER BY incident_id",
    )
    .bind(action_id)
    .fetch_all(&mut *c)
    .await?)
}

impl SqlStore {
    pub(super) async fn refile(
        &self,
        actor: &str,
        id: i64,
        to: i64,
        reason: &str,
        link: bool,
        now: i64,
    ) -> CoreResult<ActionRecord> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let before = rows::get_action(c, id).await?;
        let target = rows::get_incident(c, to).await?;
        let links = links_of(c, id).await?;
        refile::check(&before, &target, &links, link)?;
        if link {
            sqlx::query(
                "INSERT INTO action_links (action_id, incident_id, linked_at, linked_by, reason) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(to)
            .bind(now)
            .bind(actor)
            .bind(reason)
            .execute(&mut *c)
            .await?;
            write_effects(c, refile::linked(&before, to, actor, reason, now), now).await?;
            self.commit(w, None).await?;
            return Ok(before);
        }
        let (after, writes) = refile::moved(&before, to, actor, reason, now);
        sqlx::query("UPDATE actions SET incident_id = $1 WHERE id = $2")
            .bind(to)
            .bind(id)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM action_links WHERE action_id = $1 AND incident_id = $2")
            .bind(id)
            .bind(to)
            .execute(&mut *c)
            .await?;
        write_effects(c, writes, now).await?;
        // A live rule carries its incident (edges log it): the next version re-sends the
        // rule with the new one. A delta replaces it in one step, so enforcement never stops.
        let mut version = None;
        if after.status(now) == ActionStatus::Active {
            let v = bump_version(c).await?;
            super::actions::record_policy_change(c, v, id).await?;
            version = Some(v);
        }
        self.commit(w, version).await?;
        Ok(after)
    }

    /// `(action_id, incident_id)` links of these actions.
    pub(super) async fn links(&self, action_ids: &[i64]) -> CoreResult<Vec<(i64, i64)>> {
        let mut out = Vec::new();
        for chunk in action_ids.chunks(500) {
            let mut q =
                Sql::new("SELECT action_id, incident_id FROM action_links WHERE action_id IN (");
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            q.push(") ORDER BY action_id, incident_id");
            out.extend(
                q.build_query_as::<(i64, i64)>()
                    .fetch_all(&self.pool)
                    .await?,
            );
        }
        Ok(out)
    }
}
