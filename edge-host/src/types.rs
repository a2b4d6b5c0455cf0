//! Data types crossing the host API.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
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
    /// Property `request.protocol`: `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
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
            protocol: "HTTP/1.1",
        }
    }

    /// The request header map as the guest sees it: `:authority`, `:path`, `:method`,
    /// `:scheme`, then the regular headers with lower-cased names.
    pub fn header_map(&self) -> Vec<(String, String)> {
        let mut map = Vec::with_capacity(self.headers.len() + 4);
        self.fill_header_map(&mut map);
        map
    }

    /// Overwrites `map` with [`RequestHead::header_map`], reusing the strings already in it
    /// (no allocation when they are large enough: a recycled context's map).
    pub(crate) fn fill_header_map(&self, map: &mut Vec<(String, String)>) {
        let pseudo = [
            (":authority", self.authority.as_str()),
            (":path", self.path.as_str()),
            (":method", self.method.as_str()),
            (":scheme", self.scheme.as_str()),
        ];
        let regular = self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let mut n = 0;
        for (i, (k, v)) in pseudo.into_iter().chain(regular).enumerate() {
            // Names are usually lower case already (hyper's, HTTP/2's): a read-only scan is
            // cheaper than rewriting every byte.
            let lower = i >= pseudo.len()
                && k.bytes()
                    .fold(false, |upper, b| upper | b.is_ascii_uppercase());
            match map.get_mut(i) {
                Some((key, value)) => {
                    key.clear();
                    key.push_str(k);
                    if lower {
                        key.make_ascii_lowercase();
                    }
                    value.clear();
                    value.push_str(v);
                }
                None if lower => map.push((k.to_ascii_lowercase(), v.to_owned())),
                None => map.push((k.to_owned(), v.to_owned())),
            }
            n = i + 1;
        }
        map.truncate(n);
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

/// Header pairs handed out by the host (the request headers of
/// [`FilterOutcome::Continue`]). Reads like a `[(String, String)]` (it derefs to one).
/// Cloning is cheap: the list is shared, reference counted, with the HTTP context it came
/// from, which copies it before the filter changes it, so a holder never sees later edits.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct HeaderList(pub(crate) Arc<Vec<(String, String)>>);

impl HeaderList {
    /// The pairs as an owned vector (copied only if the list is still shared).
    pub fn into_vec(self) -> Vec<(String, String)> {
        Arc::unwrap_or_clone(self.0)
    }
}

impl Deref for HeaderList {
    type Target = [(String, String)];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::fmt::Debug for HeaderList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl From<Vec<(String, String)>> for HeaderList {
    fn from(pairs: Vec<(String, String)>) -> Self {
        HeaderList(Arc::new(pairs))
    }
}

impl From<HeaderList> for Vec<(String, String)> {
    fn from(list: HeaderList) -> Self {
        list.into_vec()
    }
}

impl PartialEq<Vec<(String, String)>> for HeaderList {
    fn eq(&self, other: &Vec<(String, String)>) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<[(String, String)]> for HeaderList {
    fn eq(&self, other: &[(String, String)]) -> bool {
        self.0.as_slice() == other
    }
}

impl<'a> IntoIterator for &'a HeaderList {
    type Item = &'a (String, String);
    type IntoIter = std::slice::Iter<'a, (String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// What the filter decided on request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterOutcome {
    /// Forward the request. `headers` is the request header map after the filter ran,
    /// including the pseudo-headers `:method`, `:path`, `:authority`, `:scheme`.
    Continue {
        context: HttpContextId,
        headers: HeaderList,
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

/// Which side of the stream a body or trailers belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Request,
    Response,
}

/// What the filter decided on a body chunk or on trailers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOutcome {
    /// Forward `data` now: the body buffered so far after the filter's edits (possibly
    /// empty). After trailers, `trailers` is the trailer map after the filter ran.
    Continue {
        data: Vec<u8>,
        trailers: Vec<(String, String)>,
    },
    /// The filter buffers (`StopIterationAndBuffer` before the end of the stream): hand it
    /// the next chunk; the buffer keeps growing.
    Buffer,
    /// The filter stopped at the end of the stream (or on trailers) and has not resumed yet:
    /// deliver call responses, then poll with [`crate::Vm::poll_data`].
    Paused,
    /// Answer with this response instead.
    LocalResponse {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// No filter applies any more (the context is unknown, or its VM trapped and the fail
    /// mode is open): forward the data as received, and the rest of the stream unfiltered.
    Unfiltered,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_map_lower_cases_names_and_reuses_a_map() {
        let mut head = RequestHead::get("/p", "h", ([127, 0, 0, 1], 1).into());
        head.headers = vec![
            ("X-Up".into(), "V".into()),
            ("low".into(), "w".into()),
            ("MiXeD-1".into(), "".into()),
        ];
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let expected = pairs(&[
            (":authority", "h"),
            (":path", "/p"),
            (":method", "GET"),
            (":scheme", "http"),
            ("x-up", "V"),
            ("low", "w"),
            ("mixed-1", ""),
        ]);
        assert_eq!(head.header_map(), expected);
        // Refilling a longer map truncates it; a shorter one grows.
        let mut map = pairs(&[("A", "1"); 9]);
        head.fill_header_map(&mut map);
        assert_eq!(map, expected);
        head.headers.truncate(1);
        head.fill_header_map(&mut map);
        assert_eq!(map, expected[..5]);
        head.headers.push(("Z".into(), "z".into()));
        head.headers.push(("Y".into(), "y".into()));
        head.fill_header_map(&mut map);
        assert_eq!(map[5..], pairs(&[("z", "z"), ("y", "y")]));
    }
}
