//! Turning what a proxy knows about a request into [`Facts`]: client address through
//! trusted `X-Forwarded-For` hops, the bearer JWT's subject, pixel ids from the configured
//! routes ([`crate::pixel`]).
//!
//! Everything here is pure and runs natively in tests; the filter only fetches the raw
//! strings from its host.

use std::net::{IpAddr, SocketAddr};

use base64::Engine;

use crate::config::FilterConfig;
use crate::pixel::PixelRoute;

/// Parse a proxy's `source.address` or an `X-Forwarded-For` entry: `1.2.3.4`,
/// `1.2.3.4:5678`, `::1`, `[::1]`, `[::1]:5678`. An IPv4-mapped IPv6 address
/// (`::ffff:1.2.3.4`, in any spelling) is the IPv4 address, as dual-stack sockets report
/// IPv4 clients that way.
pub fn parse_source_address(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let ip = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|sa| sa.ip()))
        .or_else(|| {
            s.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|r| r.parse::<IpAddr>().ok())
        })?;
    Some(ip.to_canonical())
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

/// The token of an `Authorization: Bearer` header (the scheme is case-insensitive).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The `sub` claim of a bearer JWT in an `Authorization` header, read without verifying
/// the signature (the edge only uses it to find a compromised account's traffic).
pub fn bearer_subject(authorization: &str) -> Option<String> {
    let token = bearer_token(authorization)?;
    let mut parts = token.split('.');
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

/// Everything compiled from a [`FilterConfig`] that the request path needs.
#[derive(Clone, Debug)]
pub struct Extractor {
    pub trusted_hops: u8,
    pub api_key_header: String,
    pub account_header: Option<String>,
    pub pixel_routes: Vec<PixelRoute>,
    pub api_key_query: Vec<String>,
    pub api_key_bearer: bool,
    pub ambiguous_path: crate::config::AmbiguousPath,
}

impl Extractor {
    /// From a parsed configuration, whose pixel routes are compiled already (they compile
    /// as they are deserialised), so this cannot fail; the `Result` is kept for callers.
    pub fn new(cfg: &FilterConfig) -> Result<Extractor, String> {
        Ok(Extractor {
            trusted_hops: cfg.trusted_hops,
            api_key_header: cfg.api_key_header.clone(),
            account_header: cfg.account_header.clone(),
            pixel_routes: cfg.pixel_routes.clone(),
            api_key_query: cfg.api_key_query.clone(),
            api_key_bearer: cfg.api_key_bearer,
            ambiguous_path: cfg.ambiguous_path,
        })
    }

    /// What the control plane uses to read a logged request as an edge with these pixel
    /// routes would (no credential sources: access logs carry none; every path reading).
    pub fn for_logs(pixel_routes: &[PixelRoute]) -> Extractor {
        Extractor {
            trusted_hops: 0,
            api_key_header: String::new(),
            account_header: None,
            pixel_routes: pixel_routes.to_vec(),
            api_key_query: Vec::new(),
            api_key_bearer: false,
            ambiguous_path: crate::config::AmbiguousPath::Match,
        }
    }

    /// Every pixel id the configured routes find in a (canonical) path and a raw query.
    pub fn pixel_ids<'a>(
        &'a self,
        path: &'a str,
        query: &'a str,
    ) -> impl Iterator<Item = crate::pixel::FoundPixel<'a>> + 'a {
        self.pixel_routes
            .iter()
            .flat_map(move |r| r.candidates(path, query))
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
        for mapped in [
            "::ffff:10.1.2.3",
            "::FFFF:10.1.2.3",
            "::ffff:a01:203",
            "0:0:0:0:0:ffff:10.1.2.3",
            "[::ffff:10.1.2.3]:80",
            "[::ffff:10.1.2.3]",
        ] {
            assert_eq!(
                parse_source_address(mapped),
                Some(ip("10.1.2.3")),
                "{mapped}"
            );
        }
        assert_eq!(
            parse_source_address("[2001:db8::1]"),
            Some(ip("2001:db8::1"))
        );
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
    fn the_extractor_uses_the_configured_routes_with_their_kind() {
        let json = r#"{"control_plane": {"cluster": "c", "authority": "a", "trusted_keys": ["ed25519:6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw="]}, "edge_token": "x",
            "edge_id": "e", "pixel_routes": [{"pattern": "/t/{pixel}", "kind": "script"}]}"#;
        let c = FilterConfig::parse(json.as_bytes()).unwrap();
        let ex = Extractor::new(&c).unwrap();
        let ids: Vec<_> = ex.pixel_ids("/t/abc", "").collect();
        assert_eq!(ids.len(), 1);
        assert_eq!(
            (&*ids[0].id, ids[0].kind),
            ("abc", crate::PixelKind::Script)
        );
        assert_eq!(ex.pixel_ids("/p/abc.gif", "").count(), 0);
    }
}
