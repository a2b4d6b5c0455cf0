//! Canonical request paths: one form per resource, and every reading of an ambiguous path.
//!
//! The upstream behind the edge (nginx, Express, Go, Tomcat, a CDN) decides which resource a
//! path names, and the edge must decide on the same resource, or a rule on `/admin` is
//! escaped by `//admin`, `/x/../admin`, `/%61dmin` or `/admin;x`. [`canonical_path`] gives the
//! path in one canonical form (RFC 3986 section 6.2.2 plus what common servers do):
//!
//! - `\` is a `/` (IIS, and many frameworks on Windows);
//! - every valid `%XX` escape is decoded, except those whose byte would change the path's
//!   structure or is not printable (`/`, `\`, `%`, `?`, `#`, control bytes); bytes that are
//!   not printable ASCII, and those kept, are written `%XX` with upper-case hex, so `é`,
//!   `%c3%a9` and `%C3%A9` are one form and `!` and `%21` another;
//! - repeated slashes are one;
//! - `;parameters` of a segment are dropped (`/admin;jsessionid=1`, Tomcat's `/..;/`);
//! - `.` and `..` segments are resolved, never above the root;
//! - a trailing slash is kept.
//!
//! Some spellings have no single reading, because common servers differ on them: an encoded
//! separator (`%2F`, `%5C`: a separator for some, a character for others), an encoded dot
//! that would form a dot segment (`%2e%2e`: resolved by some, a name for others), double
//! encoding (`%252e`: decoded twice by some), a NUL (the path ends there for C code), an
//! invalid escape or a control byte. Such a path is *ambiguous*: [`PathReadings`] holds every
//! reading (the canonical form first), a rule that covers any reading applies, and an
//! allow-list entry only when it covers all of them (see [`crate::verdict::combine`]).
//! Segment parameters also give a second reading (`;` kept, as nginx does) without making
//! the path ambiguous, since `;` is ordinary in paths.

use std::borrow::Cow;

/// Every reading of one request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathReadings<'a> {
    /// The canonical form (the reading of RFC 3986 with the rules above); borrowed from
    /// the request when it is already canonical, as almost every path is.
    pub canonical: Cow<'a, str>,
    /// Further distinct readings some common server gives the path (empty for most paths).
    pub others: Vec<String>,
    /// Whether the path has a spelling that common servers read differently (see the
    /// module documentation); a plugin option may refuse such paths.
    pub ambiguous: bool,
}

impl PathReadings<'_> {
    /// The canonical form, then the other readings.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.canonical.as_ref()).chain(self.others.iter().map(String::as_str))
    }
}

/// How one server reads the spellings that servers differ on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Reading {
    /// `%2F` and `%5C` are separators.
    separators: bool,
    /// `%2E` is a dot that never forms a dot segment (so `/%2e%2e/` is a name, not `..`).
    literal_dots: bool,
    /// `%25XX` is decoded twice.
    double: bool,
    /// The path ends at the first NUL.
    nul_ends: bool,
    /// `;` is an ordinary character (no segment parameters).
    keep_params: bool,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte of two hex digits at `raw[i..i + 2]`.
fn hex_pair(raw: &[u8], i: usize) -> Option<u8> {
    match (raw.get(i), raw.get(i + 1)) {
        (Some(&h), Some(&l)) => Some(hex(h)? << 4 | hex(l)?),
        _ => None,
    }
}

/// The byte of a `%XX` escape at `raw[i]`.
fn escape_at(raw: &[u8], i: usize) -> Option<u8> {
    (raw.get(i) == Some(&b'%'))
        .then(|| hex_pair(raw, i + 1))
        .flatten()
}

