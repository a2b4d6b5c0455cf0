//! Request facts in, verdict out.

use std::net::IpAddr;

use crate::model::RuleId;

/// What kind of pixel request this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelKind {
    /// The JavaScript a customer's page loads (`/px/{id}.js`).
    Script,
    /// The tracking beacon the script sends (`/p/{id}.gif`, `?pid=`).
    Beacon,
}

/// How a pixel route compares the ids it finds with the ids in rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PixelCase {
    /// ASCII case-insensitively: `AbC` is the pixel `abc` (the default: pixel ids are
    /// usually looked up in case-insensitive stores, so an upstream serves `AbC` as `abc`).
    #[default]
    Insensitive,
    /// Exactly: for upstreams whose pixel ids are case-sensitive, where `AbC` and `abc`
    /// are two customers' pixels.
    Sensitive,
}

/// A pixel id found in the request, with the kind of request and how the route that found
/// it compares ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelRef<'a> {
    pub id: &'a str,
    pub kind: PixelKind,
    pub case: PixelCase,
}

impl PixelRef<'_> {
    /// Whether this is the pixel a rule names.
    pub fn is(&self, rule_id: &str) -> bool {
        match self.case {
            PixelCase::Insensitive => self.id.eq_ignore_ascii_case(rule_id),
            PixelCase::Sensitive => self.id == rule_id,
        }
    }
}

/// The facts of one request that the matcher decides on. Borrowed: building it allocates
/// nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts<'a> {
    /// The client address after trusted-hop `X-Forwarded-For` resolution.
    pub client_ip: Option<IpAddr>,
    /// Upper-case method.
    pub method: &'a str,
    /// Normalised host: lower case, no port (see [`crate::model::normalize_host`]).
    pub host: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    /// The raw API key header value (the matcher hashes it).
    pub api_key: Option<&'a str>,
    /// The account id (configured header, or a bearer JWT's `sub`).
    pub account: Option<&'a str>,
    pub pixel: Option<PixelRef<'a>>,
}

/// What the edge does with the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// No enforced rule matched: forward.
    Allow,
    /// An allow-list entry matched: forward, and no block or isolation applies.
    AllowListed,
    /// 403 with the rule id.
    Block,
    /// 503 with `Retry-After` (isolation `block`, or a write under `read_only`).
    Isolate,
    /// A write under a `read_only` isolation: 503 with `Retry-After`.
    ReadOnlyRefused,
    /// Pixel kill switch on a pixel script: 200 with a no-op script, not forwarded.
    PixelNoopScript,
    /// Pixel kill switch on a pixel beacon: 204, not forwarded.
    PixelDropBeacon,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::Allow,
        Action::AllowListed,
        Action::Block,
        Action::Isolate,
        Action::ReadOnlyRefused,
        Action::PixelNoopScript,
        Action::PixelDropBeacon,
    ];

    /// Stable name, used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::AllowListed => "allow_listed",
            Action::Block => "block",
            Action::Isolate => "isolate",
            Action::ReadOnlyRefused => "read_only",
            Action::PixelNoopScript => "pixel_noop_script",
            Action::PixelDropBeacon => "pixel_drop_beacon",
        }
    }

    /// Whether the request is forwarded upstream.
    pub fn forwards(self) -> bool {
        matches!(self, Action::Allow | Action::AllowListed)
    }
}

/// The matcher's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// The rule that decided (None only for [`Action::Allow`]).
    pub rule: Option<RuleId>,
    /// A simulate-mode rule that would have acted had it been enforced (the one of highest
    /// precedence, lowest id among equals), counted and logged by the edge. Only reported when
    /// the request is otherwise forwarded.
    pub simulated: Option<RuleId>,
}

impl Verdict {
    pub const ALLOW: Verdict = Verdict {
        action: Action::Allow,
        rule: None,
        simulated: None,
    };
}

/// Precedence of an action that stops a request (lower wins), as the matcher ranks rules.
fn stop_level(a: Action) -> Option<u8> {
    match a {
        Action::Allow | Action::AllowListed => None,
        Action::Block => Some(1),
        Action::Isolate => Some(2),
        Action::ReadOnlyRefused => Some(3),
        Action::PixelNoopScript | Action::PixelDropBeacon => Some(4),
    }
}

/// The verdict on a request that has several readings (an ambiguous path, a repeated
/// parameter, several credentials), from the verdicts on each: a rule that stops any
/// reading stops the request, and an allow-list entry lets it through only when it covers
/// every reading (otherwise a spelling read one way by the edge and another by the
/// upstream would carry a blocked request past its block).
pub fn combine(a: Verdict, b: Verdict) -> Verdict {
    match (stop_level(a.action), stop_level(b.action)) {
        (Some(x), Some(y)) => {
            if (y, b.rule) < (x, a.rule) {
                b
            } else {
                a
            }
        }
        (Some(_), None) => a,
        (None, Some(_)) => b,
        (None, None) => {
            if a.action == Action::AllowListed && b.action == Action::AllowListed {
                return a;
            }
            let simulated = match (a.simulated, b.simulated) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
            Verdict {
                action: Action::Allow,
                rule: None,
                simulated,
            }
        }
    }
}
