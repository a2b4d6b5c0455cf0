//! Turning what a proxy knows about a request into [`Facts`]: client address through
//! trusted `X-Forwarded-For` hops, the bearer JWT's subject, pixel ids from the configured
//! routes ([`crate::pixel`]).
//!
//! Everything here is pure and runs natively in tests; the filter only fetches the raw
//! strings from its host.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use base64::Engine;

use crate::config::FilterConfig;
use crate::pixel::PixelRoute;

/// Parse a proxy's `source.address` or an `X-Forwarded-For` entry: `1.2.3.4`,
/// `1.2.3.4:5678`, `::1`, `[::1]`, `[::1]:5678`. An IPv4-mapped IPv6 address
/// (`::ffff:1.2.3.4`, in any spelling) is the IPv4 address, as dual-stack sockets report
/// IPv4 clients that way.
pub fn parse_source_address(s: &str) -> Option<IpAddr> {
    if let Some(v4) = ipv4_with_port(s.as_bytes()) {
        return Some(IpAddr::V4(v4));
    }
    let s = s.trim();
    if let Some(v4) = ipv4_with_port(s.as_bytes()) {
        return Some(IpAddr::V4(v4));
    }
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

/// `a.b.c.d` or `a.b.c.d:port`, as the standard parsers read them (octets 0-255 without a
/// leading zero, a port of 1 to 5 digits up to 65535), without their cost: this is every
/// request's `source.address`. `None` for anything else, which the general path reads.
fn ipv4_with_port(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v: u32 = 0;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            v = v * 10 + u32::from(d - b'0');
            i += 1;
            if i - start > 3 {
                return None;
            }
        }
        let digits = i - start;
        if digits == 0 || (digits > 1 && b.get(start) == Some(&b'0')) {
            return None;
        }
        *octet = u8::try_from(v).ok()?;
    }
    match b.get(i) {
        None => {}
        Some(b':') => {
            let port = b.get(i + 1..)?;
            if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let v = port.iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
            if v > 65535 {
                return None;
            }
        }
        Some(_) => return None,
    }
    Some(Ipv4Addr::from(octets))
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

    /// The standard parsers' reading of an IPv4 address with or without a port.
    fn std_v4(s: &str) -> Option<Ipv4Addr> {
        s.parse::<Ipv4Addr>()
            .ok()
            .or_else(|| s.parse::<std::net::SocketAddrV4>().ok().map(|a| *a.ip()))
    }

    #[test]
    fn the_ipv4_fast_path_reads_what_the_standard_parsers_read() {
        for s in [
            "1.2.3.4",
            "1.2.3.4:5",
            "255.255.255.255:65535",
            "0.0.0.0:0",
            "10.0.0.1:0080",
            "1.2.3.4:65536",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.",
            "1.2.3.4:",
            "256.1.1.1",
            "1.2.3.4:1:2",
            "1..2.3",
            "a.b.c.d",
            "1.2.3.4:123456",
            "",
            "1.2.3.4 ",
        ] {
            if let Some(ip) = ipv4_with_port(s.as_bytes()) {
                assert_eq!(Some(ip), std_v4(s), "{s:?}");
            }
            assert_eq!(
                parse_source_address(s),
                std_v4(s.trim()).map(IpAddr::V4),
                "{s:?}"
            );
        }
        assert_eq!(
            ipv4_with_port(b"203.0.113.7:51234"),
            Some(Ipv4Addr::new(203, 0, 113, 7))
        );
    }

    proptest::proptest! {
        #[test]
        fn the_ipv4_fast_path_agrees_with_the_standard_parsers(s in "[0-9.:]{0,24}") {
            if let Some(ip) = ipv4_with_port(s.as_bytes()) {
                proptest::prop_assert_eq!(Some(ip), std_v4(&s));
            }
            // Whatever the fast path declines, the result is the general reading.
            let general = s.parse::<IpAddr>().ok()
                .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
                .map(|ip| ip.to_canonical());
            proptest::prop_assert_eq!(parse_source_address(&s), general);
        }
    }

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
