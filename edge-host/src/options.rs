//! Host configuration.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// How the host answers a request whose guest callback trapped (panic, runaway loop, bad
/// memory access). The VM is re-created either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Forward the request as if the filter had returned `Continue`.
    Open,
    /// Answer with a local 503.
    #[default]
    Closed,
}

impl FailMode {
    /// Every variant, for tests that iterate over all modes.
    pub const ALL: [FailMode; 2] = [FailMode::Open, FailMode::Closed];

    /// The configuration spelling (`open` / `closed`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Open => "open",
            FailMode::Closed => "closed",
        }
    }
}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FailMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "open" => Ok(FailMode::Open),
            "closed" => Ok(FailMode::Closed),
            other => Err(format!(
                "fail mode must be `open` or `closed`, got `{other}`"
            )),
        }
    }
}

/// Which production host `edge-host` behaves like. Hosts differ in what they allow a
/// filter to do; each profile refuses what its host refuses, so a filter that passes its
/// tests under both runs in both. The differences, in one place:
///
/// | | `envoy` | `kong` (ngx_wasm_module) |
/// |---|---|---|
/// | `proxy_http_call` allowed in | every callback | `proxy_on_request_headers`, `proxy_on_request_body`, `proxy_on_tick`, `proxy_on_http_call_response`, `proxy_on_foreign_function`; anywhere else it traps ("bad usage"), which in `on_configure` kills the worker |
/// | upstream of an HTTP call | a cluster name (`clusters`), balanced over its endpoints | `host:port`, dialled directly (no clusters, so no balancing or failover) |
/// | `set_shared_data` with cas 0 on an existing key | unconditional write | `CasMismatch` (strict CAS) |
/// | `source.address` | `ip:port` | `ip` |
/// | a failed callout | `on_http_call_response` with no headers (no `:status`) | the same |
/// | `proxy_set_property` of a new name | any path (Envoy keeps it as filter state `wasm.<name>`) | only under `wasmx.` (the host namespace; `ngx.` variables are not emulated): `NotFound` otherwise |
/// | single-VM services (Envoy's `singleton` bootstrap extension) | not offered by `edge-host`; the filter needs none | none |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostProfile {
    #[default]
    Envoy,
    Kong,
}

/// Callbacks in which Kong's ngx_wasm_module lets a filter dispatch an HTTP call.
const KONG_DISPATCH_CALLBACKS: &[&str] = &[
    "proxy_on_request_headers",
    "proxy_on_request_body",
    "proxy_on_tick",
    "proxy_on_http_call_response",
    "proxy_on_foreign_function",
];

impl HostProfile {
    /// Every variant, for tests that iterate over all profiles.
    pub const ALL: [HostProfile; 2] = [HostProfile::Envoy, HostProfile::Kong];

    /// The spelling on the command line (`envoy` / `kong`).
    pub fn as_str(self) -> &'static str {
        match self {
            HostProfile::Envoy => "envoy",
            HostProfile::Kong => "kong",
        }
    }

    /// Options that behave like this host (the other fields at their defaults).
    pub fn options(self) -> HostOptions {
        let kong = self == HostProfile::Kong;
        HostOptions {
            profile: self,
            allow_host_port_upstreams: kong,
            strict_cas: kong,
            source_address_with_port: !kong,
            ..HostOptions::default()
        }
    }

    /// Whether a guest may dispatch an HTTP call from `callback` (its export name).
    pub fn allows_dispatch_in(self, callback: &str) -> bool {
        match self {
            HostProfile::Envoy => true,
            HostProfile::Kong => KONG_DISPATCH_CALLBACKS.contains(&callback),
        }
    }

    /// Whether a guest may set the property at `path` (its segments) under this host.
    pub fn allows_set_property(self, path: &[String]) -> bool {
        match self {
            HostProfile::Envoy => true,
            HostProfile::Kong => path.len() >= 2 && path[0] == "wasmx",
        }
    }

    /// How an upstream is named for `proxy_http_call` under this host, given an address.
    pub fn upstream_name(self, cluster: &str, addr: SocketAddr) -> String {
        match self {
            HostProfile::Envoy => cluster.to_string(),
            HostProfile::Kong => addr.to_string(),
        }
    }
}

impl fmt::Display for HostProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HostProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HostProfile::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("host profile must be `envoy` or `kong`, got `{s}`"))
    }
}

