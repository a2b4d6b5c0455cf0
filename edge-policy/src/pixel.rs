//! Pixel routes: where a tracking pixel's id sits in a request (`/p/{pixel}.gif`,
//! `/px/{pixel}.js`, `?pid=`), as configuration spells them and compiled for the request
//! path. Deserialising a route compiles it, so a parsed configuration holds routes that are
//! ready to use and a bad pattern is an error naming `pixel_routes[i]`.
//!
//! Each route says how its ids compare with the ids in rules ([`PixelCase`]): by default
//! case-insensitively, because pixel ids are usually looked up in case-insensitive stores
//! (an upstream that serves `AbC` as the pixel `abc` must not let `AbC` past a kill of
//! `abc`); `"case": "sensitive"` for an upstream where `AbC` and `abc` are two pixels.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::verdict::{PixelCase, PixelKind, PixelRef};

/// A pixel route as configuration spells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PixelRouteSpec {
    /// A pattern; the kind is `script` for patterns ending in `.js`, else `beacon`; ids
    /// compared case-insensitively.
    Pattern(String),
    /// A pattern with its kind or its case handling given.
    Explicit(ExplicitRoute),
}

/// `{"pattern": ..., "kind": ..., "case": ...}`: what is not given is as for a bare pattern.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplicitRoute {
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<PixelKindName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<PixelCaseName>,
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

/// [`PixelCase`] as configuration spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelCaseName {
    Insensitive,
    Sensitive,
}

impl From<PixelCaseName> for PixelCase {
    fn from(c: PixelCaseName) -> PixelCase {
        match c {
            PixelCaseName::Insensitive => PixelCase::Insensitive,
            PixelCaseName::Sensitive => PixelCase::Sensitive,
        }
    }
}

impl From<PixelCase> for PixelCaseName {
    fn from(c: PixelCase) -> PixelCaseName {
        match c {
            PixelCase::Insensitive => PixelCaseName::Insensitive,
            PixelCase::Sensitive => PixelCaseName::Sensitive,
        }
    }
}

/// Where in the request a route finds the id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// `prefix{pixel}suffix` on the path.
    Path { prefix: String, suffix: String },
    /// `?name=` in the query.
    Query { name: String },
}

/// A compiled pixel route. (De)serialised as its [`PixelRouteSpec`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PixelRouteSpec", into = "PixelRouteSpec")]
pub struct PixelRoute {
    pub place: Place,
    pub kind: PixelKind,
    pub case: PixelCase,
}

/// A pixel id a route found in a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundPixel<'a> {
    pub id: Cow<'a, str>,
    pub kind: PixelKind,
    pub case: PixelCase,
}

