//! Containment actions: request validation, normalisation, guard rails, expiry, and the
//! mapping to `edge_policy::Rule`.

use edge_policy::{IpNet, Isolation, Mode, Rule, RuleKind, Scope, Target};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::target::normalise_scope;
pub use super::target::{normalise_cidr, normalise_target};
use super::{check_text, CoreError, CoreResult};

/// What an action does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Block requests matching `target` (403 at the edge).
    Block,
    /// Set an isolation flag on `scope`.
    Isolate,
    /// Add an allow-list entry: `target` is never blocked or isolated.
    Allow,
}

impl ActionKind {
    pub const ALL: [ActionKind; 3] = [ActionKind::Block, ActionKind::Isolate, ActionKind::Allow];
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Block => "block",
            ActionKind::Isolate => "isolate",
            ActionKind::Allow => "allow",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Whether the rule acts or only counts (`edge_policy::Mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModeInput {
    #[default]
    Enforce,
    Simulate,
}

impl From<ModeInput> for Mode {
    fn from(m: ModeInput) -> Mode {
        match m {
            ModeInput::Enforce => Mode::Enforce,
            ModeInput::Simulate => Mode::Simulate,
        }
    }
}

/// Isolation flag (`edge_policy::Isolation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IsolationInput {
    /// 503 with `Retry-After` for every request in scope.
    Block,
    /// Only GET, HEAD and OPTIONS pass.
    ReadOnly,
    /// Pixel kill switch: no-op script / 204 beacon, nothing forwarded.
    PixelKill,
}

impl From<IsolationInput> for Isolation {
    fn from(i: IsolationInput) -> Isolation {
        match i {
            IsolationInput::Block => Isolation::Block,
            IsolationInput::ReadOnly => Isolation::ReadOnly,
            IsolationInput::PixelKill => Isolation::PixelKill,
        }
    }
}

/// A block or allow target, as given by the client: exactly one key.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetInput {
    /// An IPv4/IPv6 address or CIDR (`203.0.113.0/24`, `2001:db8::/48`, `198.51.100.7`).
    #[schema(value_type = crate::schema_items::CidrItem)]
    Cidr(String),
    /// An API key in clear; only its SHA-256 is stored and sent to edges.
    #[schema(value_type = crate::schema_items::ApiKeyItem)]
    ApiKey(String),
    #[schema(value_type = crate::schema_items::TokenItem)]
    Account(String),
    #[schema(value_type = crate::schema_items::PixelItem)]
    Pixel(String),
    #[schema(value_type = crate::schema_items::HostItem)]
    Host(String),
    /// A path prefix starting with `/`, matched on whole segments.
    #[schema(value_type = crate::schema_items::PathPrefixItem)]
    PathPrefix(String),
}

/// An isolation scope, as given by the client: exactly one key.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ScopeInput {
    #[schema(value_type = crate::schema_items::HostItem)]
    Host(String),
    #[schema(value_type = crate::schema_items::PathPrefixItem)]
    PathPrefix(String),
    #[schema(value_type = crate::schema_items::PixelItem)]
    Pixel(String),
}

