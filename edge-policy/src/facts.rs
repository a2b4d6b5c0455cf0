//! Turning what a proxy knows about a request into [`Facts`]: client address through
//! trusted `X-Forwarded-For` hops, the bearer JWT's subject, pixel ids from route patterns.
//!
//! Everything here is pure and runs natively in tests; the filter only fetches the raw
//! strings from its host.

use std::net::{IpAddr, SocketAddr};

use base64::Engine;

use crate::config::{FilterConfig, PixelRouteSpec};
use crate::verdict::{PixelKind, PixelRef};

/// Parse a proxy's `source.address`: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:5678`.
pub fn parse_source_address(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    s.parse::<SocketAddr>().ok().map(|sa| sa.ip())
}

/// Resolve the client address.
///
/// `trusted_hops` is the number of proxies in front of this edge that the operator trusts
/// to append to `X-Forwarded-For`. The peer (`source`) is the nearest of them. With 0 trusted
/// hops the peer is the client and `X-Forwarded-For` is ignored; with N, the client is the
/// N-th address from the right of `X-Forwarded-For`, so anything a client wrote further left
/// is never believed. When the header has fewer entries than N, the leftmost entry is used;
/// when the entry is not an address, the peer is. A rightmost entry equal to the peer
/// (Envoy appends the peer when `use_remote_address` is on) is dropped first.
pub fn client_ip(source: Option<IpAddr>, xff: Option<&str>, trusted_hops: u8) -> Option<IpAddr> {
    if trusted_hops == 0 {
        return source;
    }
    let Some(xff) = xff else { return source };
    let mut entries = xff
        .rsplit(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .peekable();
    if let (Some(first), Some(peer)) = (entries.peek(), source) {
        if parse_source_address(first) == Some(peer) {
            entries.next();
        }
    }
    let mut chosen = None;
    for e in entries.take(trusted_hops as usize) {
        chosen = Some(e);
    }
    match chosen {
        Some(e) => parse_source_address(e).or(source),
        None => source,
    }
}

/// The `sub` claim of a bearer JWT in an `Authorization` header, read without verifying
/// the signature (the edge only uses it to find a compromised account's traffic).
pub fn bearer_subject(authorization: &str) -> Option<String> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut parts = token.trim().split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 8192 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Claims {
        sub: Option<serde_json::Value>,
    }
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    match claims.sub? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Split `:path` into path and query.
pub fn split_path(path_and_query: &str) -> (&str, &str) {
    match path_and_query.split_once('?') {
        Some((p, q)) => (p, q),
        None => (path_and_query, ""),
    }
}

/// A compiled pixel route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PixelRoute {
    /// `prefix{pixel}suffix` on the path.
    Path {
        prefix: String,
        suffix: String,
        kind: PixelKind,
    },
    /// `?name=` in the query.
    Query { name: String, kind: PixelKind },
}

const PLACEHOLDER: &str = "{pixel}";

impl PixelRoute {
    /// Compile a route, or say what is wrong with it.
    pub fn compile(spec: &PixelRouteSpec) -> Result<PixelRoute, String> {
        let (pattern, kind) = match spec {
            PixelRouteSpec::Pattern(p) => {
                let kind = if p.ends_with(".js") {
                    PixelKind::Script
                } else {
                    PixelKind::Beacon
                };
                (p.as_str(), kind)
            }
            PixelRouteSpec::Explicit { pattern, kind } => (pattern.as_str(), (*kind).into()),
        };
        if let Some(q) = pattern.strip_prefix('?') {
            let name = q.strip_suffix('=').unwrap_or(q);
            if name.is_empty() || name.contains(['&', '=', '{', '}']) {
                return Err(format!("query pattern {pattern:?} must look like `?pid=`"));
            }
            return Ok(PixelRoute::Query {
                name: name.to_string(),
                kind,
            });
        }
        if !pattern.starts_with('/') {
            return Err(format!("pattern {pattern:?} must start with `/` or `?`"));
        }
        let Some((prefix, suffix)) = pattern.split_once(PLACEHOLDER) else {
            return Err(format!("pattern {pattern:?} must contain {PLACEHOLDER}"));
        };
        if suffix.contains(PLACEHOLDER) {
            return Err(format!(
                "pattern {pattern:?} must contain {PLACEHOLDER} once"
            ));
        }
        Ok(PixelRoute::Path {
            prefix: prefix.into(),
            suffix: suffix.into(),
            kind,
        })
    }

    /// The pixel this request is for, if the route matches.
    pub fn extract<'a>(&self, path: &'a str, query: &'a str) -> Option<PixelRef<'a>> {
        let (id, kind) = match self {
            PixelRoute::Path {
                prefix,
                suffix,
                kind,
            } => {
                let id = path
                    .strip_prefix(prefix.as_str())?
                    .strip_suffix(suffix.as_str())?;
                (id, *kind)
            }
            PixelRoute::Query { name, kind } => {
                let id = query.split('&').find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    (k == name).then_some(v)
                })?;
                (id, *kind)
            }
        };
        is_pixel_id(id).then_some(PixelRef { id, kind })
    }
}

