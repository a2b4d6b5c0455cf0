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
use crate::pixel::FoundPixel;
use crate::verdict::{combine, Facts, Verdict};
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

/// Every pixel id the request names under any path reading, each with the kind and case
/// handling of the route that found it, without duplicates.
fn pixels<'a>(
    ex: &'a Extractor,
    readings: &'a PathReadings,
    query: &'a str,
) -> Vec<FoundPixel<'a>> {
    let mut out: Vec<FoundPixel<'a>> = Vec::new();
    for path in readings.all() {
        for p in ex.pixel_ids(path, query) {
            if !out.contains(&p) {
                out.push(p);
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
    let mut verdict: Option<Verdict> = None;
    let read = for_each_reading(needs, ex, req, &mut |f| {
        let v = evaluate(f);
        verdict = Some(verdict.map_or(v, |w| combine(w, v)));
    });
    match read {
        Err(AmbiguousRefused) => Decision::RejectAmbiguous,
        // Never `None`: the first reading is always visited.
        Ok(()) => Decision::Verdict(verdict.unwrap_or(Verdict::ALLOW)),
    }
}

/// The configuration refuses the request's ambiguous path (`"ambiguous_path": "reject"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmbiguousRefused;

/// Visit every reading of `req` that a rule looking at `needs` could tell apart: the
/// request as first read, then each other path reading, each other pixel id and each other
/// API key with the rest as first read. The first reading is always visited unless the
/// path is ambiguous and the configuration refuses such paths. This is how the edge
/// decides a request and how the control plane attributes a logged one to an action.
pub fn for_each_reading(
    needs: Needs,
    ex: &Extractor,
    req: &RawRequest<'_>,
    visit: &mut dyn FnMut(&Facts<'_>),
) -> Result<(), AmbiguousRefused> {
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
        return Err(AmbiguousRefused);
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
    let pixel_at = |i: usize| pixel_ids.get(i).map(FoundPixel::as_ref);
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
    visit(&base);
    for path in &readings.others {
        visit(&Facts { path, ..base });
    }
    for i in 1..pixel_ids.len() {
        visit(&Facts {
            pixel: pixel_at(i),
            ..base
        });
    }
    for k in keys.iter().skip(1) {
        visit(&Facts {
            api_key: Some(k),
            ..base
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