/// `expires_in`: seconds as a number, or a duration string such as `"90s"`, `"15m"`,
/// `"1h"`, `"1h30m"`, `"2d"` (units s, m, h, d; a bare number string means seconds).
/// (`Serialize` only gives the schema its untagged shape; reading is by hand so an error
/// says what is accepted.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ExpiresIn {
    Seconds(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for ExpiresIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ExpiresIn;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "whole seconds (a number) or a duration like \"90s\", \"15m\", \"1h30m\", \"2d\"",
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ExpiresIn, E> {
                Ok(ExpiresIn::Seconds(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ExpiresIn, E> {
                u64::try_from(v)
                    .map(ExpiresIn::Seconds)
                    .map_err(|_| E::custom("must be at least 1 second"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ExpiresIn, E> {
                Ok(ExpiresIn::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Body of `POST /v1/incidents/{id}/actions`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub kind: ActionKind,
    /// For `block` and `allow`.
    pub target: Option<TargetInput>,
    /// For `isolate`.
    pub scope: Option<ScopeInput>,
    /// For `isolate`.
    pub isolation: Option<IsolationInput>,
    /// Default `enforce`.
    #[serde(default)]
    pub mode: ModeInput,
    /// Why (required).
    #[schema(value_type = crate::schema_items::Text2000)]
    pub reason: String,
    pub expires_in: Option<ExpiresIn>,
    /// RFC 3339 time in the future.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Override a guard rail (very wide prefix, overlap with an allow-list entry).
    #[serde(default)]
    pub force: bool,
}

/// The kinds of target and scope, as stored.
pub const TARGET_TYPES: [&str; 6] = ["cidr", "api_key", "account", "pixel", "host", "path_prefix"];

/// A normalised target or scope: its type and canonical value (an API key as the hex SHA-256).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTarget {
    pub ty: &'static str,
    pub value: String,
}

impl StoredTarget {
    pub fn new(ty: &str, value: String) -> CoreResult<Self> {
        let ty = TARGET_TYPES
            .into_iter()
            .find(|t| *t == ty)
            .ok_or_else(|| CoreError::Internal(format!("stored target type {ty:?} unknown")))?;
        Ok(StoredTarget { ty, value })
    }

    fn ip(&self) -> Option<IpNet> {
        (self.ty == "cidr")
            .then(|| self.value.parse().ok())
            .flatten()
    }
}

/// Guard rail settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardRails {
    /// Shortest IPv4 prefix a block may have without `force`.
    pub min_prefix_v4: u8,
    /// Shortest IPv6 prefix a block may have without `force`.
    pub min_prefix_v6: u8,
}

impl Default for GuardRails {
    fn default() -> Self {
        GuardRails {
            min_prefix_v4: 8,
            min_prefix_v6: 24,
        }
    }
}

/// A validated, normalised new action (before conflict checks against the store).
#[derive(Clone, Debug, PartialEq)]
pub struct NewAction {
    pub incident_id: i64,
    pub kind: ActionKind,
    pub target: StoredTarget,
    pub isolation: Option<Isolation>,
    pub mode: Mode,
    pub reason: String,
    pub expires_at_ms: Option<i64>,
    pub force: bool,
    /// Normalisations applied, reported back to the client.
    pub warnings: Vec<String>,
}

impl NewAction {
    /// Canonical key for duplicate detection: `kind:type:value`.
    pub fn target_key(&self) -> String {
        target_key(self.kind, &self.target)
    }

    /// Field that names the target in errors.
    pub fn target_field(&self) -> String {
        match self.kind {
            ActionKind::Isolate => format!("scope.{}", self.target.ty),
            _ => format!("target.{}", self.target.ty),
        }
    }
}

pub fn target_key(kind: ActionKind, t: &StoredTarget) -> String {
    format!("{}:{}:{}", kind.as_str(), t.ty, t.value)
}

/// The longest expiry accepted.
pub const MAX_EXPIRY_MS: i64 = 366 * 24 * 3600 * 1000;

/// Parse `expires_in` text: `90`, `90s`, `15m`, `1h`, `1h30m`, `2d`.
pub fn parse_duration_secs(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mult = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        let n: u64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(mult)?)?;
        num.clear();
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}

/// Validate and normalise a request. `now_ms` is the clock's current time.
pub fn validate(incident_id: i64, req: &ActionRequest, now_ms: i64) -> CoreResult<NewAction> {
    let reason = check_text("reason", &req.reason, 2000, true)?;
    let mut warnings = Vec::new();
    let (target, isolation) = match req.kind {
        ActionKind::Block | ActionKind::Allow => {
            if req.scope.is_some() {
                return Err(CoreError::invalid(
                    "scope",
                    format!("not allowed with kind {}", req.kind.as_str()),
                ));
            }
            if req.isolation.is_some() {
                return Err(CoreError::invalid(
                    "isolation",
                    format!("not allowed with kind {}", req.kind.as_str()),
                ));
            }
            let t = req.target.as_ref().ok_or_else(|| {
                CoreError::invalid(
                    "target",
                    format!("required with kind {}", req.kind.as_str()),
                )
            })?;
            (normalise_target(t, &mut warnings)?, None)
        }
        ActionKind::Isolate => {
            if req.target.is_some() {
                return Err(CoreError::invalid(
                    "target",
                    "not allowed with kind isolate (use scope)",
                ));
            }
            let s = req
                .scope
                .as_ref()
                .ok_or_else(|| CoreError::invalid("scope", "required with kind isolate"))?;
            let i = req
                .isolation
                .ok_or_else(|| CoreError::invalid("isolation", "required with kind isolate"))?;
            (normalise_scope(s, &mut warnings)?, Some(i.into()))
        }
    };
    let expires_at_ms = match (&req.expires_in, &req.expires_at) {
        (Some(_), Some(_)) => {
            return Err(CoreError::invalid(
                "expires_at",
                "give expires_in or expires_at, not both",
            ))
        }
        (Some(e), None) => {
            let secs = match e {
                ExpiresIn::Seconds(n) => *n,
                ExpiresIn::Text(t) => parse_duration_secs(t).ok_or_else(|| {
                    CoreError::invalid(
                        "expires_in",
                        "expected seconds or a duration like 90s, 15m, 1h30m, 2d",
                    )
                })?,
            };
            if secs == 0 {
                return Err(CoreError::invalid(
                    "expires_in",
                    "must be at least 1 second",
                ));
            }
            let ms = i64::try_from(secs)
                .ok()
                .and_then(|s| s.checked_mul(1000))
                .unwrap_or(i64::MAX);
            if ms > MAX_EXPIRY_MS {
                return Err(CoreError::invalid("expires_in", "must be at most 366 days"));
            }
            Some(now_ms + ms)
        }
        (None, Some(at)) => {
            let ms = crate::clock::parse_rfc3339(at)
                .ok_or_else(|| CoreError::invalid("expires_at", "expected an RFC 3339 time"))?;
            if ms <= now_ms {
                return Err(CoreError::invalid("expires_at", "is in the past"));
            }
            if ms - now_ms > MAX_EXPIRY_MS {
                return Err(CoreError::invalid(
                    "expires_at",
                    "must be at most 366 days ahead",
                ));
            }
            Some(ms)
        }
        (None, None) => None,
    };
    Ok(NewAction {
        incident_id,
        kind: req.kind,
        target,
        isolation,
        mode: req.mode.into(),
        reason,
        expires_at_ms,
        force: req.force,
        warnings,
    })
}

/// An active action, as the conflict checks need it.
#[derive(Clone, Debug)]
pub struct ActiveTarget {
    pub id: i64,
    pub kind: ActionKind,
    pub target: StoredTarget,
}

/// Check a new action against the guard rails and the live actions. `force` overrides the
/// guard rails (never a duplicate).
pub fn check_conflicts(
    new: &NewAction,
    live: &[ActiveTarget],
    rails: GuardRails,
) -> CoreResult<()> {
    let key = new.target_key();
    if let Some(dup) = live.iter().find(|a| target_key(a.kind, &a.target) == key) {
        return Err(CoreError::conflict(
            new.target_field(),
            format!(
                "action {} already {}s this target; lift it first",
                dup.id,
                new.kind.as_str()
            ),
        ));
    }
    if new.kind != ActionKind::Block || new.force {
        return Ok(());
    }
    let field = new.target_field();
    if let Some(net) = new.target.ip() {
        let (min, fam) = match net {
            IpNet::V4(_) => (rails.min_prefix_v4, "IPv4"),
            IpNet::V6(_) => (rails.min_prefix_v6, "IPv6"),
        };
        if net.prefix_len() == 0 {
            return Err(CoreError::guard(
                &field,
                format!("{net} blocks every {fam} address; set force: true to insist"),
            ));
        }
        if net.prefix_len() < min {
            return Err(CoreError::guard(
                &field,
                format!("/{} is shorter than the minimum /{min} for {fam} blocks; set force: true to insist", net.prefix_len()),
            ));
        }
    }
    for a in live.iter().filter(|a| a.kind == ActionKind::Allow) {
        let overlaps = match (new.target.ip(), a.target.ip()) {
            (Some(n), Some(m)) => n.contains(&m) || m.contains(&n),
            _ => a.target == new.target,
        };
        if overlaps {
            return Err(CoreError::guard(
                &field,
                format!(
                    "overlaps allow-list entry {} ({}); set force: true to insist",
                    a.id, a.target.value
                ),
            ));
        }
    }
    Ok(())
}

/// The policy rule for an action.
pub fn to_rule(
    id: i64,
    incident_id: i64,
    kind: ActionKind,
    target: &StoredTarget,
    isolation: Option<Isolation>,
    mode: Mode,
    expires_at_ms: Option<i64>,
) -> CoreResult<Rule> {
    let bad = || {
        CoreError::Internal(format!(
            "action {id}: stored target {target:?} is not valid"
        ))
    };
    let t = || -> CoreResult<Target> {
        Ok(match target.ty {
            "cidr" => Target::Ip(target.value.parse().map_err(|_| bad())?),
            "api_key" => Target::ApiKey(target.value.parse().map_err(|_| bad())?),
            "account" => Target::Account(target.value.clone()),
            "pixel" => Target::Pixel(target.value.clone()),
            "host" => Target::Host(target.value.clone()),
            "path_prefix" => Target::PathPrefix(target.value.clone()),
            _ => return Err(bad()),
        })
    };
    let kind = match kind {
        ActionKind::Block => RuleKind::Block(t()?),
        ActionKind::Allow => RuleKind::Allow(t()?),
        ActionKind::Isolate => {
            let scope = match target.ty {
                "host" => Scope::Host(target.value.clone()),
                "path_prefix" => Scope::PathPrefix(target.value.clone()),
                "pixel" => Scope::Pixel(target.value.clone()),
                _ => return Err(bad()),
            };
            RuleKind::Isolate {
                scope,
                action: isolation.ok_or_else(bad)?,
            }
        }
    };
    Ok(Rule {
        id: u64::try_from(id).map_err(|_| bad())?,
        incident: u64::try_from(incident_id).ok(),
        mode,
        expires_at_ms: expires_at_ms.and_then(|t| u64::try_from(t).ok()),
        kind,
    })
}

#[cfg(test)]
#[path = "action_tests.rs"]
mod tests;
