//! Edge containment policy: the model, the edge sync wire format, request facts, and the
//! compiled matcher that turns facts into a verdict.
//!
//! Pure Rust with no I/O: it builds for `wasm32-wasip1` (inside the filter) and natively
//! (inside the control plane, tests and benchmarks).

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod canon;
pub mod config;
pub mod facts;
pub mod lease;
pub mod matcher;
pub mod model;
pub mod naive;
pub mod pixel;
pub mod reply;
pub mod report;
pub mod request;
pub mod seal;
pub mod shared;
pub mod sync;
pub mod verdict;
pub mod wire;
pub mod worker;

pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};
pub use matcher::Matcher;
pub use model::{Isolation, KeyHash, Mode, Rule, RuleId, RuleKind, Scope, Target, Version};
pub use verdict::{Action, Facts, PixelCase, PixelKind, PixelRef, Verdict};
pub use wire::{Delta, Message, Snapshot, WireError};
