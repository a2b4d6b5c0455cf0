//! Policy signing keys.

use sqlx::Row;

use super::{append_audit, SqliteStore};
use crate::domain::signing::{self, SigningKeyRecord};
use crate::domain::token_rules;
use crate::domain::{CoreError, CoreResult};

fn key(row: &sqlx::sqlite::SqliteRow) -> CoreResult<SigningKeyRecord> {
    let secret: Vec<u8> = row.try_get("secret")?;
    let secret: [u8; 32] = secret
        .as_slice()
        .try_into()
        .map_err(|_| CoreError::Internal("a signing key secret is not 32 bytes".into()))?;
    let mut k = SigningKeyRecord::new(secret, row.try_get("created_at")?);
    let stored: String = row.try_get("key_id")?;
    if stored != k.key_id {
        return Err(CoreError::Internal(format!(
            "signing key {stored} does not match its secret"
        )));
    }
    k.retire_at = row.try_get("retire_at")?;
    Ok(k)
}

async fn all(c: &mut sqlx::SqliteConnection) -> CoreResult<Vec<SigningKeyRecord>> {
    sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, key_id")
        .fetch_all(c)
        .await?
        .iter()
        .map(key)
        .collect()
}

impl SqliteStore {
    pub(crate) async fn signing_keys_impl(&self) -> CoreResult<Vec<SigningKeyRecord>> {
        let mut c = self.pool.acquire().await?;
        all(&mut c).await
    }

    pub(crate) async fn add_signing_key_impl(
        &self,
        actor: &str,
        new: SigningKeyRecord,
        overlap_ms: i64,
        only_if_none: bool,
        now: i64,
    ) -> CoreResult<Vec<SigningKeyRecord>> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let existing = all(&mut *c).await?;
        if only_if_none && !existing.is_empty() {
            return Ok(existing);
        }
        let plan = signing::rotate(&existing, new, now, overlap_ms)?;
        for k in &plan.retiring {
            sqlx::query("UPDATE signing_keys SET retire_at = ? WHERE key_id = ?")
                .bind(k.retire_at)
                .bind(&k.key_id)
                .execute(&mut *c)
                .await?;
        }
        sqlx::query(
            "INSERT INTO signing_keys (key_id, secret, created_at, retire_at) VALUES (?, ?, ?, NULL)",
        )
        .bind(&plan.new.key_id)
        .bind(&plan.new.secret[..])
        .bind(plan.new.created_at)
        .execute(&mut *c)
        .await?;
        let event = token_rules::key_added(&plan, actor);
        append_audit(c, event, now).await?;
        let keys = all(&mut *c).await?;
        self.commit(w, None).await?;
        Ok(keys)
    }
}
