//! The filter's plugin configuration (JSON), validated with errors that name the field.
//!
//! Lives here, not in the filter crate, so that the control plane, the deploy-file tests and
//! the native unit tests all read configuration with the very same code.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::UnknownVariant;
use crate::pixel::{self, PixelRoute};
use crate::seal::TrustedKeys;

/// What the filter does with requests before it has ever received a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Forward requests unchecked (availability first).
    Open,
    /// Answer 503 (containment first).
    Closed,
}

impl FailMode {
    pub const ALL: [FailMode; 2] = [FailMode::Open, FailMode::Closed];
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Open => "open",
            FailMode::Closed => "closed",
        }
    }
}

impl FromStr for FailMode {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownVariant::new("fail_mode", s, &["open", "closed"]))
    }
}

/// Where and how the filter reaches the control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlane {
    /// The upstream handed to `dispatch_http_call`, opaque to the filter: an Envoy cluster
    /// name, or `host:port` in hosts such as Kong's ngx_wasm_module.
    pub cluster: String,
    /// The `:authority` sent on sync and report calls.
    pub authority: String,
    /// Path of the policy endpoint.
    #[serde(default = "default_policy_path")]
    pub policy_path: String,
    /// Path of the report endpoint.
    #[serde(default = "default_report_path")]
    pub report_path: String,
    /// The control plane's policy signing keys this edge trusts (`ed25519:` and the base64
    /// public key, as `control-plane key list` prints them). Required: an answer not signed
    /// by one of them is refused. List the old and the new key during a key rotation.
    pub trusted_keys: Vec<String>,
    /// Refuse a policy answer sealed more than this many seconds ago by this edge's clock
    /// (0, the default: not checked, so clock skew never stops an edge; set it where clocks
    /// are synchronised to shut out replays of old answers to an edge that just started).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_policy_age_s: u32,
}

impl ControlPlane {
    /// `cluster`, `authority` and the trusted keys, with the default endpoint paths.
    pub fn new(
        cluster: impl Into<String>,
        authority: impl Into<String>,
        trusted_keys: Vec<String>,
    ) -> ControlPlane {
        ControlPlane {
            cluster: cluster.into(),
            authority: authority.into(),
            policy_path: default_policy_path(),
            report_path: default_report_path(),
            trusted_keys,
            max_policy_age_s: 0,
        }
    }

    /// The trusted keys, parsed (checked by [`FilterConfig::validate`]).
    pub fn trust(&self) -> Result<TrustedKeys, ConfigError> {
        if self.trusted_keys.is_empty() {
            return Err(field_err(
                "control_plane.trusted_keys",
                "must list at least one key (`control-plane key list` prints them)",
            ));
        }
        TrustedKeys::parse(&self.trusted_keys).map_err(|e| {
            let (at, msg) = e.split_once(": ").unwrap_or(("", &e));
            field_err(format!("control_plane.trusted_keys{at}"), msg)
        })
    }
}

fn default_policy_path() -> String {
    "/v1/edge/policy".into()
}
fn default_report_path() -> String {
    "/v1/edge/reports".into()
}

/// Policy sync timing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSettings {
    /// Seconds the control plane may hold a long-poll open (0 = plain polling).
    pub long_poll_wait_s: u32,
    /// Milliseconds between polls when long-polling is off, and after a 304.
    pub poll_interval_ms: u32,
    /// Back-off after a failed sync starts here ...
    pub retry_initial_ms: u32,
    /// ... doubles per failure, with jitter, up to this.
    pub retry_max_ms: u32,
    /// Timeout of one sync call beyond the long-poll wait, in milliseconds.
    pub timeout_margin_ms: u32,
    /// Seconds between hit reports to the control plane (0 = never report).
    pub report_interval_s: u32,
    /// Milliseconds between checks of the shared policy version by each worker VM.
    pub shared_check_ms: u32,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            long_poll_wait_s: 20,
            poll_interval_ms: 1000,
            retry_initial_ms: 250,
            retry_max_ms: 15_000,
            timeout_margin_ms: 5_000,
            report_interval_s: 10,
            shared_check_ms: 100,
        }
    }
}

