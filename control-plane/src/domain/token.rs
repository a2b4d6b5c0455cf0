//! API tokens and roles.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

/// What a token may do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including managing tokens.
    Admin,
    /// Read everything but tokens; write incidents and containment actions.
    Responder,
    /// Read incidents, actions, audit and edges.
    Viewer,
    /// Edge sync and hit reports only.
    Edge,
    /// Posting monitoring alerts (`POST /v1/intake/alertmanager`) only.
    Intake,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Responder,
        Role::Viewer,
        Role::Edge,
        Role::Intake,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Responder => "responder",
            Role::Viewer => "viewer",
            Role::Edge => "edge",
            Role::Intake => "intake",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role {s:?} (expected one of: admin, responder, viewer, edge, intake)"
                )
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The prefix of every token, so leaked tokens are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "ecp_";

/// A new random token: `ecp_` + 64 hex digits (32 random bytes from the OS-seeded CSPRNG).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// SHA-256 of a token: all that is stored.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time comparison of two token hashes.
pub fn hashes_match(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_prefixed() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
    }

    #[test]
    fn hash_compare() {
        let t = generate();
        assert!(hashes_match(&hash(&t), &hash(&t)));
        assert!(!hashes_match(&hash(&t), &hash(&generate())));
        assert!(!hashes_match(&hash(&t), &[0u8; 31]));
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
