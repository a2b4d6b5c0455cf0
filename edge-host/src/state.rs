//! Per-VM state held in the wasmtime `Store`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Memory, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::runtime::PluginInner;
use crate::types::{Direction, HttpCallResponse, PendingHttpCall, RequestHead};

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

/// Spare contexts a VM keeps for reuse (see [`HttpCtx::recycle`]).
const MAX_SPARE_CONTEXTS: usize = 32;
/// A finished context holding more than this many bytes of buffers is dropped, not kept.
const MAX_RETAINED_BYTES: usize = 16 * 1024;

/// Hasher for the ids the host assigns (context ids, call tokens): a multiplicative hash,
/// much cheaper than SipHash on the per-request path. These keys are not chosen by a client.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(*b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by a host-assigned id.
pub(crate) type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// State of one HTTP context (one request). Contexts are recycled: a finished one is
/// reset and reused by a later request of the same VM, so its strings and vectors keep
/// their allocations ([`HttpCtx::start`]).
pub(crate) struct HttpCtx {
    /// The request as it reached the filter, without its regular headers (they live,
    /// lower-cased, in `request_headers`).
    pub head: RequestHead,
    pub request_id: String,
    /// Shared with the [`crate::FilterOutcome::Continue`] handed out for this request;
    /// copied on write if still shared when the filter changes it.
    pub request_headers: Arc<Vec<(String, String)>>,
    pub request_trailers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    pub response_trailers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
    pub response_code: Option<u16>,
    pub local_reply: Option<LocalReply>,
    pub request_resumed: bool,
    pub response_resumed: bool,
    /// The response has a body the filter will see: the context ends after it, not after
    /// the response headers.
    pub response_body_follows: bool,
    pub reset: bool,
    pub properties: HashMap<String, Vec<u8>>,
}

fn set_string(dst: &mut String, src: &str) {
    dst.clear();
    dst.push_str(src);
}

