//! Bearer-token authentication and role checks, as extractors.
//!
//! A handler takes `Auth<Responders>` (say) and only runs for a valid, unrevoked token whose
//! role is in the set; `admin` passes every check. The check runs before the body is read,
//! so a caller without the role gets 403 whatever it sent.
//!
//! Checking a token writes nothing (no last-used time). Successful checks are reused for a
//! few seconds without asking the database ([`crate::token_cache`]); every token create and
//! revoke through this process clears them first, so a revoked token fails on its next
//! request.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::domain::token::{self, Role};
use crate::domain::CoreError;
use crate::error::ApiError;
use crate::AppState;

/// A set of roles allowed on an endpoint (admin is always allowed).
pub trait RoleSet: Send + Sync + 'static {
    const ROLES: &'static [Role];
    const NAME: &'static str;
}

macro_rules! role_set {
    ($(#[$doc:meta])* $name:ident = [$($role:ident),*]) => {
        $(#[$doc])*
        pub struct $name;
        impl RoleSet for $name {
            const ROLES: &'static [Role] = &[Role::Admin, $(Role::$role),*];
            const NAME: &'static str = stringify!($name);
        }
    };
}

role_set!(/// Token management.
    Admins = []);
role_set!(/// Incident and containment writes.
    Responders = [Responder]);
role_set!(/// Reading incidents, actions, audit and edges.
    Readers = [Responder, Viewer]);
role_set!(/// Policy sync and hit reports.
    Edges = [Edge]);
role_set!(/// Posting monitoring alerts.
    Intakes = [Intake]);
role_set!(/// Posting access-log evidence (log shippers at the edge, or a responder by hand).
    Ingesters = [Edge, Responder]);

/// The authenticated caller. `name` is recorded as the actor of every change it makes.
#[derive(Clone, Debug)]
pub struct Caller {
    pub token_id: i64,
    pub name: String,
    pub role: Role,
}

/// An authenticated caller whose role is in `R`.
pub struct Auth<R: RoleSet>(pub Caller, PhantomData<R>);

impl<R: RoleSet> Auth<R> {
    pub fn actor(&self) -> &str {
        &self.0.name
    }
}

/// The one answer to a token that does not work, whatever the reason (unknown, revoked).
pub const INVALID_TOKEN: &str = "the bearer token is not valid";

/// Check a bearer token (cached, see [`crate::token_cache`]); any failure is 401.
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthenticated(
            "missing Authorization: Bearer token",
        ))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::Unauthenticated("malformed Authorization header"))?;
    // The scheme is case-insensitive (RFC 9110 §11.1): `Bearer`, `bearer`, `BEARER`.
    let presented = value
        .trim_start()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthenticated(
            "expected Authorization: Bearer <token>",
        ))?;
    let hash = token::hash(presented);
    let results = &state.metrics.token_cache;
    if let Some(caller) = state.tokens.get(&hash) {
        results.with_label_values(&["hit"]).inc();
        return Ok(caller);
    }
    results.with_label_values(&["miss"]).inc();
    // Noted before the read: a revoke committing meanwhile keeps this result out of the cache.
    let generation = state.tokens.generation();
    let found = match state.store.find_token(&hash).await {
        Ok(found) => found,
        // The database is unreachable: the last good answer, if any (see `get_stale`), so
        // edges keep their long-polls; else 503.
        Err(CoreError::Unavailable(m)) => {
            return state
                .tokens
                .get_stale(&hash)
                .ok_or_else(|| CoreError::Unavailable(m).into());
        }
        Err(e) => return Err(e.into()),
    };
    // Unknown and revoked tokens get the same answer: a thief learns nothing of its past.
    let Some(t) = found.filter(|t| token::hashes_match(&t.hash, &hash) && !t.revoked) else {
        return Err(ApiError::Unauthenticated(INVALID_TOKEN));
    };
    let caller = Caller {
        token_id: t.id,
        name: t.name,
        role: t.role,
    };
    // With replicas, a revocation made elsewhere reaches this cache by notification, a few
    // milliseconds after its commit: only edge tokens (the long-poll traffic, thousands of
    // requests a second) are cached then; every other token is checked in the database on
    // each request, so its revocation holds on every replica from the next request on.
    if !state.store.replicated() || caller.role == Role::Edge {
        state.tokens.insert(generation, hash, caller.clone());
    }
    Ok(caller)
}

impl<R: RoleSet> FromRequestParts<AppState> for Auth<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = authenticate(parts, state).await?;
        if !R::ROLES.contains(&caller.role) {
            return Err(ApiError::Forbidden(format!(
                "role {} may not do this (allowed: {})",
                caller.role,
                R::ROLES
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Auth(caller, PhantomData))
    }
}
