//! OpenAPI schemas of the strings the server checks, one type per check, so that the
//! document says exactly what `domain/` accepts: utoipa's attributes take only literal
//! patterns and nothing for an array's items, and the same checks recur on many fields.
//! Fields use them with `#[schema(value_type = ...)]`; each pattern is written once here
//! and `tests` holds it against the check it mirrors.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Control characters (Unicode `Cc`), which every text check refuses.
const CTRL: &str = "\\u0000-\\u001f\\u007f-\\u009f";
/// Control characters other than tab and newline (free text may have those).
const CTRL_TEXT: &str = "\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f";
/// White space (Unicode `White_Space`, what the server trims) outside `CTRL`.
const WS: &str = "\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// `domain::check_name`: one line, no control characters, not blank.
pub fn name_pattern() -> String {
    format!("^[^{CTRL}]*[^{CTRL}{WS}][^{CTRL}]*$")
}

/// `domain::check_text` with `required`: tabs and newlines allowed, not blank.
pub fn text_pattern() -> String {
    format!("^[^{CTRL_TEXT}]*[^{CTRL}{WS}][^{CTRL_TEXT}]*$")
}

/// `domain::check_text` without `required`: may be empty.
pub fn free_text_pattern() -> String {
    format!("^[^{CTRL_TEXT}]*$")
}

/// `check_token_like` (pixel ids, accounts): no white space or control characters.
pub fn token_pattern() -> String {
    format!("^[^{CTRL}{WS}]+$")
}

fn string(min: usize, max: usize, pattern: String, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}

/// Declares a string schema type named `$name` (also its name in the document).
macro_rules! string_schema {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr, $pattern:expr, $what:expr) => {
        $(#[$doc])*
        pub struct $name;
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string($min, $max, $pattern, &format!("{} ({} to {} characters)", $what, $min, $max))
            }
        }
        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

string_schema!(
    /// An edge id or boot id in a report.
    Name128, 1, 128, name_pattern(), "one line, not blank");
string_schema!(
    /// A token's name.
    Name100, 1, 100, name_pattern(), "one line, not blank");
string_schema!(
    /// A title, an assignee, an affected system, a data category, a channel, an owner.
    Name200, 1, 200, name_pattern(), "one line, not blank");
string_schema!(
    /// A notification's reference.
    Name500, 1, 500, name_pattern(), "one line, not blank");
string_schema!(
    /// A follow-up's due date as written (`2026-04-01`).
    Name40, 1, 40, name_pattern(), "one line, not blank");
string_schema!(
    /// A reason, a follow-up item, an attack vector.
    Text2000, 1, 2000, text_pattern(), "text, not blank");
string_schema!(
    /// A post-mortem section.
    Text20000, 1, 20000, text_pattern(), "text, not blank");
string_schema!(
    /// A summary, an impact, a note, a GDPR fact.
    FreeText10000, 0, 10000, free_text_pattern(), "text, may be empty");
string_schema!(
    /// Policy changes in a post-mortem.
    FreeText20000, 0, 20000, free_text_pattern(), "text, may be empty");
string_schema!(
    /// A user-agent indicator: a case-insensitive substring of the `User-Agent`.
    UserAgentItem, 3, 256, name_pattern(), "one line");
string_schema!(
    /// An account.
    TokenItem, 1, 256, token_pattern(), "no white space or control characters");
string_schema!(
    /// A pixel id, kept as written (each edge pixel route compares ids case-insensitively
    /// unless configured `"case": "sensitive"`).
    PixelItem, 1, 128, "^[A-Za-z0-9._-]+$".to_string(),
    "letters, digits, `.`, `-`, `_`: what an edge reads as a pixel id");
string_schema!(
    /// An API key in clear (only its SHA-256 is kept).
    ApiKeyItem, 1, 4096, format!("^[^{CTRL}]+$"), "no control characters");
