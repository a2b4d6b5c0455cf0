//! [`TokenStore`] in SQL: API tokens and the policy signing keys.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;

use super::{append_audit, rows, SqlStore};
use crate::domain::signing::{self, SigningKeyRecord};
use crate::domain::token::Role;
use crate::domain::token_rules;
use crate::domain::{CoreError, CoreResult};
use crate::store::{AuthToken, TokenRecord, TokenStore};

fn key(row: &AnyRow) -> CoreResult<SigningKeyRecord> {
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

async fn all(c: &mut AnyConnection) -> CoreResult<Vec<SigningKeyRecord>> {
    sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, key_id")
        .fetch_all(c)
        .await?
        .iter()
        .map(key)
        .collect()
}

#[async_trait]
impl TokenStore for SqlStore {
    async fn create_token(
        &self,
        actor: &str,
        name: &str,
        role: Role,
        hash: [u8; 32],
        only_if_none: bool,
        now: i64,
    ) -> CoreResult<TokenRecord> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL")
            .fetch_one(&mut *c)
            .await?;
        let same_name: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tokens WHERE name = $1 AND revoked_at IS NULL",
        )
        .bind(name)
        .fetch_one(&mut *c)
        .await?;
        token_rules::check_create(live, same_name, only_if_none, name)?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tokens (name, role, hash, created_at, created_by) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(&hash[..])
        .bind(now)
        .bind(actor)
        .fetch_one(&mut *c)
        .await?;
        let row = sqlx::query("SELECT * FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *c)
            .await?;
        let rec = rows::token(&row)?;
        let event = token_rules::created(&rec, actor);
        append_audit(c, event, now).await?;
        self.commit(w, None).await?;
        Ok(rec)
    }

    async fn find_token(&self, hash: &[u8; 32]) -> CoreResult<Option<AuthToken>> {
        let row =
            sqlx::query("SELECT id, name, role, hash, revoked_at FROM tokens WHERE hash = $1")
                .bind(&hash[..])
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get("role")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        Ok(Some(AuthToken {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            role: role.parse().map_err(CoreError::Internal)?,
            hash: row.try_get("hash")?,
            revoked: revoked_at.is_some(),
        }))
    }

    async fn list_tokens(&self) -> CoreResult<Vec<TokenRecord>> {
        let rows = sqlx::query("SELECT * FROM tokens ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::token).collect()
    }

    async fn revoke_token(&self, actor: &str, id: i64, now: i64) -> CoreResult<TokenRecord> {
        let mut w = self.begin_write().await?;
        let c = &mut *w.tx;
        let row = sqlx::query("SELECT * FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
            .ok_or_else(|| CoreError::not_found("token", id))?;
        let before = rows::token(&row)?;
        let (after, event) = token_rules::revoke(&before, actor, now)?;
        sqlx::query("UPDATE tokens SET revoked_at = $1, revoked_by = $2 WHERE id = $3")
            .bind(after.revoked_at)
            .bind(&after.revoked_by)
            .bind(id)
            .execute(&mut *c)
            .await?;
        append_audit(c, event, now).await?;
        self.tokens_changed(&mut w).await?;
        self.commit(w, None).await?;
        self.tokens_tx.send_modify(|g| *g += 1);
        Ok(after)
    }

    fn watch_tokens(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tokens_tx.subscribe()
    }

    async fn signing_keys(&self) -> CoreResult<Vec<SigningKeyRecord>> {
        let mut c = self.pool.acquire().await?;
        all(&mut c).await
    }

    async fn add_signing_key(
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
            sqlx::query("UPDATE signing_keys SET retire_at = $1 WHERE key_id = $2")
                .bind(k.retire_at)
                .bind(&k.key_id)
                .execute(&mut *c)
                .await?;
        }
        sqlx::query(
            "INSERT INTO signing_keys (key_id, secret, created_at, retire_at) VALUES ($1, $2, $3, NULL)",
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
