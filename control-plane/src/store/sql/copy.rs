//! `control-plane copy`: move every row of one store into another, empty one (SQLite to
//! PostgreSQL when a deployment outgrows one machine), keeping ids, versions and the audit
//! chain's hashes, so `/v1/audit/verify` and every export give the same answers afterwards.
//!
//! The rows are copied as stored: nothing is re-decided or re-hashed. The target is written
//! in one transaction (all or nothing) and refused unless it is empty.

use std::collections::BTreeMap;

use futures_util::TryStreamExt as _;
use sqlx::any::AnyRow;
use sqlx::{Any, Column, Row, Transaction, ValueRef};

use super::{Backend, SqlStore};
use crate::domain::{CoreError, CoreResult};

/// Every table, parents before children (foreign keys), with the columns it is ordered by.
const TABLES: [(&str, &str); 15] = [
    ("tokens", "id"),
    ("signing_keys", "key_id"),
    ("incidents", "id"),
    ("timeline", "id"),
    ("actions", "id"),
    ("policy_changes", "version, action_id"),
    ("audit", "seq"),
    ("edges", "edge_id"),
    ("edge_reports_seen", "edge_id, boot_id, seq"),
    ("action_hits", "action_id, edge_id"),
    ("notifications", "id"),
    ("postmortems", "incident_id"),
    ("evidence", "id"),
    ("org_settings", "id"),
    ("action_links", "action_id, incident_id"),
];

/// Tables whose `id` the database assigns (PostgreSQL: an identity to move past the copy).
const IDENTITY_TABLES: [&str; 6] = [
    "tokens",
    "incidents",
    "timeline",
    "actions",
    "notifications",
    "evidence",
];

/// Rows copied per table.
pub type CopyReport = BTreeMap<String, u64>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Blob,
}

/// Copy everything in `from` into `to`, which must be empty.
pub async fn copy_all(from: &SqlStore, to: &SqlStore) -> CoreResult<CopyReport> {
    let mut tx = to.pool.begin().await?;
    for (table, _) in TABLES {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            return Err(CoreError::conflict(
                "to",
                format!("the target database is not empty ({table} has {n} rows); copy only into a new database"),
            ));
        }
    }
    let mut report = CopyReport::new();
    for (table, order) in TABLES {
        let kinds = column_kinds(&mut tx, to.backend, table).await?;
        let select = format!("SELECT * FROM {table} ORDER BY {order}");
        let mut rows = sqlx::query(&select).fetch(&from.pool);
        let mut n = 0u64;
        while let Some(row) = rows.try_next().await? {
            insert(&mut tx, table, &kinds, &row).await?;
            n += 1;
        }
        report.insert(table.to_string(), n);
    }
    let (version, floor): (i64, i64) =
        sqlx::query_as("SELECT version, min_delta_since FROM policy_state WHERE id = 1")
            .fetch_one(&from.pool)
            .await?;
    sqlx::query("UPDATE policy_state SET version = $1, min_delta_since = $2 WHERE id = 1")
        .bind(version)
        .bind(floor)
        .execute(&mut *tx)
        .await?;
    if to.backend == Backend::Postgres {
        for table in IDENTITY_TABLES {
            // The next id the database assigns comes after the copied ones.
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            ))
            .execute(&mut *tx)
            .await?;
        }
    }
    // (SQLite's AUTOINCREMENT moves past an explicitly inserted id by itself.)
    tx.commit().await?;
    Ok(report)
}

/// The target's column types, by column name.
async fn column_kinds(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    table: &str,
) -> CoreResult<BTreeMap<String, Kind>> {
    let rows: Vec<(String, String)> = match backend {
        Backend::Postgres => {
            sqlx::query_as(
                "SELECT column_name::TEXT, data_type::TEXT FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1",
            )
            .bind(table)
            .fetch_all(&mut **tx)
            .await?
        }
        Backend::Sqlite => {
            sqlx::query_as("SELECT name, type FROM pragma_table_info($1)")
                .bind(table)
                .fetch_all(&mut **tx)
                .await?
        }
    };
    rows.into_iter()
        .map(|(name, ty)| {
            let ty = ty.to_ascii_lowercase();
            let kind = if ty.contains("int") {
                Kind::Int
            } else if ty.contains("blob") || ty.contains("bytea") {
                Kind::Blob
            } else if ty.contains("text") {
                Kind::Text
            } else {
                return Err(CoreError::Internal(format!(
                    "copy: column {table}.{name} has an unexpected type {ty}"
                )));
            };
            Ok((name, kind))
        })
        .collect()
}

async fn insert(
    tx: &mut Transaction<'static, Any>,
    table: &str,
    kinds: &BTreeMap<String, Kind>,
    row: &AnyRow,
) -> CoreResult<()> {
    let columns: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        columns.join(", "),
        placeholders.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for (i, name) in columns.iter().enumerate() {
        let kind = *kinds.get(*name).ok_or_else(|| {
            CoreError::Internal(format!("copy: the target has no column {table}.{name}"))
        })?;
        let null = row.try_get_raw(i)?.is_null();
        q = match (kind, null) {
            (Kind::Int, true) => q.bind(None::<i64>),
            (Kind::Text, true) => q.bind(None::<String>),
            (Kind::Blob, true) => q.bind(None::<Vec<u8>>),
            (Kind::Int, false) => q.bind(row.try_get::<i64, _>(i)?),
            (Kind::Text, false) => q.bind(row.try_get::<String, _>(i)?),
            (Kind::Blob, false) => q.bind(row.try_get::<Vec<u8>, _>(i)?),
        };
    }
    q.execute(&mut **tx).await?;
    Ok(())
}