/// The plugin configuration as written by an operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    pub control_plane: ControlPlane,
    /// Bearer token of role `edge`.
    pub edge_token: String,
    /// This edge's id in reports (e.g. `envoy-ams-1`).
    pub edge_id: String,
    #[serde(default)]
    pub sync: SyncSettings,
    /// How many proxies in front of this edge append to `X-Forwarded-For` and are trusted.
    #[serde(default)]
    pub trusted_hops: u8,
    /// Header carrying an API key.
    #[serde(default = "default_api_key_header")]
    pub api_key_header: String,
    /// Query parameters carrying an API key (`?api_key=`); each occurrence is checked.
    /// (Fields added after the first release are left out when serialised at their
    /// default, so a configuration written by a newer tool still loads in an older filter.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_key_query: Vec<String>,
    /// Whether an `Authorization: Bearer` token that is not a JWT is checked as an API key.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub api_key_bearer: bool,
    /// What a request whose path common servers read differently gets when any path or
    /// pixel rule exists: `match` (every reading is matched, and a rule covering any of
    /// them applies) or `reject` (400).
    #[serde(default, skip_serializing_if = "AmbiguousPath::is_default")]
    pub ambiguous_path: AmbiguousPath,
    /// Header carrying an account id; when absent, a bearer JWT's `sub` is used.
    #[serde(default)]
    pub account_header: Option<String>,
    /// Where pixel ids are found: `/p/{pixel}.gif`, `/px/{pixel}.js`, `?pid=`, or
    /// `{"pattern": ..., "kind": "script"|"beacon", "case": "insensitive"|"sensitive"}`
    /// (ids are compared case-insensitively unless the route says `sensitive`; see
    /// [`crate::pixel`]). Compiled as they are parsed.
    #[serde(default = "pixel::default_routes")]
    pub pixel_routes: Vec<PixelRoute>,
    /// Behaviour before any policy was ever received.
    #[serde(default = "default_fail_mode")]
    pub fail_mode: FailMode,
    /// `Retry-After` seconds on isolation replies.
    #[serde(default = "default_retry_after")]
    pub retry_after_s: u32,
}

/// See [`FilterConfig::ambiguous_path`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmbiguousPath {
    /// Match every reading (the default: nothing legitimate is refused, nothing escapes).
    #[default]
    Match,
    /// Answer 400.
    Reject,
}