/// Bytes written as themselves in the canonical form: printable ASCII other than the
/// characters that must stay escaped.
fn plain(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
        && !matches!(
            b,
            b'%' | b'?' | b'#' | b'\\' | b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | b'|' | b'^'
        )
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

/// What a scan of the raw path found that makes servers differ.
#[derive(Clone, Copy, Debug, Default)]
struct Triggers {
    separator: bool,
    dot: bool,
    double: bool,
    nul: bool,
    params: bool,
    /// Invalid escapes, control bytes: no reading choice, but ambiguous.
    odd: bool,
}

fn scan(raw: &[u8]) -> Triggers {
    let mut t = Triggers::default();
    for (i, &b) in raw.iter().enumerate() {
        match b {
            b'%' => match escape_at(raw, i) {
                Some(b'/' | b'\\') => t.separator = true,
                Some(b'.') => t.dot = true,
                Some(0) => t.nul = true,
                Some(b'%') => {
                    // Decoded twice, what does the inner escape make?
                    if let Some(inner) = hex_pair(raw, i + 3) {
                        t.double = true;
                        t.separator |= matches!(inner, b'/' | b'\\');
                        t.dot |= inner == b'.';
                        t.nul |= inner == 0;
                    }
                }
                Some(v) if v < 0x20 || v == 0x7f => t.odd = true,
                Some(_) => {}
                None => t.odd = true,
            },
            b';' => t.params = true,
            0 => t.nul = true,
            b if b < 0x20 || b == 0x7f => t.odd = true,
            _ => {}
        }
    }
    t
}

/// An encoded dot read as a character that can never form a dot segment (a control byte,
/// so never in the decoded bytes otherwise: those are written escaped).
const LITERAL_DOT: u8 = 0x01;

/// The path as one server reads it.
fn read(raw: &[u8], r: Reading) -> String {
    // Decoded bytes; a byte that stays escaped is pushed as its escape, so a decoded `/`
    // (a separator) and a kept `%2F` (a character) differ from here on.
    let mut bytes = Vec::with_capacity(raw.len() + 8);
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let (v, len) = match escape_at(raw, i) {
            Some(b'%') if r.double => match hex_pair(raw, i + 3) {
                Some(w) => (w, 5),
                None => (b'%', 3),
            },
            Some(v) => (v, 3),
            None if b == b'%' => {
                // Not an escape: a literal per cent sign.
                push_escaped(&mut bytes, b'%');
                i += 1;
                continue;
            }
            None => (b, 0),
        };
        let escaped = len > 0;
        i += len.max(1);
        match v {
            0 if r.nul_ends => break,
            b'/' | b'\\' if !escaped || r.separators => bytes.push(b'/'),
            b'/' | b'\\' => push_escaped(&mut bytes, v),
            b'.' if escaped && r.literal_dots => bytes.push(LITERAL_DOT),
            b';' if escaped => push_escaped(&mut bytes, b';'),
            v if plain(v) => bytes.push(v),
            v => push_escaped(&mut bytes, v),
        }
    }
    // Segments: parameters dropped, dot segments resolved, empty segments merged.
    let mut segs: Vec<&[u8]> = Vec::new();
    let mut trailing = false;
    for seg in bytes.split(|&b| b == b'/') {
        let seg = if r.keep_params {
            seg
        } else {
            seg.split(|&b| b == b';').next().unwrap_or(seg)
        };
        trailing = true;
        match seg {
            b"" | b"." => {}
            b".." => {
                segs.pop();
            }
            s => {
                segs.push(s);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(bytes.len() + 1);
    for s in &segs {
        out.push('/');
        // Only ASCII was pushed: escapes, printable bytes and the literal-dot mark.
        // A literal dot is written escaped, so the reading shows it is no dot segment.
        for &b in s.iter() {
            if b == LITERAL_DOT {
                out.push_str("%2E");
            } else {
                out.push(char::from(b));
            }
        }
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

/// Whether `path` is already canonical and unambiguous in the common case: nothing to
/// decode, merge, resolve or strip.
fn is_simple(path: &[u8]) -> bool {
    path.first() == Some(&b'/')
        && path.iter().all(|&b| plain(b) && b != b';')
        && !path.windows(2).any(|w| w == b"//" || w == b"/.")
}

/// Whether two readings name the same resource: they differ at most in dots written as
/// literal (`%2E`, which only a literal-dot reading writes), which name the same file.
fn same(a: &str, b: &str) -> bool {
    a == b
        || (a.contains("%2E") || b.contains("%2E"))
            && a.replace("%2E", ".") == b.replace("%2E", ".")
}

/// The canonical form of `path` (without its query) and its other readings.
pub fn canonical_path(path: &str) -> PathReadings<'_> {
    let raw = path.as_bytes();
    if is_simple(raw) {
        return PathReadings {
            canonical: Cow::Borrowed(path),
            others: Vec::new(),
            ambiguous: false,
        };
    }
    let t = scan(raw);
    let canonical = read(raw, Reading::default());
    let mut others: Vec<String> = Vec::new();
    let flags = [t.separator, t.dot, t.double, t.nul, t.params];
    let choices: Vec<usize> = (0..flags.len()).filter(|&i| flags[i]).collect();
    for mask in 1u32..(1 << choices.len()) {
        let on = |k: usize| {
            choices
                .iter()
                .position(|&c| c == k)
                .is_some_and(|p| mask & (1 << p) != 0)
        };
        let r = Reading {
            separators: on(0),
            literal_dots: on(1),
            double: on(2),
            nul_ends: on(3),
            keep_params: on(4),
        };
        let s = read(raw, r);
        if same(&s, &canonical) || others.iter().any(|o| same(o, &s)) {
            continue;
        }
        others.push(s);
    }
    // An encoded dot only makes the path ambiguous when a reading differs because of it;
    // `/a%2Eb` is `/a.b` for every server.
    let differs = |r: Reading| !same(&read(raw, r), &canonical);
    let ambiguous = t.odd
        || t.nul
        || (t.separator
            && differs(Reading {
                separators: true,
                ..Reading::default()
            }))
        || (t.dot
            && differs(Reading {
                literal_dots: true,
                ..Reading::default()
            }))
        || (t.double
            && differs(Reading {
                double: true,
                ..Reading::default()
            }));
    PathReadings {
        canonical: Cow::Owned(canonical),
        others,
        ambiguous,
    }
}

/// `s` with its `%XX` escapes decoded (a query parameter's name or value; `+` is a space,
/// as HTML forms write it). Invalid escapes stay as written.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let raw = s.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match escape_at(raw, i) {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(if raw[i] == b'+' { b' ' } else { raw[i] });
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Every value of the query parameter `name` (compared after decoding), decoded, in order:
/// a repeated parameter gives each of its values (servers differ on which one they use).
pub fn query_values<'a>(query: &'a str, name: &'a str) -> impl Iterator<Item = Cow<'a, str>> + 'a {
    query.split(['&', ';']).filter_map(move |kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

#[cfg(test)]
#[path = "canon_tests.rs"]
mod tests;
