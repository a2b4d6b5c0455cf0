//! Core logic: validation, guard rails, the audit hash, and every decision a store change
//! makes (`*_rules`, `containment`): pure functions that take what was loaded and return what
//! must be written. Knows nothing about HTTP or SQL.

pub mod action;
pub mod audit;
pub mod containment;
pub mod deadline;
pub mod edge_record;
pub mod effects;
pub mod evidence;
pub mod facts;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod incident;
pub mod incident_rules;
pub mod intake;
pub mod lookup;
pub mod notification;
pub mod policy;
pub mod postmortem;
pub mod record_rules;
pub mod records;
pub mod refile;
pub mod settings;
pub mod signing;
pub mod target;
pub mod token;
pub mod token_rules;

use std::fmt;

/// Why a core operation was refused. The HTTP boundary picks the status code.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Input that does not make sense, naming the field (`target.cidr`, `expires_in`, ...).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Several fields are not valid: each `(field, message)`, in the order checked.
    #[error("{}", .0.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "))]
    InvalidMany(Vec<(String, String)>),
    /// A guard rail refused the change; `force: true` (with a reason) overrides it.
    #[error("{field}: {message}")]
    GuardRail { field: String, message: String },
    /// The object does not exist.
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The change conflicts with the current state (duplicate target, already lifted, ...).
    #[error("{field}: {message}")]
    Conflict { field: String, message: String },
    /// A document or notification needs facts the incident does not have yet; every
    /// missing one is named.
    #[error("missing facts: {}", .0.join(", "))]
    MissingFacts(Vec<String>),
    /// The database cannot be reached now (connection lost, pool exhausted, server
    /// shutting down): the change was not made and may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A storage or internal failure. The message is logged, never sent to clients.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    pub fn invalid(field: impl Into<String>, message: impl fmt::Display) -> Self {
        CoreError::Invalid {
            field: field.into(),
            message: message.to_string(),
        }
    }
    pub fn conflict(field: impl Into<String>, message: impl fmt::Display) -> Self {
        CoreError::Conflict {
            field: field.into(),
            message: message.to_string(),
        }
    }
    pub fn guard(field: impl Into<String>, message: impl fmt::Display) -> Self {
        CoreError::GuardRail {
            field: field.into(),
            message: message.to_string(),
        }
    }
    /// Several validation failures as one error (each `Invalid` kept with its field), so a
    /// client learns every field to fix at once; `None` when there are none.
    pub fn all(errors: Vec<CoreError>) -> Option<CoreError> {
        if errors.len() <= 1 {
            return errors.into_iter().next();
        }
        let mut list = Vec::new();
        for e in errors {
            match e {
                CoreError::Invalid { field, message } => list.push((field, message)),
                CoreError::InvalidMany(more) => list.extend(more),
                other => return Some(other),
            }
        }
        Some(CoreError::InvalidMany(list))
    }
    pub fn not_found(what: &'static str, id: impl fmt::Display) -> Self {
        CoreError::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

impl From<sqlx::Error> for CoreError {
    fn from(e: sqlx::Error) -> Self {
        if database_unreachable(&e) {
            CoreError::Unavailable(e.to_string())
        } else {
            CoreError::Internal(format!("database: {e}"))
        }
    }
}

/// Whether `e` says the database could not be reached (as opposed to a statement it
/// refused): the connection failed or dropped, the pool had no connection in time, or the
/// server is shutting down or starting (PostgreSQL SQLSTATE class 57P, `admin_shutdown`,
/// `crash_shutdown`, `cannot_connect_now`, and class 08, connection exceptions).
pub fn database_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Protocol(m) => m.contains("closed") || m.contains("connection"),
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
        _ => false,
    }
}

impl From<sqlx::migrate::MigrateError> for CoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        CoreError::Internal(format!("migration: {e}"))
    }
}

impl From<serde_json::Error> for CoreError {
    fn from(e: serde_json::Error) -> Self {
        CoreError::Internal(format!("json: {e}"))
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

/// Check a free-text field: trimmed, not empty when required, at most `max` characters and
/// no control characters other than newlines and tabs.
pub fn check_text(field: &str, value: &str, max: usize, required: bool) -> CoreResult<String> {
    let v = value.trim();
    if required && v.is_empty() {
        return Err(CoreError::invalid(field, "must not be empty"));
    }
    // Counted before trimming, as the OpenAPI document's `maxLength` counts.
    if value.chars().count() > max {
        return Err(CoreError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(CoreError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(v.to_string())
}

/// Check a short name (token name, edge id, assignee): 1..=max printable characters.
pub fn check_name(field: &str, value: &str, max: usize) -> CoreResult<String> {
    let v = check_text(field, value, max, true)?;
    if v.contains(['\n', '\t']) {
        return Err(CoreError::invalid(field, "must be on one line"));
    }
    Ok(v)
}