impl FoundPixel<'_> {
    pub fn as_ref(&self) -> PixelRef<'_> {
        PixelRef {
            id: &self.id,
            kind: self.kind,
            case: self.case,
        }
    }
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
        let (pattern, kind, case) = match spec {
            PixelRouteSpec::Pattern(p) => (p.as_str(), None, None),
            PixelRouteSpec::Explicit(e) => (e.pattern.as_str(), e.kind, e.case),
        };
        let kind = kind.map_or_else(|| implied_kind(pattern), PixelKind::from);
        let case = case.map_or(PixelCase::default(), PixelCase::from);
        let place = Self::place(pattern)?;
        Ok(PixelRoute { place, kind, case })
    }

    fn place(pattern: &str) -> Result<Place, String> {
        if let Some(q) = pattern.strip_prefix('?') {
            let name = q.strip_suffix('=').unwrap_or(q);
            if name.is_empty() || name.contains(['&', '=', '{', '}']) {
                return Err(format!("query pattern {pattern:?} must look like `?pid=`"));
            }
            return Ok(Place::Query { name: name.into() });
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
        Ok(Place::Path {
            prefix: prefix.into(),
            suffix: suffix.into(),
        })
    }

    /// The route as configuration spells it: the bare pattern when it implies the kind and
    /// compares case-insensitively.
    pub fn spec(&self) -> PixelRouteSpec {
        let pattern = match &self.place {
            Place::Path { prefix, suffix } => format!("{prefix}{PLACEHOLDER}{suffix}"),
            Place::Query { name } => format!("?{name}="),
        };
        let kind = (implied_kind(&pattern) != self.kind).then_some(self.kind.into());
        let case = (self.case != PixelCase::default()).then_some(self.case.into());
        if kind.is_none() && case.is_none() {
            PixelRouteSpec::Pattern(pattern)
        } else {
            PixelRouteSpec::Explicit(ExplicitRoute {
                pattern,
                kind,
                case,
            })
        }
    }

    /// Every id this route finds in a (canonical) path and a raw query: the path's, or the
    /// decoded value of each occurrence of the query parameter (servers differ on which of
    /// a repeated parameter they use, so each counts); only values that are pixel ids
    /// ([`is_pixel_id`]).
    pub fn candidates<'a>(&'a self, path: &'a str, query: &'a str) -> Vec<FoundPixel<'a>> {
        let found = |id: Cow<'a, str>| FoundPixel {
            id,
            kind: self.kind,
            case: self.case,
        };
        let mut ids: Vec<FoundPixel<'a>> = match &self.place {
            Place::Path { prefix, suffix } => path
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                .map(|id| vec![found(Cow::Borrowed(id))])
                .unwrap_or_default(),
            Place::Query { name } => crate::canon::query_values(query, name).map(found).collect(),
        };
        ids.retain(|p| is_pixel_id(&p.id));
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
/// `/px/{pixel}.js` (script), `?pid=` (beacon), all case-insensitive.
pub fn default_routes() -> Vec<PixelRoute> {
    let route = |place, kind| PixelRoute {
        place,
        kind,
        case: PixelCase::Insensitive,
    };
    let path = |prefix: &str, suffix: &str| Place::Path {
        prefix: prefix.into(),
        suffix: suffix.into(),
    };
    vec![
        route(path("/p/", ".gif"), PixelKind::Beacon),
        route(path("/px/", ".js"), PixelKind::Script),
        route(Place::Query { name: "pid".into() }, PixelKind::Beacon),
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

    fn ids<'a>(r: &'a PixelRoute, path: &'a str, query: &'a str) -> Vec<(String, PixelKind)> {
        r.candidates(path, query)
            .into_iter()
            .map(|p| (p.id.into_owned(), p.kind))
            .collect()
    }

    #[test]
    fn pixel_routes() {
        let gif = compile("/p/{pixel}.gif").unwrap();
        let js = compile("/px/{pixel}.js").unwrap();
        let q = compile("?pid=").unwrap();
        assert_eq!(
            ids(&gif, "/p/abc.gif", ""),
            [("abc".into(), PixelKind::Beacon)]
        );
        assert_eq!(
            ids(&js, "/px/abc.js", ""),
            [("abc".into(), PixelKind::Script)]
        );
        assert_eq!(
            ids(&q, "/collect", "x=1&pid=abc"),
            [("abc".into(), PixelKind::Beacon)]
        );
        assert_eq!(
            ids(&q, "/collect", "pid=a&pid=B%43"),
            [
                ("a".into(), PixelKind::Beacon),
                ("BC".into(), PixelKind::Beacon)
            ]
        );
        assert_eq!(ids(&gif, "/p/.gif", ""), []);
        assert_eq!(ids(&gif, "/p/a/b.gif", ""), []);
        assert_eq!(ids(&q, "/collect", "pidx=abc"), []);
        for bad in ["p/{pixel}", "/p/", "/{pixel}/{pixel}", "?", "?a&b="] {
            assert!(compile(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_route_compares_ids_case_insensitively_unless_it_says_sensitive() {
        let parse = |json: &str| serde_json::from_str::<PixelRoute>(json).unwrap();
        let default = parse(r#""/p/{pixel}.gif""#);
        let sensitive = parse(r#"{"pattern": "/p/{pixel}.gif", "case": "sensitive"}"#);
        assert_eq!(default.case, PixelCase::Insensitive);
        assert_eq!(sensitive.case, PixelCase::Sensitive);
        assert_eq!(sensitive.kind, PixelKind::Beacon, "kind still implied");
        let found = default.candidates("/p/AbC.gif", "");
        assert!(found[0].as_ref().is("abc") && found[0].as_ref().is("ABC"));
        let found = sensitive.candidates("/p/AbC.gif", "");
        assert!(found[0].as_ref().is("AbC"));
        assert!(!found[0].as_ref().is("abc"));
        for bad in [
            r#"{"pattern": "/p/{pixel}", "case": "upper"}"#,
            r#"{"pattern": "/p/{pixel}", "Case": "sensitive"}"#,
        ] {
            assert!(serde_json::from_str::<PixelRoute>(bad).is_err(), "{bad}");
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
        let explicit = |pattern: &str, kind, case| {
            PixelRouteSpec::Explicit(ExplicitRoute {
                pattern: pattern.into(),
                kind,
                case,
            })
        };
        let specs = [
            PixelRouteSpec::Pattern("/p/{pixel}.gif".into()),
            PixelRouteSpec::Pattern("/px/{pixel}.js".into()),
            PixelRouteSpec::Pattern("?pid=".into()),
            explicit("/t/{pixel}", Some(PixelKindName::Script), None),
            explicit("/s/{pixel}.js", Some(PixelKindName::Beacon), None),
            explicit("/u/{pixel}.js", None, Some(PixelCaseName::Sensitive)),
            explicit(
                "?u=",
                Some(PixelKindName::Script),
                Some(PixelCaseName::Sensitive),
            ),
        ];
        for spec in specs {
            let route = PixelRoute::compile(&spec).unwrap();
            assert_eq!(route.spec(), spec);
            let json = serde_json::to_string(&route).unwrap();
            let back: PixelRoute = serde_json::from_str(&json).unwrap();
            assert_eq!(back, route, "{json}");
        }
        // A bare pattern stays bare, and so does one that spells out the defaults.
        assert_eq!(
            serde_json::to_string(&compile("/p/{pixel}.gif").unwrap()).unwrap(),
            r#""/p/{pixel}.gif""#
        );
        let spelt = explicit(
            "/p/{pixel}.gif",
            Some(PixelKindName::Beacon),
            Some(PixelCaseName::Insensitive),
        );
        assert_eq!(
            PixelRoute::compile(&spelt).unwrap().spec(),
            PixelRouteSpec::Pattern("/p/{pixel}.gif".into())
        );
        let err = serde_json::from_str::<PixelRoute>(r#""nope""#).unwrap_err();
        assert!(err.to_string().contains("must start with"), "{err}");
    }
}
