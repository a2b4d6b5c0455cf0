//! One request's decision: the raw strings a proxy has, canonicalised ([`crate::canon`]),
//! every reading and every value evaluated, the verdicts combined
//! ([`crate::verdict::combine`]). The filter fetches the strings and carries out the result;
//! everything between is here, pure.
//!
//! Each rule looks at one fact, so the readings are varied one fact at a time: the request
//! as first read, then each other path reading, each other pixel id and each other API key
//! with the rest as first read. A rule that any of them triggers applies.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::canon::{canonical_path, query_values, PathReadings};
use crate::config::AmbiguousPath;
use crate::facts::{bearer_token, split_path, Extractor};
use crate::model::KeyHash;
use crate::verdict::{combine, Facts, PixelKind, PixelRef, Verdict};
use crate::Matcher;

/// What the proxy knows about a request, as raw strings.
#[derive(Clone, Debug, Default)]
pub struct RawRequest<'a> {
    /// The client address after trusted-hop resolution.
    pub client_ip: Option<IpAddr>,
    pub method: &'a str,
    /// Normalised host (lower case, no port).
    pub host: &'a str,
    /// `:path` as received, query included.
    pub path_and_query: &'a str,
    /// Every API key value found in headers (each repeated header on its own).
    pub header_keys: Vec<Cow<'a, str>>,
    /// The `Authorization` header, for an opaque bearer token used as an API key.
    pub authorization: Option<&'a str>,
    pub account: Option<&'a str>,
}

/// What to do with the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Verdict(Verdict),
    /// The path is ambiguous and the configuration refuses such paths (400).
    RejectAmbiguous,
}

/// Whether a bearer token is a JWT (three base64url parts), which is an account's
/// credential and not an API key.
fn is_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

/// Every API key the request carries, from every configured source, without duplicates.
pub fn api_keys<'a>(ex: &'a Extractor, req: &RawRequest<'a>, query: &'a str) -> Vec<Cow<'a, str>> {
    let mut keys: Vec<Cow<'a, str>> = Vec::new();
    let mut add = |k: Cow<'a, str>| {
        let k = match k {
            Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
            Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
        };
        if !k.is_empty() && !keys.contains(&k) {
            keys.push(k);
        }
    };
    for v in &req.header_keys {
        add(v.clone());
    }
    if ex.api_key_bearer {
        if let Some(token) = req.authorization.and_then(bearer_token) {
            if !is_jwt(token) {
                add(Cow::Borrowed(token));
            }
        }
    }
    for name in &ex.api_key_query {
        for v in query_values(query, name) {
            add(v);
        }
    }
    keys
}

/// Every pixel id the request names under any path reading, lower-cased (pixel ids are
/// matched case-insensitively), without duplicates.
fn pixels(ex: &Extractor, readings: &PathReadings, query: &str) -> Vec<(String, PixelKind)> {
    let mut out: Vec<(String, PixelKind)> = Vec::new();
    for path in readings.all() {
        for (id, kind) in ex.pixel_ids(path, query) {
            let id = id.to_ascii_lowercase();
            if !out.iter().any(|(i, k)| *i == id && *k == kind) {
                out.push((id, kind));
            }
        }
    }
    out
}

/// Which facts the policy looks at, so that a request's path is only canonicalised, and its
/// pixel ids and keys only collected, when some rule needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    pub paths: bool,
    pub pixels: bool,
    pub api_keys: bool,
}

impl Needs {
    /// Every fact (the reference semantics look at all of them).
    pub const ALL: Needs = Needs {
        paths: true,
        pixels: true,
        api_keys: true,
    };

    pub fn of(m: &Matcher) -> Needs {
        Needs {
            paths: m.has_paths(),
            pixels: m.has_pixels(),
            api_keys: m.has_api_keys(),
        }
    }
}

/// The decision on `req` under `matcher`.
pub fn decide(
    matcher: &Matcher,
    ex: &Extractor,
    req: &RawRequest<'_>,
    key_hash: &mut dyn FnMut(&str) -> KeyHash,
    now_ms: u64,
) -> Decision {
    decide_with(Needs::of(matcher), ex, req, &mut |f| {
        matcher.evaluate_with(f, key_hash, now_ms)
    })
}

/// The decision on `req` with `evaluate` deciding each reading: the matcher on the
/// request path, the reference semantics ([`crate::naive::evaluate`]) in tests.
pub fn decide_with(
    needs: Needs,
    ex: &Extractor,
    req: &RawRequest<'_>,
    evaluate: &mut dyn FnMut(&Facts<'_>) -> Verdict,
) -> Decision {
    let (raw_path, query) = split_path(req.path_and_query);
    let needs_path = needs.paths || needs.pixels;
    let readings = if needs_path {
        canonical_path(raw_path)
    } else {
        PathReadings {
            canonical: Cow::Borrowed(raw_path),
            others: Vec::new(),
            ambiguous: false,
        }
    };
    if readings.ambiguous && ex.ambiguous_path == AmbiguousPath::Reject {
        return Decision::RejectAmbiguous;
    }
    let pixel_ids = if needs.pixels {
        pixels(ex, &readings, query)
    } else {
        Vec::new()
    };
    let keys = if needs.api_keys {
        api_keys(ex, req, query)
    } else {
        Vec::new()
    };
    let pixel_at = |i: usize| {
        pixel_ids.get(i).map(|(id, kind)| PixelRef {
            id: id.as_str(),
            kind: *kind,
        })
    };
    let base = Facts {
        client_ip: req.client_ip,
        method: req.method,
        host: req.host,
        path: if needs_path {
            &readings.canonical
        } else {
            raw_path
        },
        api_key: keys.first().map(|k| k.as_ref()),
        account: req.account,
        pixel: pixel_at(0),
    };
    let mut v = evaluate(&base);
    for path in &readings.others {
        let f = Facts { path, ..base };
        v = combine(v, evaluate(&f));
    }
    for i in 1..pixel_ids.len() {
        let f = Facts {
            pixel: pixel_at(i),
            ..base
        };
        v = combine(v, evaluate(&f));
    }
    for k in keys.iter().skip(1) {
        let f = Facts {
            api_key: Some(k),
            ..base
        };
        v = combine(v, evaluate(&f));
    }
    Decision::Verdict(v)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