impl HttpCtx {
    fn empty() -> Self {
        HttpCtx {
            head: RequestHead::get("", "", std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
            request_id: String::new(),
            request_headers: Arc::default(),
            request_trailers: Vec::new(),
            response_headers: Vec::new(),
            response_trailers: Vec::new(),
            request_body: Vec::new(),
            response_body: Vec::new(),
            response_code: None,
            local_reply: None,
            request_resumed: false,
            response_resumed: false,
            response_body_follows: false,
            reset: false,
            properties: HashMap::new(),
        }
    }

    /// A context for request `id` of VM `vm`: a spare one of `state` if there is one (its
    /// allocations reused), else a new one. `x-request-id` (else `VM-ID` in hex) is the
    /// property `request.id`.
    pub fn start(state: &mut HostState, head: &RequestHead, id: u32) -> Box<HttpCtx> {
        let mut ctx = state
            .spare
            .pop()
            .unwrap_or_else(|| Box::new(HttpCtx::empty()));
        let h = &mut ctx.head;
        set_string(&mut h.method, &head.method);
        set_string(&mut h.path, &head.path);
        set_string(&mut h.authority, &head.authority);
        set_string(&mut h.scheme, &head.scheme);
        h.headers.clear();
        h.source = head.source;
        h.body_empty = head.body_empty;
        h.protocol = head.protocol;
        ctx.request_id.clear();
        match head
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
        {
            Some((_, v)) => ctx.request_id.push_str(v),
            None => {
                let _ = write!(ctx.request_id, "{:08x}-{id:08x}", state.vm);
            }
        }
        match Arc::get_mut(&mut ctx.request_headers) {
            Some(map) => head.fill_header_map(map),
            // Still shared with the outcome of an earlier request: leave that one alone.
            None => ctx.request_headers = Arc::new(head.header_map()),
        }
        ctx.request_trailers.clear();
        ctx.response_headers.clear();
        ctx.response_trailers.clear();
        ctx.request_body.clear();
        ctx.response_body.clear();
        ctx.response_code = None;
        ctx.local_reply = None;
        ctx.request_resumed = false;
        ctx.response_resumed = false;
        ctx.response_body_follows = false;
        ctx.reset = false;
        ctx.properties.clear();
        ctx
    }

    /// The body buffer of `dir`.
    pub fn body_mut(&mut self, dir: Direction) -> &mut Vec<u8> {
        match dir {
            Direction::Request => &mut self.request_body,
            Direction::Response => &mut self.response_body,
        }
    }

    /// The trailer map of `dir`.
    pub fn trailers_mut(&mut self, dir: Direction) -> &mut Vec<(String, String)> {
        match dir {
            Direction::Request => &mut self.request_trailers,
            Direction::Response => &mut self.response_trailers,
        }
    }

    /// The "resumed since the last callback" flag of `dir` (`proxy_continue_stream`).
    pub fn resumed_mut(&mut self, dir: Direction) -> &mut bool {
        match dir {
            Direction::Request => &mut self.request_resumed,
            Direction::Response => &mut self.response_resumed,
        }
    }

    /// Puts a finished context aside for reuse, unless the VM already keeps enough spares
    /// or this one holds large buffers (those are freed with it).
    pub fn recycle(mut self: Box<Self>, state: &mut HostState) {
        if state.spare.len() >= MAX_SPARE_CONTEXTS {
            return;
        }
        self.local_reply = None;
        self.properties.clear();
        let pairs = |v: &[(String, String)]| -> usize {
            v.iter().map(|(k, x)| k.capacity() + x.capacity()).sum()
        };
        let h = &self.head;
        let retained = h.method.capacity()
            + h.path.capacity()
            + h.authority.capacity()
            + h.scheme.capacity()
            + self.request_id.capacity()
            + pairs(&self.request_headers)
            + pairs(&self.request_trailers)
            + pairs(&self.response_headers)
            + pairs(&self.response_trailers)
            + self.request_body.capacity()
            + self.response_body.capacity();
        if retained <= MAX_RETAINED_BYTES {
            state.spare.push(self);
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
    /// The export name of the guest callback running now (`proxy_on_tick`, ...), for host
    /// calls that a host profile allows only in some callbacks.
    pub callback: &'static str,
    pub http: IdMap<Box<HttpCtx>>,
    /// Finished contexts kept for reuse ([`HttpCtx::recycle`]). Boxed like the live ones in
    /// `http`, so moving a context between the two moves a pointer, not ~400 bytes.
    #[allow(clippy::vec_box)]
    pub spare: Vec<Box<HttpCtx>>,
    pub root_properties: HashMap<String, Vec<u8>>,
    pub tick_period: Option<Duration>,
    pub next_tick: Option<Instant>,
    pub pending_calls: Vec<PendingHttpCall>,
    /// Token -> context that dispatched the call.
    pub call_owner: IdMap<u32>,
    pub next_token: u32,
    /// The response being delivered during `proxy_on_http_call_response`.
    pub call_response: Option<HttpCallResponse>,
    pub memory: Option<Memory>,
    /// The guest allocator (behind an `Arc`: cloning a `TypedFunc` per call is not free).
    pub alloc: Option<Arc<TypedFunc<u32, u32>>>,
    /// Partial lines written to WASI stdout / stderr.
    pub stdio: [Vec<u8>; 2],
    /// Reusable buffer for bytes on their way into the guest (a property value, an encoded
    /// header map); taken and put back around the copy.
    pub scratch: Vec<u8>,
}

impl HostState {
    pub fn new(plugin: Arc<PluginInner>, wasi: WasiP1Ctx, vm: u64) -> Self {
        HostState {
            wasi,
            plugin,
            vm,
            root_context: 1,
            effective_context: 1,
            callback: "",
            http: IdMap::default(),
            spare: Vec::new(),
            root_properties: HashMap::new(),
            tick_period: None,
            next_tick: None,
            pending_calls: Vec::new(),
            call_owner: IdMap::default(),
            next_token: 1,
            call_response: None,
            memory: None,
            alloc: None,
            stdio: [Vec::new(), Vec::new()],
            scratch: Vec::new(),
        }
    }

    /// The HTTP context the guest is currently acting for, if it is one.
    pub fn http_ctx(&self) -> Option<&HttpCtx> {
        self.http.get(&self.effective_context).map(|c| &**c)
    }

    pub fn http_ctx_mut(&mut self) -> Option<&mut HttpCtx> {
        self.http.get_mut(&self.effective_context).map(|c| &mut **c)
    }

    /// A header map by ABI map type. `None` for unknown types; maps that do not exist in the
    /// current context read as empty (the SDK panics on anything but `Ok`).
    pub fn map(&self, t: u32) -> Option<&[(String, String)]> {
        use map_type::*;
        const EMPTY: &[(String, String)] = &[];
        match t {
            REQUEST_HEADERS | REQUEST_TRAILERS | RESPONSE_HEADERS | RESPONSE_TRAILERS => {
                Some(self.http_ctx().map_or(EMPTY, |c| match t {
                    REQUEST_HEADERS => c.request_headers.as_slice(),
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
            REQUEST_HEADERS => self
                .http_ctx_mut()
                .map(|c| Arc::make_mut(&mut c.request_headers)),
            REQUEST_TRAILERS => self.http_ctx_mut().map(|c| &mut c.request_trailers),
            RESPONSE_HEADERS => self.http_ctx_mut().map(|c| &mut c.response_headers),
            RESPONSE_TRAILERS => self.http_ctx_mut().map(|c| &mut c.response_trailers),
            HTTP_CALL_RESPONSE_HEADERS => self.call_response.as_mut().map(|r| &mut r.headers),
            HTTP_CALL_RESPONSE_TRAILERS => self.call_response.as_mut().map(|r| &mut r.trailers),
            _ => None,
        }
    }
}