impl AmbiguousPath {
    fn is_default(&self) -> bool {
        *self == AmbiguousPath::Match
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn default_api_key_header() -> String {
    "x-api-key".into()
}
fn default_fail_mode() -> FailMode {
    FailMode::Open
}
fn default_retry_after() -> u32 {
    30
}

/// A configuration that cannot be used, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field (`sync.retry_max_ms`, `pixel_routes[2]`), or `.` for the whole.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid plugin configuration: field `{}`: {}",
            self.field, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

fn field_err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

impl FilterConfig {
    /// The required fields; every other field as an operator who omits it gets it. For code
    /// that writes configuration (tests, the quick start): set fields, then serialise.
    pub fn new(
        control_plane: ControlPlane,
        edge_token: impl Into<String>,
        edge_id: impl Into<String>,
    ) -> FilterConfig {
        FilterConfig {
            control_plane,
            edge_token: edge_token.into(),
            edge_id: edge_id.into(),
            sync: SyncSettings::default(),
            trusted_hops: 0,
            api_key_header: default_api_key_header(),
            api_key_query: Vec::new(),
            api_key_bearer: true,
            ambiguous_path: AmbiguousPath::Match,
            account_header: None,
            pixel_routes: pixel::default_routes(),
            fail_mode: default_fail_mode(),
            retry_after_s: default_retry_after(),
        }
    }

    /// Parse and validate configuration bytes.
    pub fn parse(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let cfg: FilterConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.to_string();
            // serde names a missing field only in the message (the path stops at its parent).
            let named = ["missing field `", "duplicate field `"]
                .iter()
                .find_map(|p| msg.split_once(p).and_then(|(_, r)| r.split_once('`')))
                .map(|(f, _)| f);
            let field = match (named, path.as_str()) {
                (Some(f), ".") => f.to_string(),
                (Some(f), p) => format!("{p}.{f}"),
                // A key that is the empty string has an empty path (found by fuzzing).
                (None, "") => ".".to_string(),
                (None, p) => p.to_string(),
            };
            field_err(field, msg)
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check values serde cannot check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let cp = &self.control_plane;
        if cp.cluster.trim().is_empty() {
            return Err(field_err("control_plane.cluster", "must not be empty"));
        }
        if cp.authority.trim().is_empty() {
            return Err(field_err("control_plane.authority", "must not be empty"));
        }
        cp.trust()?;
        for (name, p) in [
            ("policy_path", &cp.policy_path),
            ("report_path", &cp.report_path),
        ] {
            if !p.starts_with('/') || p.contains('?') {
                return Err(field_err(
                    format!("control_plane.{name}"),
                    "must be a path starting with `/`, without a query",
                ));
            }
        }
        if self.edge_token.trim().is_empty() {
            return Err(field_err("edge_token", "must not be empty"));
        }
        if self.edge_id.is_empty()
            || self.edge_id.len() > 128
            || !self
                .edge_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(field_err(
                "edge_id",
                "must be 1-128 characters of letters, digits, `-`, `_`, `.`, `:`",
            ));
        }
        let s = &self.sync;
        if s.long_poll_wait_s > 60 {
            return Err(field_err("sync.long_poll_wait_s", "must be at most 60"));
        }
        if s.poll_interval_ms < 50 {
            return Err(field_err("sync.poll_interval_ms", "must be at least 50"));
        }
        if s.retry_initial_ms == 0 {
            return Err(field_err("sync.retry_initial_ms", "must be at least 1"));
        }
        if s.retry_max_ms < s.retry_initial_ms {
            return Err(field_err(
                "sync.retry_max_ms",
                "must be at least sync.retry_initial_ms",
            ));
        }
        if s.shared_check_ms == 0 {
            return Err(field_err("sync.shared_check_ms", "must be at least 1"));
        }
        if self.trusted_hops > 16 {
            return Err(field_err("trusted_hops", "must be at most 16"));
        }
        if !is_header_name(&self.api_key_header) {
            return Err(field_err(
                "api_key_header",
                "must be a lower-case header name",
            ));
        }
        for (i, q) in self.api_key_query.iter().enumerate() {
            if q.is_empty() || q.len() > 64 || q.contains(['&', '=', ';', '#', ' ']) {
                return Err(field_err(
                    format!("api_key_query[{i}]"),
                    "must be a query parameter name (1 to 64 characters, no `&`, `=`, `;`, `#` or space)",
                ));
            }
        }
        if let Some(h) = &self.account_header {
            if !is_header_name(h) {
                return Err(field_err(
                    "account_header",
                    "must be a lower-case header name",
                ));
            }
        }
        // Pixel routes were compiled (and checked) when they were deserialised.
        Ok(())
    }
}

fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ed25519:6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=";