string_schema!(
    /// A path prefix, matched on whole segments.
    PathPrefixItem, 1, 2048, format!("^/[^{CTRL}{WS}?#%\\\\]*$"),
    "starts with `/`, written decoded: no white space, `?`, `#`, `%` or `\\`; dot segments and repeated slashes are resolved, with a warning");
string_schema!(
    /// A host name (lower-cased; a port and a trailing dot are dropped, with a warning).
    HostItem, 1, 255,
    "^([A-Za-z0-9_*-][A-Za-z0-9._*-]*|\\[[0-9A-Fa-f:.]{2,45}\\])(:[0-9]{1,5})?$".to_string(),
    "letters, digits, `.`, `-`, `_`, `*`; no scheme or path");

/// An address or CIDR (`203.0.113.7`, `198.51.100.0/24`, `2001:db8::/48`).
pub struct CidrItem;

/// Longest address or CIDR text accepted, white space included (`normalise_cidr`).
pub const MAX_CIDR_CHARS: usize = 64;

/// One IPv4 octet without leading zeros (the server's parser refuses them).
const OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
const H16: &str = "[0-9a-fA-F]{1,4}";

/// The IPv6 text forms of RFC 4291 section 2.2 without an embedded IPv4 part: eight
/// groups, or a `::` standing for one or more zero groups anywhere.
fn ipv6() -> String {
    let h = H16;
    let mut forms = vec![format!("({h}:){{7}}{h}")];
    // `left` groups before the `::`, at most `7 - left` after it.
    for left in 1..=7 {
        let right = 7 - left;
        forms.push(if right == 0 {
            format!("({h}:){{{left}}}:")
        } else {
            format!("({h}:){{{left}}}(:{h}){{1,{right}}}|({h}:){{{left}}}:")
        });
    }
    forms.push(format!(":(:{h}){{1,7}}|::"));
    format!("({})", forms.join("|"))
}

impl PartialSchema for CidrItem {
    fn schema() -> RefOr<Schema> {
        let v4 = format!("{OCTET}(\\.{OCTET}){{3}}");
        // Surrounding white space is trimmed (what Rust's `str::trim` removes).
        let pad = format!("[\\u0009-\\u000d\\u0085{WS}]*");
        let pattern = format!(
            "^{pad}({v4}(/(3[0-2]|[12]?[0-9]))?|{}(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?){pad}$",
            ipv6()
        );
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(2))
            .max_length(Some(MAX_CIDR_CHARS))
            .pattern(Some(pattern))
            .description(Some(
                "an IPv4 or IPv6 address or CIDR, at most 64 characters; surrounding white space is ignored and host bits are cleared with a warning",
            ))
            .into()
    }
}
impl ToSchema for CidrItem {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{action, check_name, check_text};