/// proxy-wasm log levels (`proxy_log`, `proxy_get_log_level`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl LogLevel {
    pub(crate) fn from_u32(v: u32) -> Option<LogLevel> {
        Some(match v {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

/// Default of [`HostOptions::callback_deadline`].
pub const DEFAULT_CALLBACK_DEADLINE: Duration = Duration::from_secs(5);

/// Default of [`HostOptions::health_check_interval`].
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Options of one plugin (one filter configuration), shared by all its VMs.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The production host this one behaves like: decides where a guest may dispatch an
    /// HTTP call. [`HostProfile::options`] also sets the flags below to that host's.
    pub profile: HostProfile,
    /// Property `plugin_name`.
    pub plugin_name: String,
    /// Property `plugin_root_id`; also the root context's name.
    pub root_id: String,
    /// Property `plugin_vm_id`; also the vm id matched by `proxy_resolve_shared_queue`.
    pub vm_id: String,
    /// Buffer handed to `proxy_on_vm_start`.
    pub vm_config: Vec<u8>,
    /// Buffer handed to `proxy_on_configure`.
    pub plugin_config: Vec<u8>,
    /// Upstream name -> the base URLs of its endpoints (`http://127.0.0.1:PORT`) for
    /// `proxy_http_call`. A call naming a cluster goes to one endpoint, round-robin over the
    /// healthy ones; an endpoint failing at connect time is ejected for a while and the call
    /// is retried on another (see `cluster.rs` for the rules). Ignored under
    /// [`HostProfile::Kong`], which has no clusters.
    pub clusters: HashMap<String, Vec<String>>,
    /// Cluster name -> path of its active health check (`GET`, healthy when answered 200),
    /// e.g. the control plane's `/healthz`. A cluster without one is only watched passively
    /// (through the outcome of its calls).
    pub cluster_health_checks: HashMap<String, String>,
    /// How often each endpoint of a cluster in [`HostOptions::cluster_health_checks`] is
    /// checked.
    pub health_check_interval: Duration,
    /// Like Kong: an upstream missing from `clusters` given as `host:port` is dialled directly.
    pub allow_host_port_upstreams: bool,
    /// Like Kong's ngx_wasm_module: `set_shared_data` with cas 0 on an existing key fails
    /// with `CasMismatch`. Envoy (false) treats cas 0 as unconditional.
    pub strict_cas: bool,
    /// `source.address` as `ip:port` (Envoy) or bare `ip` (false).
    pub source_address_with_port: bool,
    /// Wall-clock budget of each guest callback; a guest running longer traps (the VM is
    /// poisoned and [`crate::Worker`] re-creates it). Envoy has no per-callback deadline:
    /// this one is only there to stop a runaway loop, so it is generous by default
    /// ([`DEFAULT_CALLBACK_DEADLINE`]), well above legitimate long callbacks such as
    /// decoding and indexing a million-rule policy in `on_configure` or in a call response
    /// (0.5-0.7 s on a small machine, more on a busy one).
    pub callback_deadline: Duration,
    /// Level returned by `proxy_get_log_level` (the guest filters below it).
    pub log_level: LogLevel,
    /// Property `node.id`.
    pub node_id: String,
    /// Property `destination.address` (the listener address), if known.
    pub destination_address: Option<SocketAddr>,
    /// How [`crate::Worker`] answers a request whose callback trapped.
    pub fail_mode: FailMode,
    /// Capacity of the captured log ring buffer ([`crate::Plugin::logs`]).
    pub log_capacity: usize,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            profile: HostProfile::Envoy,
            plugin_name: "edge".into(),
            root_id: String::new(),
            vm_id: String::new(),
            vm_config: Vec::new(),
            plugin_config: Vec::new(),
            clusters: HashMap::new(),
            cluster_health_checks: HashMap::new(),
            health_check_interval: DEFAULT_HEALTH_CHECK_INTERVAL,
            allow_host_port_upstreams: false,
            strict_cas: false,
            source_address_with_port: true,
            callback_deadline: DEFAULT_CALLBACK_DEADLINE,
            log_level: LogLevel::Info,
            node_id: "edge-host".into(),
            destination_address: None,
            fail_mode: FailMode::Closed,
            log_capacity: 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_round_trip_and_set_their_host_flags() {
        for p in HostProfile::ALL {
            assert_eq!(p.as_str().parse::<HostProfile>(), Ok(p));
            assert_eq!(p.options().profile, p);
            // Every host lets a filter sync from its tick and its callout responses.
            assert!(p.allows_dispatch_in("proxy_on_tick"));
            assert!(p.allows_dispatch_in("proxy_on_http_call_response"));
        }
        assert!("nginx".parse::<HostProfile>().is_err());
        let kong = HostProfile::Kong.options();
        assert!(kong.strict_cas && kong.allow_host_port_upstreams);
        assert!(!kong.source_address_with_port);
        assert!(!HostProfile::Kong.allows_dispatch_in("proxy_on_configure"));
        assert!(!HostProfile::Kong.allows_dispatch_in("proxy_on_vm_start"));
        assert!(!HostProfile::Kong.allows_dispatch_in("proxy_on_response_headers"));
        assert!(HostProfile::Envoy.allows_dispatch_in("proxy_on_configure"));
        let envoy = HostProfile::Envoy.options();
        assert!(!envoy.strict_cas && !envoy.allow_host_port_upstreams);
        assert!(envoy.source_address_with_port);
    }

    #[test]
    fn fail_mode_round_trips() {
        for mode in FailMode::ALL {
            assert_eq!(mode.as_str().parse::<FailMode>(), Ok(mode));
        }
        assert!("half".parse::<FailMode>().is_err());
    }
}
