//! "Is this contained, and by which action?": a client address, a raw API key, an account,
//! a pixel id, a host or a path, compared with the active actions the way edges compare
//! requests (addresses inside networks, IPv4-mapped IPv6 as IPv4; API keys by their SHA-256;
//! hosts lower case without port; pixels ASCII-case-insensitively, as pixel routes do by
//! default; paths canonical and on whole segments).

use std::net::IpAddr;

use edge_policy::{IpNet, Mode};

use super::action::ActionKind;
use super::records::{ActionRecord, ActionStatus};
use super::{CoreError, CoreResult};

/// What is looked up (validated and in the form actions store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    Ip(IpAddr),
    /// The SHA-256 (hex) of the raw key: the raw key is never kept.
    ApiKey(String),
    Account(String),
    Pixel(String),
    /// A host, a path, or both (a request to that host and path).
    Request {
        host: Option<String>,
        path: Option<String>,
    },
}

impl Query {
    /// `ip`, `api_key`, `account`, `pixel`, `host` or `path` (for the answer).
    pub fn kind(&self) -> &'static str {
        match self {
            Query::Ip(_) => "ip",
            Query::ApiKey(_) => "api_key",
            Query::Account(_) => "account",
            Query::Pixel(_) => "pixel",
            Query::Request { host: Some(_), .. } => "host",
            Query::Request { .. } => "path",
        }
    }
    /// The value as compared (the key's hash for an API key).
    pub fn value(&self) -> String {
        match self {
            Query::Ip(a) => a.to_string(),
            Query::ApiKey(h) => format!("sha256:{h}"),
            Query::Account(v) | Query::Pixel(v) => v.clone(),
            Query::Request { host, path } => format!(
                "{}{}",
                host.as_deref().unwrap_or(""),
                path.as_deref().unwrap_or("")
            ),
        }
    }
}

/// The query parameters, as given.
#[derive(Clone, Debug, Default)]
pub struct LookupInput<'a> {
    pub ip: Option<&'a str>,
    pub api_key: Option<&'a str>,
    pub account: Option<&'a str>,
    pub pixel: Option<&'a str>,
    pub host: Option<&'a str>,
    pub path: Option<&'a str>,
}

/// Exactly one of `ip`, `api_key`, `account`, `pixel`, `host` (which may come with
/// `path`), or `path` alone.
pub fn parse(i: &LookupInput<'_>) -> CoreResult<Query> {
    let given: Vec<&str> = [
        ("ip", i.ip),
        ("api_key", i.api_key),
        ("account", i.account),
        ("pixel", i.pixel),
        ("host", i.host.or(i.path)),
    ]
    .iter()
    .filter(|(_, v)| v.is_some())
    .map(|(n, _)| *n)
    .collect();
    match given.len() {
        0 => {
            return Err(CoreError::invalid(
                "ip",
                "give one of ip, api_key, account, pixel, host (with or without path) or path",
            ))
        }
        1 => {}
        _ => {
            return Err(CoreError::invalid(
                given[1],
                format!(
                    "give only one of {} (path may go with host)",
                    given.join(", ")
                ),
            ))
        }
    }
    if let Some(ip) = i.ip {
        let s = ip.trim();
        let addr: IpAddr = s.parse().map_err(|_| {
            CoreError::invalid(
                "ip",
                format!(
                    "{:?} is not an IP address",
                    s.chars().take(64).collect::<String>()
                ),
            )
        })?;
        // The edge reads an IPv4-mapped client address as IPv4.
        let addr = match addr {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            a => a,
        };
        return Ok(Query::Ip(addr));
    }
    use super::action::TargetInput as T;
    if let Some(k) = i.api_key {
        return Ok(Query::ApiKey(stored("api_key", T::ApiKey(k.into()))?));
    }
    if let Some(a) = i.account {
        return Ok(Query::Account(stored("account", T::Account(a.into()))?));
    }
    if let Some(p) = i.pixel {
        return Ok(Query::Pixel(stored("pixel", T::Pixel(p.into()))?));
    }
    let host = i
        .host
        .map(|h| stored("host", T::Host(h.into())))
        .transpose()?;
    let path = i
        .path
        .map(|p| stored("path", T::PathPrefix(p.into())))
        .transpose()?;
    Ok(Query::Request { host, path })
}

