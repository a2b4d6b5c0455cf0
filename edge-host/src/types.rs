//! Data types crossing the host API.

use std::net::SocketAddr;
use std::time::Duration;

/// A request as the host sees it when it reaches the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// Path including the query string.
    pub path: String,
    pub authority: String,
    pub scheme: String,
    /// Regular headers (no pseudo-headers); names are matched case-insensitively.
    pub headers: Vec<(String, String)>,
    /// The downstream peer.
    pub source: SocketAddr,
    /// True when the request has no body (`end_of_stream` on the headers).
    pub body_empty: bool,
}

impl RequestHead {
    /// A GET with no body from `source`, for tests and benchmarks.
    pub fn get(path: &str, authority: &str, source: SocketAddr) -> Self {
        RequestHead {
            method: "GET".into(),
            path: path.into(),
            authority: authority.into(),
            scheme: "http".into(),
            headers: Vec::new(),
            source,
            body_empty: true,
        }
    }

    /// The request header map as the guest sees it: `:authority`, `:path`, `:method`,
    /// `:scheme`, then the regular headers with lower-cased names.
    pub fn header_map(&self) -> Vec<(String, String)> {
        let mut map = Vec::with_capacity(self.headers.len() + 4);
        map.push((":authority".to_string(), self.authority.clone()));
        map.push((":path".to_string(), self.path.clone()));
        map.push((":method".to_string(), self.method.clone()));
        map.push((":scheme".to_string(), self.scheme.clone()));
        map.extend(
            self.headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
        );
        map
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }
}

/// An upstream response head as it reaches the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Regular headers (no `:status`; the host adds it to the map the guest sees).
    pub headers: Vec<(String, String)>,
    pub body_empty: bool,
}

/// Identifies an HTTP context of one VM instance. A context id from a VM that has since been
/// re-created is simply unknown to the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HttpContextId {
    pub(crate) vm: u64,
    pub(crate) id: u32,
}

impl HttpContextId {
    /// The proxy-wasm context id.
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// What the filter decided on request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterOutcome {
    /// Forward the request. `headers` is the request header map after the filter ran,
    /// including the pseudo-headers `:method`, `:path`, `:authority`, `:scheme`.
    Continue {
        context: HttpContextId,
        headers: Vec<(String, String)>,
    },
    /// Answer with this response (`proxy_send_local_response`, or a stream reset as 502).
    LocalResponse {
        context: HttpContextId,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The filter returned `Pause` and has not resumed yet (typically waiting on an
    /// `http_call`). Deliver the call responses, then ask [`crate::Vm::poll_request`].
    Paused { context: HttpContextId },
}

/// What the filter decided on response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOutcome {
    /// Return the upstream response with these headers (`:status` removed).
    Continue { headers: Vec<(String, String)> },
    /// Replace the upstream response with a local one.
    LocalResponse {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The filter paused the response; deliver call responses, then poll with
    /// [`crate::Vm::poll_response`].
    Paused,
}

/// An HTTP call the guest dispatched with `proxy_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingHttpCall {
    pub token: u32,
    /// The upstream as the guest named it.
    pub upstream: String,
    /// Resolved base URL (`http://host:port`).
    pub base_url: String,
    /// Headers including pseudo-headers `:method`, `:path`, `:authority`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    pub timeout: Duration,
}

/// Response of an HTTP call, delivered with `deliver_http_call_response`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpCallResponse {
    /// Headers including `:status`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
}

impl HttpCallResponse {
    /// A response with `:status` first, then `headers`.
    pub fn new(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Self {
        let mut all = vec![(":status".to_string(), status.to_string())];
        all.extend(headers);
        HttpCallResponse {
            headers: all,
            body,
            trailers: Vec::new(),
        }
    }
}

/// A guest callback trapped (panic/abort, runaway loop past the deadline, bad memory access,
/// or a host-detected protocol violation). The VM is unusable afterwards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("guest trapped in {callback}: {message}")]
pub struct GuestTrap {
    pub callback: &'static str,
    pub message: String,
    /// True when the callback was stopped by the epoch deadline.
    pub deadline_exceeded: bool,
}
