//! [`SettingsStore`] in SQL: the one `org_settings` row.

use async_trait::async_trait;
use sqlx::Row;

use super::{append_audit, SqlStore};
use crate::domain::settings::{self, SettingsChange, StoredSettings};
use crate::domain::CoreResult;
use crate::store::SettingsStore;

async fn load(c: &mut sqlx::AnyConnection) -> CoreResult<StoredSettings> {
    let row = sqlx::query("SELECT * FROM org_settings WHERE id = 1")
        .fetch_optional(&mut *c)
        .await?;
    Ok(match row {
        None => StoredSettings::default(),
        Some(r) => StoredSettings {
            company_name: r.try_get("company_name")?,
            dpo_contact: r.try_get("dpo_contact")?,
            security_mailbox: r.try_get("security_mailbox")?,
            updated_at: Some(r.try_get("updated_at")?),
            updated_by: Some(r.try_get("updated_by")?),
        },
    })
}

#[async_trait]
impl SettingsStore for SqlStore {
    async fn settings(&self) -> CoreResult<StoredSettings> {
        load(&mut *self.pool.acquire().await?).await
    }

    async fn update_settings(
        &self,
        actor: &str,
        change: &SettingsChange,
        now: i64,
    ) -> CoreResult<StoredSettings> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let before = load(c).await?;
        let Some((after, event)) = settings::apply(&before, change, actor, now) else {
            return Ok(before);
        };
        sqlx::query(
            "INSERT INTO org_settings (id, company_name, dpo_contact, security_mailbox, updated_at, updated_by)
             VALUES (1, $1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET company_name = excluded.company_name,
                dpo_contact = excluded.dpo_contact, security_mailbox = excluded.security_mailbox,
                updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(&after.company_name)
        .bind(&after.dpo_contact)
        .bind(&after.security_mailbox)
        .bind(now)
        .bind(actor)
        .execute(&mut *c)
        .await?;
        append_audit(c, event, now).await?;
        self.commit(w, None).await?;
        Ok(after)
    }
}
