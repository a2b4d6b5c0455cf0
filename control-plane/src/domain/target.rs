//! Containment targets as the edge matches them: each kind of target or scope a request
//! names, checked and stored in the form edges compare requests in (host names lower case,
//! path prefixes canonical, IPv4-mapped addresses as IPv4, pixel ids as written), with a
//! warning for every rewrite and an error naming the field for what no edge could match.

use std::net::IpAddr;

use edge_policy::{IpNet, KeyHash};

use super::action::{ScopeInput, StoredTarget, TargetInput};
use super::{CoreError, CoreResult};

fn check_token_like(field: &str, v: &str, max: usize) -> CoreResult<String> {
    if v.is_empty() {
        return Err(CoreError::invalid(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(CoreError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CoreError::invalid(
            field,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(v.to_string())
}

fn normalise_host(field: &str, v: &str, warnings: &mut Vec<String>) -> CoreResult<String> {
    let raw = check_token_like(field, v, 255)?;
    let lower = raw.to_ascii_lowercase();
    let host = edge_policy::model::normalize_host(&lower).to_string();
    if host.is_empty() || host.len() > 253 {
        return Err(CoreError::invalid(
            field,
            "must be a host name of 1 to 253 characters",
        ));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '*'))
    {
        return Err(CoreError::invalid(
            field,
            "must be a host name (letters, digits, '.', '-', no scheme or path)",
        ));
    }
    if host != raw {
        warnings.push(format!(
            "{field}: normalised {raw:?} to {host:?} (lower case, no port, no trailing dot)"
        ));
    }
    Ok(host)
}

/// A path prefix in the canonical form the edge matches requests in
/// (`edge_policy::canon`): `//a/./b/../c` is `/a/c`, with a warning.
fn check_path_prefix(field: &str, v: &str, warnings: &mut Vec<String>) -> CoreResult<String> {
    let p = check_token_like(field, v, 2048)?;
    if !p.starts_with('/') {
        return Err(CoreError::invalid(field, "must start with '/'"));
    }
    if p.contains(['?', '#']) {
        return Err(CoreError::invalid(field, "must not contain '?' or '#'"));
    }
    if p.contains(['%', '\\']) {
        return Err(CoreError::invalid(
            field,
            "must be written decoded, without '%' escapes or '\\' (`/café`, not `/caf%C3%A9`)",
        ));
    }
    let c = edge_policy::canon::canonical_path(&p);
    if c.ambiguous {
        return Err(CoreError::invalid(
            field,
            "is read differently by different servers (an encoded `/` or `\\`, an encoded dot segment, double encoding, a NUL or an invalid escape); write the path as the upstream reads it",
        ));
    }
    if c.canonical != p {
        warnings.push(format!(
            "{field}: normalised {p:?} to {:?} (the form the edge matches requests in)",
            c.canonical
        ));
    }
    Ok(c.canonical.into_owned())
}

/// A pixel id, kept as written: each edge pixel route says whether it compares ids
/// case-insensitively (the default) or exactly, so the control plane must not fold case.
fn check_pixel(field: &str, v: &str) -> CoreResult<String> {
    let p = check_token_like(field, v, 256)?;
    if !edge_policy::pixel::is_pixel_id(&p) {
        return Err(CoreError::invalid(
            field,
            "must be 1 to 128 letters, digits, '-', '_' or '.' (what edges read as a pixel id)",
        ));
    }
    Ok(p)
}

pub fn normalise_target(t: &TargetInput, warnings: &mut Vec<String>) -> CoreResult<StoredTarget> {
    let (ty, value) = match t {
        TargetInput::Cidr(s) => (
            "cidr",
            normalise_cidr("target.cidr", s, warnings)?.to_string(),
        ),
        TargetInput::ApiKey(k) => {
            if k.is_empty() || k.chars().count() > 4096 || k.chars().any(char::is_control) {
                return Err(CoreError::invalid(
                    "target.api_key",
                    "must be 1 to 4096 characters without control characters",
                ));
            }
            ("api_key", KeyHash::of(k).to_hex())
        }
        TargetInput::Account(a) => ("account", check_token_like("target.account", a, 256)?),
        TargetInput::Pixel(p) => ("pixel", check_pixel("target.pixel", p)?),
        TargetInput::Host(h) => ("host", normalise_host("target.host", h, warnings)?),
        TargetInput::PathPrefix(p) => (
            "path_prefix",
            check_path_prefix("target.path_prefix", p, warnings)?,
        ),
    };
    Ok(StoredTarget { ty, value })
}

pub(crate) fn normalise_scope(
    s: &ScopeInput,
    warnings: &mut Vec<String>,
) -> CoreResult<StoredTarget> {
    let (ty, value) = match s {
        ScopeInput::Host(h) => ("host", normalise_host("scope.host", h, warnings)?),
        ScopeInput::PathPrefix(p) => (
            "path_prefix",
            check_path_prefix("scope.path_prefix", p, warnings)?,
        ),
        ScopeInput::Pixel(p) => ("pixel", check_pixel("scope.pixel", p)?),
    };
    Ok(StoredTarget { ty, value })
}

/// Parse an address or CIDR. Host bits are cleared (normalised) and a warning says so.
pub fn normalise_cidr(field: &str, s: &str, warnings: &mut Vec<String>) -> CoreResult<IpNet> {
    if s.chars().count() > crate::schema_items::MAX_CIDR_CHARS {
        return Err(CoreError::invalid(
            field,
            format!(
                "must be at most {} characters",
                crate::schema_items::MAX_CIDR_CHARS
            ),
        ));
    }
    let s = s.trim();
    let net: IpNet = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => {
                return Err(CoreError::invalid(
                    field,
                    format!(
                        "{:?} is not an IP address or CIDR",
                        s.chars().take(64).collect::<String>()
                    ),
                ))
            }
        },
    };
    // An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is the IPv4 network: the edge
    // reads a mapped client address as IPv4, so only the IPv4 rule can match it.
    let net = match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 && v6.network().to_ipv4_mapped().is_some() => {
            let v4 = v6
                .network()
                .to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
            let mapped =
                IpNet::V4(ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).unwrap_or_default());
            warnings.push(format!(
                "{field}: {net} is IPv4-mapped; normalised to {mapped}"
            ));
            mapped
        }
        n => n,
    };
    let trunc = net.trunc();
    if trunc != net {
        warnings.push(format!(
            "{field}: host bits set; normalised {net} to {trunc}"
        ));
    }
    Ok(trunc)
}