/// Pixel ids: 1-128 characters of letters, digits, `-`, `_`, `.`.
pub fn is_pixel_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Everything compiled from a [`FilterConfig`] that the request path needs.
#[derive(Clone, Debug)]
pub struct Extractor {
    pub trusted_hops: u8,
    pub api_key_header: String,
    pub account_header: Option<String>,
    pub pixel_routes: Vec<PixelRoute>,
}

impl Extractor {
    /// Compile; the configuration must have passed [`FilterConfig::validate`].
    pub fn new(cfg: &FilterConfig) -> Result<Extractor, String> {
        let pixel_routes = cfg
            .pixel_routes
            .iter()
            .map(PixelRoute::compile)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Extractor {
            trusted_hops: cfg.trusted_hops,
            api_key_header: cfg.api_key_header.clone(),
            account_header: cfg.account_header.clone(),
            pixel_routes,
        })
    }

    /// The first pixel route that matches.
    pub fn pixel<'a>(&self, path: &'a str, query: &'a str) -> Option<PixelRef<'a>> {
        self.pixel_routes
            .iter()
            .find_map(|r| r.extract(path, query))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn source_address_with_and_without_port() {
        assert_eq!(parse_source_address("10.1.2.3"), Some(ip("10.1.2.3")));
        assert_eq!(parse_source_address("10.1.2.3:5678"), Some(ip("10.1.2.3")));
        assert_eq!(parse_source_address("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(
            parse_source_address("[2001:db8::1]:443"),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(parse_source_address("nonsense"), None);
    }

    #[test]
    fn xff_with_zero_trusted_hops_is_ignored() {
        let peer = Some(ip("192.0.2.9"));
        assert_eq!(client_ip(peer, Some("203.0.113.7"), 0), peer);
    }

    #[test]
    fn spoofed_entries_beyond_trusted_hops_are_ignored() {
        let peer = Some(ip("10.0.0.1")); // the trusted load balancer
                                         // The client wrote "1.1.1.1" itself; the balancer appended the real address.
        assert_eq!(
            client_ip(peer, Some("1.1.1.1, 203.0.113.7"), 1),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            client_ip(peer, Some("1.1.1.1, 203.0.113.7, 10.0.0.9"), 2),
            Some(ip("203.0.113.7"))
        );
    }

    #[test]
    fn envoy_appended_peer_is_skipped() {
        let peer = Some(ip("10.0.0.1"));
        assert_eq!(
            client_ip(peer, Some("203.0.113.7, 10.0.0.1"), 1),
            Some(ip("203.0.113.7"))
        );
    }

    #[test]
    fn short_or_bad_xff_falls_back() {
        let peer = Some(ip("10.0.0.1"));
        assert_eq!(
            client_ip(peer, Some("203.0.113.7"), 3),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(client_ip(peer, Some("garbage"), 1), peer);
        assert_eq!(client_ip(peer, None, 1), peer);
        assert_eq!(client_ip(peer, Some(" , "), 1), peer);
    }

    fn jwt(payload: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "Bearer {}.{}.sig",
            e.encode(r#"{"alg":"none"}"#),
            e.encode(payload)
        )
    }

    #[test]
    fn bearer_subject_reads_sub() {
        assert_eq!(
            bearer_subject(&jwt(r#"{"sub":"acct-42"}"#)).as_deref(),
            Some("acct-42")
        );
        assert_eq!(bearer_subject(&jwt(r#"{"sub":42}"#)).as_deref(), Some("42"));
        assert_eq!(bearer_subject(&jwt(r#"{"iss":"x"}"#)), None);
        assert_eq!(bearer_subject("Basic abc"), None);
        assert_eq!(bearer_subject("Bearer not-a-jwt"), None);
        assert_eq!(bearer_subject("Bearer a.!!!.c"), None);
    }

    #[test]
    fn pixel_routes() {
        let gif = PixelRoute::compile(&PixelRouteSpec::Pattern("/p/{pixel}.gif".into())).unwrap();
        let js = PixelRoute::compile(&PixelRouteSpec::Pattern("/px/{pixel}.js".into())).unwrap();
        let q = PixelRoute::compile(&PixelRouteSpec::Pattern("?pid=".into())).unwrap();
        assert_eq!(
            gif.extract("/p/abc.gif", ""),
            Some(PixelRef {
                id: "abc",
                kind: PixelKind::Beacon
            })
        );
        assert_eq!(
            js.extract("/px/abc.js", ""),
            Some(PixelRef {
                id: "abc",
                kind: PixelKind::Script
            })
        );
        assert_eq!(
            q.extract("/collect", "x=1&pid=abc"),
            Some(PixelRef {
                id: "abc",
                kind: PixelKind::Beacon
            })
        );
        assert_eq!(gif.extract("/p/.gif", ""), None);
        assert_eq!(gif.extract("/p/a/b.gif", ""), None);
        assert_eq!(q.extract("/collect", "pidx=abc"), None);
        for bad in ["p/{pixel}", "/p/", "/{pixel}/{pixel}", "?", "?a&b="] {
            assert!(
                PixelRoute::compile(&PixelRouteSpec::Pattern(bad.into())).is_err(),
                "{bad}"
            );
        }
    }
}
