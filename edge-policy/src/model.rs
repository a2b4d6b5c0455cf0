//! The policy model: what the control plane tells every edge to enforce.
//!
//! A policy is a set of [`Rule`]s. Each rule comes from one containment action in the
//! control plane and carries that action's id, so a verdict, a hit count or an edge log
//! line can always be traced back to the action (and from there to its incident).

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Identifier of a rule: the id of the containment action it comes from.
pub type RuleId = u64;

/// A policy version. Strictly increasing, never reused; 0 means "no policy yet".
pub type Version = u64;

/// One enforceable rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: RuleId,
    /// The incident the action belongs to (for reporting only; never shown to clients).
    pub incident: Option<u64>,
    pub mode: Mode,
    /// Unix time in milliseconds after which the rule no longer matches.
    pub expires_at_ms: Option<u64>,
    pub kind: RuleKind,
}

impl Rule {
    /// True when the rule is still in force at `now_ms` (Unix milliseconds).
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|t| now_ms < t)
    }
}

/// What a rule does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleKind {
    /// Requests matching the target get 403.
    Block(Target),
    /// Requests matching the target are never blocked or isolated (monitoring, office ranges).
    /// An allow entry always acts: its `mode` is ignored.
    Allow(Target),
    /// Requests inside the scope are isolated as `action` says.
    Isolate { scope: Scope, action: Isolation },
}

/// Who or what a block or allow entry is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Target {
    /// A client address or network (IPv4 or IPv6). Host bits are cleared when compiled.
    Ip(IpNet),
    /// SHA-256 of the API key header value: keys never travel or sit in a policy in clear.
    ApiKey(KeyHash),
    /// An account id (from the configured account header or a bearer JWT's `sub`).
    Account(String),
    /// A tracking pixel id.
    Pixel(String),
    /// A request host (lower case, no port).
    Host(String),
    /// A path prefix (matched on whole segments: `/api` matches `/api` and `/api/x`, not `/apix`).
    PathPrefix(String),
}

/// Where an isolation flag applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    Host(String),
    PathPrefix(String),
    Pixel(String),
}

/// Isolation flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Isolation {
    /// 503 with `Retry-After` for every request in scope.
    Block,
    /// Only GET, HEAD and OPTIONS pass; anything else gets 503 with `Retry-After`.
    ReadOnly,
    /// Pixel kill switch: a pixel script gets a 200 no-op script, a pixel beacon gets 204;
    /// neither is forwarded. Requests in scope that are not pixel requests pass.
    PixelKill,
}

/// Whether a rule acts or only counts what it would have done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// The rule acts on matching requests.
    Enforce,
    /// The rule only counts and logs what it would have done; the request passes.
    Simulate,
}

/// SHA-256 of an API key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Hash a key as it appears in the request header.
    pub fn of(key: &str) -> KeyHash {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

impl FromStr for KeyHash {
    type Err = hex::FromHexError;
    /// Parse 64 hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(KeyHash(out))
    }
}

/// Every mode, for exhaustive tests and documentation.
impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Enforce, Mode::Simulate];
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Simulate => "simulate",
        }
    }
}

impl FromStr for Mode {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownVariant::new("mode", s, &["enforce", "simulate"]))
    }
}

impl Isolation {
    pub const ALL: [Isolation; 3] = [Isolation::Block, Isolation::ReadOnly, Isolation::PixelKill];
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Block => "block",
            Isolation::ReadOnly => "read_only",
            Isolation::PixelKill => "pixel_kill",
        }
    }
}

impl FromStr for Isolation {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Isolation::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                UnknownVariant::new("isolation", s, &["block", "read_only", "pixel_kill"])
            })
    }
}

/// A string that names no variant of an enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: unknown value {value:?} (expected one of: {expected})")]
pub struct UnknownVariant {
    pub field: &'static str,
    pub value: String,
    pub expected: String,
}

impl UnknownVariant {
    pub fn new(field: &'static str, value: &str, expected: &[&str]) -> Self {
        UnknownVariant {
            field,
            value: value.chars().take(64).collect(),
            expected: expected.join(", "),
        }
    }
}

/// Normalise a host for matching: lower case, no port, no trailing dot.
pub fn normalize_host(host: &str) -> &str {
    let h = host.trim();
    // Bracketed IPv6 literal with optional port: "[::1]:8080".
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    // The port first, then trailing dots: `shop.example.:8080` is `shop.example`.
    let name = match h.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => h,
    };
    name.trim_end_matches('.')
}

/// Whether `path` lies under `prefix`, on whole segments.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if prefix.is_empty() || prefix == "/" {
        return true;
    }
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}