    fn regex(schema: RefOr<Schema>) -> regex::Regex {
        let RefOr::T(Schema::Object(o)) = schema else {
            panic!("an object schema")
        };
        let p = o.pattern.expect("a pattern");
        // The document holds `\\uXXXX`, which ECMA-262, Python and the regex crate read alike.
        regex::Regex::new(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    /// Strings a generator would try: blank, padded, every kind of white space and control
    /// character, separators, non-ASCII.
    fn samples() -> Vec<String> {
        let mut v: Vec<String> = [
            "a",
            "alice",
            " a ",
            "a b",
            "a\tb",
            "a\nb",
            "\n",
            "\t",
            " ",
            "",
            "a\rb",
            "\u{1}",
            "a\u{7f}",
            "a\u{85}",
            "\u{a0}",
            "a\u{a0}b",
            "\u{2028}",
            "\u{3000}",
            "\u{feff}",
            "\u{200b}",
            "é",
            "日本",
            "/",
            "/a/b",
            "/a?x",
            "/a#x",
            "a/b",
            "x.example",
            "*.example",
            "[::1]:8080",
            "a:80",
            "A.Example.",
            "-",
            "_",
            "a..",
            ".",
            ":80",
            "00",
            "/a%2Fb",
            "/a\\b",
            "/caf%C3%A9",
            "/café",
            "//a/./b/../c",
            "/a;x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push("x".repeat(200));
        v.push("x".repeat(201));
        v
    }

    /// Every sample the pattern (and the length bounds) accept, the check accepts too.
    fn holds(schema: RefOr<Schema>, check: impl Fn(&str) -> bool, min: usize, max: usize) {
        let re = regex(schema);
        for s in samples() {
            let n = s.chars().count();
            let by_schema = re.is_match(&s) && (min..=max).contains(&n);
            if by_schema {
                assert!(
                    check(&s),
                    "{s:?}: the schema accepts it, the server refuses it"
                );
            }
        }
    }

    #[test]
    fn each_pattern_accepts_only_what_its_check_accepts() {
        holds(
            Name200::schema(),
            |s| check_name("f", s, 200).is_ok(),
            1,
            200,
        );
        holds(
            Text2000::schema(),
            |s| check_text("f", s, 2000, true).is_ok(),
            1,
            2000,
        );
        holds(
            FreeText10000::schema(),
            |s| check_text("f", s, 10_000, false).is_ok(),
            0,
            10_000,
        );
        let target = |t: action::TargetInput| action::normalise_target(&t, &mut Vec::new()).is_ok();
        holds(
            TokenItem::schema(),
            |s| target(action::TargetInput::Account(s.into())),
            1,
            256,
        );
        holds(
            PixelItem::schema(),
            |s| target(action::TargetInput::Pixel(s.into())),
            1,
            128,
        );
        holds(
            ApiKeyItem::schema(),
            |s| target(action::TargetInput::ApiKey(s.into())),
            1,
            4096,
        );
        holds(
            HostItem::schema(),
            |s| target(action::TargetInput::Host(s.into())),
            1,
            255,
        );
        holds(
            PathPrefixItem::schema(),
            |s| target(action::TargetInput::PathPrefix(s.into())),
            1,
            2048,
        );
    }

    #[test]
    fn patterns_refuse_what_checks_refuse() {
        let name = regex(Name200::schema());
        for bad in [
            " ", "", "a\nb", "a\tb", "\u{1}", "a\u{85}", "\u{a0}", "\u{3000}",
        ] {
            assert!(!name.is_match(bad), "{bad:?}");
        }
        let text = regex(Text2000::schema());
        assert!(text.is_match("line one\n\tline two"));
        assert!(!text.is_match("\n\t "));
        let token = regex(TokenItem::schema());
        assert!(!token.is_match("a b") && !token.is_match("a\u{2028}") && token.is_match("Px-1é"));
    }

    #[test]
    fn the_cidr_pattern_matches_what_the_server_parses() {
        let re = regex(CidrItem::schema());
        for ok in [
            "203.0.113.7",
            "198.51.100.0/24",
            "0.0.0.0/0",
            "10.0.0.1/32",
            "2001:db8::/48",
            "::",
            "::1",
            "fe80::1",
            "1:2:3:4:5:6:7:8",
            "1::8",
            "1:2:3:4:5:6:7::",
            "::/0",
            "2001:DB8:0:0:1::1/128",
            " 10.0.0.0/8 ",
            "\u{3000}::1\u{85}",
        ] {
            assert!(re.is_match(ok), "{ok} refused by the pattern");
            assert!(
                action::normalise_cidr("x", ok, &mut Vec::new()).is_ok(),
                "{ok} refused by the server"
            );
        }
        for bad in [
            "00",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4/33",
            "256.1.1.1",
            "2001:db8::/129",
            ":::",
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            "12345::",
            "10.0.0.0/",
        ] {
            assert!(!re.is_match(bad), "{bad} accepted by the pattern");
        }
        let padded = format!("::1{}", " ".repeat(MAX_CIDR_CHARS));
        assert!(
            re.is_match(&padded),
            "the pattern allows padding; the length bound refuses it"
        );
        assert!(action::normalise_cidr("x", &padded, &mut Vec::new()).is_err());
    }
}