    const MINIMAL: &str = r#"{
        "control_plane": {"cluster": "control-plane", "authority": "cp.internal",
                          "trusted_keys": ["ed25519:6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw="]},
        "edge_token": "ecp_x", "edge_id": "edge-1"
    }"#;

    fn with(patch: &str) -> String {
        // Replace the closing brace with extra members.
        let base = MINIMAL.trim_end().trim_end_matches('}');
        format!("{base}, {patch} }}")
    }

    #[track_caller]
    fn expect_field(json: &str, field: &str) {
        match FilterConfig::parse(json.as_bytes()) {
            Ok(_) => panic!("accepted, expected an error naming {field}: {json}"),
            Err(e) => assert_eq!(e.field, field, "{e}"),
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = FilterConfig::parse(MINIMAL.as_bytes()).unwrap();
        assert_eq!(c.fail_mode, FailMode::Open);
        assert_eq!(c.api_key_header, "x-api-key");
        assert_eq!(c.pixel_routes.len(), 3);
        assert_eq!(c.sync, SyncSettings::default());
        assert_eq!(c.control_plane.policy_path, "/v1/edge/policy");
    }

    #[test]
    fn new_has_the_defaults_of_an_omitted_field_and_round_trips() {
        let parsed = FilterConfig::parse(MINIMAL.as_bytes()).unwrap();
        let built = FilterConfig::new(
            ControlPlane::new("control-plane", "cp.internal", vec![KEY.into()]),
            "ecp_x",
            "edge-1",
        );
        assert_eq!(built, parsed);
        let mut c = built;
        c.trusted_hops = 2;
        c.account_header = Some("x-account-id".into());
        c.sync.long_poll_wait_s = 5;
        let json = serde_json::to_vec(&c).unwrap();
        assert_eq!(FilterConfig::parse(&json).unwrap(), c);
    }

    #[test]
    fn errors_name_the_field() {
        let cp = |keys: &str| {
            format!(
                r#"{{"control_plane": {{"cluster": "c", "authority": "a", "trusted_keys": {keys}}}, "edge_token": "x", "edge_id": "e"}}"#
            )
        };
        expect_field(r#"{"edge_token": "x", "edge_id": "e"}"#, "control_plane");
        expect_field(
            r#"{"control_plane": {"cluster": "c"}, "edge_token": "x", "edge_id": "e"}"#,
            "control_plane.authority",
        );
        expect_field(&with(r#""trusted_hops": "two""#), "trusted_hops");
        expect_field(&with(r#""trusted_hops": 99"#), "trusted_hops");
        expect_field(&with(r#""fail_mode": "sideways""#), "fail_mode");
        expect_field(
            &with(r#""sync": {"retry_max_ms": 1, "retry_initial_ms": 5}"#),
            "sync.retry_max_ms",
        );
        expect_field(
            &with(r#""sync": {"long_poll_wait_s": -1}"#),
            "sync.long_poll_wait_s",
        );
        expect_field(&with(r#""sync": {"bogus": 1}"#), "sync.bogus");
        expect_field(&with(r#""surprise": 1"#), "surprise");
        expect_field(
            &with(r#""pixel_routes": ["/p/{pixel}.gif", "nope"]"#),
            "pixel_routes[1]",
        );
        expect_field(&with(r#""api_key_header": "X Key""#), "api_key_header");
        expect_field(
            &cp(&format!(r#"["{KEY}"]"#)).replace(r#""edge_id": "e""#, r#""edge_id": "a b""#),
            "edge_id",
        );
        expect_field(&with(r#""edge_id": "again""#), "edge_id");
        expect_field("not json", ".");
        // Found by the plugin_config fuzz target: an empty key made an empty field name.
        expect_field(r#"{"" "kind": 1}"#, ".");
        expect_field(r#"{"": 1}"#, ".");
        expect_field(
            r#"{"control_plane": {"cluster": "c", "authority": "a"}, "edge_token": "x", "edge_id": "e"}"#,
            "control_plane.trusted_keys",
        );
        expect_field(&cp("[]"), "control_plane.trusted_keys");
        expect_field(
            &cp(&format!(r#"["{KEY}", "ed25519:AAAA"]"#)),
            "control_plane.trusted_keys[1]",
        );
        expect_field(&cp(r#"["rsa:x"]"#), "control_plane.trusted_keys[0]");
    }

    #[test]
    fn fail_modes_round_trip() {
        for m in FailMode::ALL {
            assert_eq!(m.as_str().parse::<FailMode>().unwrap(), m);
            let json = with(&format!(r#""fail_mode": "{}""#, m.as_str()));
            assert_eq!(FilterConfig::parse(json.as_bytes()).unwrap().fail_mode, m);
        }
        assert!("maybe".parse::<FailMode>().is_err());
    }
}
