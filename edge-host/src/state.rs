//! Per-VM state held in the wasmtime `Store`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Memory, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::plugin::PluginInner;
use crate::types::{HttpCallResponse, PendingHttpCall, RequestHead};

/// Map types of the ABI.
pub(crate) mod map_type {
    pub const REQUEST_HEADERS: u32 = 0;
    pub const REQUEST_TRAILERS: u32 = 1;
    pub const RESPONSE_HEADERS: u32 = 2;
    pub const RESPONSE_TRAILERS: u32 = 3;
    pub const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
    pub const HTTP_CALL_RESPONSE_TRAILERS: u32 = 7;
}

/// A local response recorded by `proxy_send_local_response`.
#[derive(Debug, Clone)]
pub(crate) struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// State of one HTTP context (one request).
pub(crate) struct HttpCtx {
    pub head: RequestHead,
    pub request_id: String,
    pub request_headers: Vec<(String, String)>,
    pub request_trailers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    pub response_trailers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
    pub response_code: Option<u16>,
    pub local_reply: Option<LocalReply>,
    pub request_resumed: bool,
    pub response_resumed: bool,
    pub reset: bool,
    pub properties: HashMap<String, Vec<u8>>,
}

impl HttpCtx {
    /// The context keeps `head` without its regular headers (they live, lower-cased, in
    /// `request_headers`), so a request is copied once, not twice.
    pub fn new(head: &RequestHead, request_id: String) -> Self {
        let request_headers = head.header_map();
        let head = RequestHead {
            method: head.method.clone(),
            path: head.path.clone(),
            authority: head.authority.clone(),
            scheme: head.scheme.clone(),
            headers: Vec::new(),
            source: head.source,
            body_empty: head.body_empty,
        };
        HttpCtx {
            head,
            request_id,
            request_headers,
            request_trailers: Vec::new(),
            response_headers: Vec::new(),
            response_trailers: Vec::new(),
            request_body: Vec::new(),
            response_body: Vec::new(),
            response_code: None,
            local_reply: None,
            request_resumed: false,
            response_resumed: false,
            reset: false,
            properties: HashMap::new(),
        }
    }
}

pub(crate) struct HostState {
    pub wasi: WasiP1Ctx,
    pub plugin: Arc<PluginInner>,
    /// Unique id of this VM instance within the process.
    pub vm: u64,
    pub root_context: u32,
    pub effective_context: u32,
    pub http: HashMap<u32, HttpCtx>,
    pub root_properties: HashMap<String, Vec<u8>>,
    pub tick_period: Option<Duration>,
    pub next_tick: Option<Instant>,
    pub pending_calls: Vec<PendingHttpCall>,
    /// Token -> context that dispatched the call.
    pub call_owner: HashMap<u32, u32>,
    pub next_token: u32,
    /// The response being delivered during `proxy_on_http_call_response`.
    pub call_response: Option<HttpCallResponse>,
    pub memory: Option<Memory>,
    /// The guest allocator (behind an `Arc`: cloning a `TypedFunc` per call is not free).
    pub alloc: Option<Arc<TypedFunc<u32, u32>>>,
    /// Partial lines written to WASI stdout / stderr.
    pub stdio: [Vec<u8>; 2],
}

impl HostState {
    pub fn new(plugin: Arc<PluginInner>, wasi: WasiP1Ctx, vm: u64) -> Self {
        HostState {
            wasi,
            plugin,
            vm,
            root_context: 1,
            effective_context: 1,
            http: HashMap::new(),
            root_properties: HashMap::new(),
            tick_period: None,
            next_tick: None,
            pending_calls: Vec::new(),
            call_owner: HashMap::new(),
            next_token: 1,
            call_response: None,
            memory: None,
            alloc: None,
            stdio: [Vec::new(), Vec::new()],
        }
    }

    /// The HTTP context the guest is currently acting for, if it is one.
    pub fn http_ctx(&self) -> Option<&HttpCtx> {
        self.http.get(&self.effective_context)
    }

    pub fn http_ctx_mut(&mut self) -> Option<&mut HttpCtx> {
        self.http.get_mut(&self.effective_context)
    }

    /// A header map by ABI map type. `None` for unknown types; maps that do not exist in the
    /// current context read as empty (the SDK panics on anything but `Ok`).
    pub fn map(&self, t: u32) -> Option<&[(String, String)]> {
        use map_type::*;
        const EMPTY: &[(String, String)] = &[];
        match t {
            REQUEST_HEADERS | REQUEST_TRAILERS | RESPONSE_HEADERS | RESPONSE_TRAILERS => {
                Some(self.http_ctx().map_or(EMPTY, |c| match t {
                    REQUEST_HEADERS => &c.request_headers,
                    REQUEST_TRAILERS => &c.request_trailers,
                    RESPONSE_HEADERS => &c.response_headers,
                    _ => &c.response_trailers,
                }))
            }
            HTTP_CALL_RESPONSE_HEADERS => {
                Some(self.call_response.as_ref().map_or(EMPTY, |r| &r.headers))
            }
            HTTP_CALL_RESPONSE_TRAILERS => {
                Some(self.call_response.as_ref().map_or(EMPTY, |r| &r.trailers))
            }
            4 | 5 => Some(EMPTY),
            _ => None,
        }
    }

    /// A mutable header map; `None` when it does not exist in the current context.
    pub fn map_mut(&mut self, t: u32) -> Option<&mut Vec<(String, String)>> {
        use map_type::*;
        match t {
            REQUEST_HEADERS => self.http_ctx_mut().map(|c| &mut c.request_headers),
            REQUEST_TRAILERS => self.http_ctx_mut().map(|c| &mut c.request_trailers),
            RESPONSE_HEADERS => self.http_ctx_mut().map(|c| &mut c.response_headers),
            RESPONSE_TRAILERS => self.http_ctx_mut().map(|c| &mut c.response_trailers),
            HTTP_CALL_RESPONSE_HEADERS => self.call_response.as_mut().map(|r| &mut r.headers),
            HTTP_CALL_RESPONSE_TRAILERS => self.call_response.as_mut().map(|r| &mut r.trailers),
            _ => None,
        }
    }
}
