//! Pixel routes: where a tracking pixel's id sits in a request (`/p/{pixel}.gif`,
//! `/px/{pixel}.js`, `?pid=`), as configuration spells them and compiled for the request
//! path. Deserialising a route compiles it, so a parsed configuration holds routes that are
//! ready to use and a bad pattern is an error naming `pixel_routes[i]`.

use serde::{Deserialize, Serialize};

use crate::verdict::{PixelKind, PixelRef};

/// A pixel route as configuration spells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PixelRouteSpec {
    /// A pattern; the kind is `script` for patterns ending in `.js`, else `beacon`.
    Pattern(String),
    /// A pattern with its kind given.
    Explicit {
        pattern: String,
        kind: PixelKindName,
    },
}

/// [`PixelKind`] as configuration spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelKindName {
    Script,
    Beacon,
}

impl From<PixelKindName> for PixelKind {
    fn from(k: PixelKindName) -> PixelKind {
        match k {
            PixelKindName::Script => PixelKind::Script,
            PixelKindName::Beacon => PixelKind::Beacon,
        }
    }
}

impl From<PixelKind> for PixelKindName {
    fn from(k: PixelKind) -> PixelKindName {
        match k {
            PixelKind::Script => PixelKindName::Script,
            PixelKind::Beacon => PixelKindName::Beacon,
        }
    }
}

/// A compiled pixel route. (De)serialised as its [`PixelRouteSpec`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PixelRouteSpec", into = "PixelRouteSpec")]
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

/// The kind a bare pattern implies.
fn implied_kind(pattern: &str) -> PixelKind {
    if pattern.ends_with(".js") {
        PixelKind::Script
    } else {
        PixelKind::Beacon
    }
}

impl PixelRoute {
    /// Compile a route, or say what is wrong with it.
    pub fn compile(spec: &PixelRouteSpec) -> Result<PixelRoute, String> {
        let (pattern, kind) = match spec {
            PixelRouteSpec::Pattern(p) => (p.as_str(), implied_kind(p)),
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

    /// The route as configuration spells it: the bare pattern when it implies the kind.
    pub fn spec(&self) -> PixelRouteSpec {
        let (pattern, kind) = match self {
            PixelRoute::Path {
                prefix,
                suffix,
                kind,
            } => (format!("{prefix}{PLACEHOLDER}{suffix}"), *kind),
            PixelRoute::Query { name, kind } => (format!("?{name}="), *kind),
        };
        if implied_kind(&pattern) == kind {
            PixelRouteSpec::Pattern(pattern)
        } else {
            PixelRouteSpec::Explicit {
                pattern,
                kind: kind.into(),
            }
        }
    }

    /// The pixel a logged request was for, if the route matches: the raw path and the
    /// first occurrence of the parameter, as the control plane attributes access-log
    /// evidence (the edge reads requests with [`PixelRoute::candidates`] instead).
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

impl PixelRoute {
    /// Every id this route finds in a (canonical) path and a raw query: the path's, or the
    /// decoded value of each occurrence of the query parameter (servers differ on which of
    /// a repeated parameter they use, so each counts); only values that are pixel ids
    /// ([`is_pixel_id`]).
    pub fn candidates<'a>(
        &'a self,
        path: &'a str,
        query: &'a str,
    ) -> Vec<(std::borrow::Cow<'a, str>, PixelKind)> {
        let mut ids = match self {
            PixelRoute::Path {
                prefix,
                suffix,
                kind,
            } => path
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                .map(|id| vec![(std::borrow::Cow::Borrowed(id), *kind)])
                .unwrap_or_default(),
            PixelRoute::Query { name, kind } => crate::canon::query_values(query, name)
                .map(|v| (v, *kind))
                .collect(),
        };
        ids.retain(|(id, _)| is_pixel_id(id));
        ids
    }
}

impl TryFrom<PixelRouteSpec> for PixelRoute {
    type Error = String;
    fn try_from(spec: PixelRouteSpec) -> Result<PixelRoute, String> {
        PixelRoute::compile(&spec)
    }
}

impl From<PixelRoute> for PixelRouteSpec {
    fn from(route: PixelRoute) -> PixelRouteSpec {
        route.spec()
    }
}

/// The routes an operator who configures none gets: `/p/{pixel}.gif` (beacon),
/// `/px/{pixel}.js` (script), `?pid=` (beacon).
pub fn default_routes() -> Vec<PixelRoute> {
    let path = |prefix: &str, suffix: &str, kind| PixelRoute::Path {
        prefix: prefix.into(),
        suffix: suffix.into(),
        kind,
    };
    vec![
        path("/p/", ".gif", PixelKind::Beacon),
        path("/px/", ".js", PixelKind::Script),
        PixelRoute::Query {
            name: "pid".into(),
            kind: PixelKind::Beacon,
        },
    ]
}

/// Pixel ids: 1-128 characters of letters, digits, `-`, `_`, `.`.
pub fn is_pixel_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(p: &str) -> Result<PixelRoute, String> {
        PixelRoute::compile(&PixelRouteSpec::Pattern(p.into()))
    }

    #[test]
    fn pixel_routes() {
        let gif = compile("/p/{pixel}.gif").unwrap();
        let js = compile("/px/{pixel}.js").unwrap();
        let q = compile("?pid=").unwrap();
        assert_eq!(
            gif.candidates("/p/abc.gif", ""),
            [("abc".into(), PixelKind::Beacon)]
        );
        assert_eq!(
            js.candidates("/px/abc.js", ""),
            [("abc".into(), PixelKind::Script)]
        );
        assert_eq!(
            q.candidates("/collect", "x=1&pid=abc"),
            [("abc".into(), PixelKind::Beacon)]
        );
        assert_eq!(gif.candidates("/p/.gif", ""), []);
        assert_eq!(gif.candidates("/p/a/b.gif", ""), []);
        assert_eq!(q.candidates("/collect", "pidx=abc"), []);
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
            assert!(compile(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_routes_are_the_three_documented_patterns() {
        let compiled: Vec<PixelRoute> = ["/p/{pixel}.gif", "/px/{pixel}.js", "?pid="]
            .into_iter()
            .map(|p| compile(p).unwrap())
            .collect();
        assert_eq!(default_routes(), compiled);
    }

    #[test]
    fn a_route_serialises_as_its_spec_and_compiles_back_to_itself() {
        let specs = [
            PixelRouteSpec::Pattern("/p/{pixel}.gif".into()),
            PixelRouteSpec::Pattern("/px/{pixel}.js".into()),
            PixelRouteSpec::Pattern("?pid=".into()),
            PixelRouteSpec::Explicit {
                pattern: "/t/{pixel}".into(),
                kind: PixelKindName::Script,
            },
            PixelRouteSpec::Explicit {
                pattern: "/s/{pixel}.js".into(),
                kind: PixelKindName::Beacon,
            },
        ];
        for spec in specs {
            let route = PixelRoute::compile(&spec).unwrap();
            let json = serde_json::to_string(&route).unwrap();
            let back: PixelRoute = serde_json::from_str(&json).unwrap();
            assert_eq!(back, route, "{json}");
            assert_eq!(PixelRoute::compile(&route.spec()).unwrap(), route);
        }
        // A bare pattern stays bare.
        assert_eq!(
            serde_json::to_string(&compile("/p/{pixel}.gif").unwrap()).unwrap(),
            r#""/p/{pixel}.gif""#
        );
        let err = serde_json::from_str::<PixelRoute>(r#""nope""#).unwrap_err();
        assert!(err.to_string().contains("must start with"), "{err}");
    }
}