/// `t` in the form actions store it (the target checks an action takes), or the check's
/// refusal naming the lookup's own parameter `field` rather than `target.x`.
fn stored(field: &str, t: super::action::TargetInput) -> CoreResult<String> {
    match super::target::normalise_target(&t, &mut Vec::new()) {
        Ok(t) => Ok(t.value),
        Err(CoreError::Invalid { message, .. }) => Err(CoreError::invalid(field, message)),
        Err(other) => Err(other),
    }
}

/// One action that matches, and what of it matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    pub action_id: i64,
    /// The stored target or scope that matched (`203.0.113.0/24`, `shop.example`).
    pub matched: String,
    /// Whether this action alone contains the query (an enforced block or isolation).
    pub contains: bool,
}

/// The actions of `actions` active at `now` that match `q`, in id order. An allow entry
/// matches too (it is listed, and it exempts a client address from blocks, as at the edge).
pub fn matches(q: &Query, actions: &[ActionRecord], now: i64) -> (Vec<Match>, bool) {
    let mut out = Vec::new();
    let mut allowed = false;
    let mut ids: Vec<&ActionRecord> = actions
        .iter()
        .filter(|a| a.status(now) == ActionStatus::Active)
        .collect();
    ids.sort_by_key(|a| a.id);
    for a in ids {
        let (ty, v) = (a.target.ty, a.target.value.as_str());
        let hit = match (q, ty) {
            (Query::Ip(addr), "cidr") => v.parse::<IpNet>().is_ok_and(|n| n.contains(addr)),
            (Query::ApiKey(h), "api_key") => v == h,
            (Query::Account(x), "account") => v == x,
            (Query::Pixel(x), "pixel") => v.eq_ignore_ascii_case(x),
            (Query::Request { host: Some(h), .. }, "host") => v.eq_ignore_ascii_case(h),
            (Query::Request { path: Some(p), .. }, "path_prefix") => {
                edge_policy::model::path_has_prefix(p, v)
            }
            _ => false,
        };
        if hit {
            let enforced = a.mode == Mode::Enforce;
            allowed |= enforced && a.kind == ActionKind::Allow;
            out.push(Match {
                action_id: a.id,
                matched: v.to_string(),
                contains: enforced && a.kind != ActionKind::Allow,
            });
        }
    }
    // An allow entry for the client exempts it from address blocks (the edge's precedence).
    let contained = out.iter().any(|m| m.contains) && !(allowed && matches!(q, Query::Ip(_)));
    (out, contained)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::action::StoredTarget;
    use crate::domain::fixtures::{action, NOW};

    fn key_hash_hex(raw: &str) -> String {
        edge_policy::KeyHash::of(raw).to_hex()
    }

    fn with(id: i64, kind: ActionKind, ty: &'static str, v: &str) -> ActionRecord {
        let mut a = action(id, 1);
        a.kind = kind;
        a.target = StoredTarget {
            ty,
            value: v.into(),
        };
        a
    }

    fn q(i: LookupInput<'_>) -> Query {
        parse(&i).unwrap()
    }

    #[test]
    fn exactly_one_parameter_names_the_field() {
        let e = parse(&LookupInput::default()).unwrap_err();
        assert!(matches!(e, CoreError::Invalid { field, .. } if field == "ip"));
        let e = parse(&LookupInput {
            ip: Some("1.2.3.4"),
            account: Some("a"),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, CoreError::Invalid { field, .. } if field == "account"));
        let e = parse(&LookupInput {
            ip: Some("1.2.3"),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, CoreError::Invalid { field, .. } if field == "ip"));
        let e = parse(&LookupInput {
            path: Some("/a/%2e%2e/b"),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, CoreError::Invalid { field, .. } if field == "path"));
        // host with path is one request.
        assert_eq!(
            q(LookupInput {
                host: Some("Shop.Example:443"),
                path: Some("//admin/./x"),
                ..Default::default()
            }),
            Query::Request {
                host: Some("shop.example".into()),
                path: Some("/admin/x".into())
            }
        );
    }

    #[test]
    fn addresses_match_networks_and_mapped_addresses_read_as_ipv4() {
        let acts = [
            with(1, ActionKind::Block, "cidr", "203.0.113.0/24"),
            with(2, ActionKind::Block, "cidr", "2001:db8::/32"),
        ];
        for ip in ["203.0.113.7", "::ffff:203.0.113.7", " 203.0.113.255 "] {
            let (m, c) = matches(
                &q(LookupInput {
                    ip: Some(ip),
                    ..Default::default()
                }),
                &acts,
                NOW,
            );
            assert!(c, "{ip}");
            assert_eq!(m[0].action_id, 1);
            assert_eq!(m[0].matched, "203.0.113.0/24");
        }
        let (m, c) = matches(
            &q(LookupInput {
                ip: Some("2001:DB8::1"),
                ..Default::default()
            }),
            &acts,
            NOW,
        );
        assert!(c && m[0].action_id == 2);
        let (m, c) = matches(
            &q(LookupInput {
                ip: Some("198.51.100.1"),
                ..Default::default()
            }),
            &acts,
            NOW,
        );
        assert!(!c && m.is_empty());
    }

    #[test]
    fn keys_are_compared_by_hash_and_allow_and_simulate_do_not_contain() {
        let h = key_hash_hex("sk_live_123");
        let mut sim = with(2, ActionKind::Block, "account", "acct-9");
        sim.mode = Mode::Simulate;
        let acts = [
            with(1, ActionKind::Block, "api_key", &h),
            sim,
            with(3, ActionKind::Block, "cidr", "10.0.0.0/8"),
            with(4, ActionKind::Allow, "cidr", "10.1.0.0/16"),
        ];
        let (m, c) = matches(
            &q(LookupInput {
                api_key: Some("sk_live_123"),
                ..Default::default()
            }),
            &acts,
            NOW,
        );
        assert!(c && m[0].action_id == 1);
        assert_eq!(
            q(LookupInput {
                api_key: Some("sk_live_123"),
                ..Default::default()
            })
            .value(),
            format!("sha256:{h}")
        );
        let (m, c) = matches(
            &q(LookupInput {
                account: Some("acct-9"),
                ..Default::default()
            }),
            &acts,
            NOW,
        );
        assert!(
            !c && m.len() == 1,
            "a simulate rule is listed but contains nothing"
        );
        let (m, c) = matches(
            &q(LookupInput {
                ip: Some("10.1.2.3"),
                ..Default::default()
            }),
            &acts,
            NOW,
        );
        assert_eq!(m.iter().map(|m| m.action_id).collect::<Vec<_>>(), [3, 4]);
        assert!(!c, "the allow entry exempts the client");
    }

    #[test]
    fn hosts_pixels_and_paths_match_as_the_edge_reads_them() {
        let mut lifted = with(9, ActionKind::Block, "pixel", "px-1");
        lifted.state = ActionStatus::Lifted;
        let acts = [
            with(1, ActionKind::Isolate, "host", "shop.example"),
            with(2, ActionKind::Block, "pixel", "PX-1"),
            with(3, ActionKind::Block, "path_prefix", "/admin"),
            lifted,
        ];
        let (m, c) = matches(
            &q(LookupInput {
                host: Some("SHOP.example."),
                ..Default::default()
            }),
            &acts,
            NOW,
        );
        assert!(c && m[0].action_id == 1);
        let (m, _) = matches(
            &q(LookupInput {
                pixel: Some("px-1"),
                ..Default::default()
            }),
            &acts,
            NOW,
        );
        assert_eq!(
            m.iter().map(|m| m.action_id).collect::<Vec<_>>(),
            [2],
            "lifted actions are not listed"
        );
        for (path, hit) in [
            ("/admin", true),
            ("/admin/users", true),
            ("//admin/./x", true),
            ("/administrator", false),
        ] {
            let (_, c) = matches(
                &q(LookupInput {
                    path: Some(path),
                    ..Default::default()
                }),
                &acts,
                NOW,
            );
            assert_eq!(c, hit, "{path}");
        }
    }
}
