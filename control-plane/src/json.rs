//! Strict JSON, the one way the control plane reads JSON (request bodies and access-log
//! lines):
//!
//! - an object with the same key twice is refused (no "last value wins");
//! - a number with an integral value (`3600.0`, `1.5e3`) is an integer, so every integer
//!   field takes it;
//! - an array where an object is expected is a type error, not the fields in order
//!   ([`crate::json_de`]);
//! - a number too large for a double (`1e309`) is an error about its field, not a syntax
//!   error;
//! - type errors become one message in JSON words (`expected a whole number of 0 or more`),
//!   never a Rust type name (`u64`, `struct CreateIncident`, `untagged enum`).
//!
//! Parsing is two steps: bytes to a [`Value`] (syntax, duplicates), then the value to the
//! target type (types, missing and unknown fields), both naming the field path.

use std::fmt;

use serde::de::{DeserializeOwned, DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Number, Value};

/// What was wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// `target.cidr`, `hits[0].count`; `body` for the document itself.
    pub field: String,
    pub message: String,
    /// Not JSON at all (a 400); otherwise valid JSON with a wrong value (a 422).
    pub syntax: bool,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Parse `bytes` into `T` (see the module documentation).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    from_value(parse_value(bytes)?)
}

/// Parse `bytes` into a [`Value`], refusing duplicate keys and trailing characters.
pub fn parse_value(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Strict(value) = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let msg = clean(&e.inner().to_string());
        let field = field_of(&e.path().to_string(), &msg);
        // serde_json files an out-of-range number under syntax; it is a bad value.
        let syntax = e.inner().classify() != serde_json::error::Category::Data
            && !msg.starts_with("number out of range");
        JsonError {
            field,
            message: humanize(&msg),
            syntax,
        }
    })?;
    de.end().map_err(|_| JsonError {
        field: "body".into(),
        message: "trailing characters after the JSON value".into(),
        syntax: true,
    })?;
    Ok(value)
}

/// Convert a parsed value into `T`; every error is about a field's value.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, JsonError> {
    serde_path_to_error::deserialize(crate::json_de::Strict(value)).map_err(|e| {
        let msg = e.inner().to_string();
        JsonError {
            field: field_of(&e.path().to_string(), &msg),
            message: humanize(&msg),
            syntax: false,
        }
    })
}

/// Strip serde_json's " at line X column Y" suffix.
fn clean(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The field an error is about: the path, completed with the name in a `missing field`,
/// `unknown field` or `duplicate key` message.
pub fn field_of(path: &str, msg: &str) -> String {
    let base = if path == "." || path == "?" { "" } else { path };
    for prefix in ["missing field `", "unknown field `", "duplicate key `"] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            if let Some(name) = rest.split('`').next() {
                if !base.ends_with(name) {
                    return if base.is_empty() {
                        name.to_string()
                    } else {
                        format!("{base}.{name}")
                    };
                }
            }
        }
    }
    if base.is_empty() {
        "body".to_string()
    } else {
        base.to_string()
    }
}

/// serde's wording with Rust type names replaced by what a JSON client sees.
pub fn humanize(msg: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("expected u64", "expected a whole number of 0 or more"),
        ("expected u32", "expected a whole number of 0 or more"),
        ("expected u16", "expected a whole number of 0 or more"),
        ("expected u8", "expected a whole number of 0 or more"),
        ("expected usize", "expected a whole number of 0 or more"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected isize", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected an object"),
        ("expected a borrowed string", "expected a string"),
        ("expected variant identifier", "expected a string"),
        (
            "expected map with a single key",
            "expected an object with exactly one key",
        ),
        ("invalid type: map", "invalid type: object"),
        ("invalid type: sequence", "invalid type: array"),
        ("invalid type: unit value", "invalid type: null"),
        ("invalid value: map", "invalid value: object"),
        ("floating point", "number"),
    ];
    let mut out = msg.to_string();
    for (rust, json) in WORDS {
        out = replace_word(&out, rust, json);
    }
    // `expected struct CreateIncident`, `untagged enum ExpiresIn`: drop the type's name.
    for (prefix, words) in [
        ("expected struct variant ", "expected an object"),
        ("expected struct ", "expected an object"),
        ("expected tuple struct ", "expected a value"),
        ("expected enum ", "expected one of the documented values"),
        (
            "data did not match any variant of untagged enum ",
            "does not match any accepted form",
        ),
    ] {
        while let Some(i) = out.find(prefix) {
            let rest = &out[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            out = format!("{}{words}{}", &out[..i], &rest[end..]);
        }
    }
    out
}

/// Replace `from` where it is not followed by more of an identifier (`u8` not in `u8x`).
fn replace_word(s: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(from) {
        let after = &rest[i + from.len()..];
        let whole = !after.starts_with(|c: char| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..i]);
        out.push_str(if whole { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A JSON value read strictly (see the module documentation).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

/// `f` as an integer when it has an integral value that fits one.
fn integral(f: f64) -> Option<Number> {
    if f.fract() != 0.0 || !f.is_finite() {
        return None;
    }
    // The bounds are powers of two, exact as doubles: -2^63 <= f < 2^64.
    if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
        Some(Number::from(f as u64))
    } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
        Some(Number::from(f as i64))
    } else {
        None
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        match integral(v) {
            Some(n) => Ok(Value::Number(n)),
            None => Number::from_f64(v)
                .map(Value::Number)
                .ok_or_else(|| E::custom("number out of range")),
        }
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(A::Error::custom(format!(
                    "duplicate key `{key}`: each key may appear once"
                )));
            }
            let Strict(v) = map.next_value_seed(StrictSeed)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Strict;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Strict, D::Error> {
        Strict::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> JsonError {
        parse_value(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let e = err(r#"{"a": 1, "a": 2}"#);
        assert_eq!((e.field.as_str(), e.syntax), ("a", false), "{e:?}");
        let e = err(r#"{"t": {"cidr": "x", "cidr": "y"}}"#);
        assert_eq!(e.field, "t.cidr", "{e:?}");
        let e = err(r#"[{"k": 1}, {"k": 1, "k": 1}]"#);
        assert_eq!(e.field, "[1].k", "{e:?}");
    }

    #[test]
    fn integral_numbers_are_integers() {
        assert_eq!(
            parse_value(b"[3600.0, 1.5e3, -2.0, 0.5]").unwrap(),
            serde_json::json!([3600, 1500, -2, 0.5])
        );
        assert_eq!(parse::<u64>(b"3600.0").unwrap(), 3600);
        assert!(parse::<u64>(b"3600.5").is_err());
    }

    #[test]
    fn out_of_range_number_names_its_field() {
        let e = err(r#"{"seq": 1e309}"#);
        assert_eq!((e.field.as_str(), e.syntax), ("seq", false), "{e:?}");
        assert!(e.message.contains("out of range"), "{e:?}");
        let e = err(r#"{"seq": 1"#);
        assert!(e.syntax, "{e:?}");
    }

    #[test]
    fn messages_name_no_rust_types() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Body {
            n: u64,
            i: i64,
            list: Vec<String>,
        }
        for (body, field) in [
            (r#"{"n": "x", "i": 1, "list": []}"#, "n"),
            (r#"{"n": -1, "i": 1, "list": []}"#, "n"),
            (r#"{"n": 1, "i": 1.5, "list": []}"#, "i"),
            (r#"{"n": 1, "i": 1, "list": {}}"#, "list"),
            (r#"5"#, "body"),
        ] {
            let e = parse::<Body>(body.as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{body}: {e:?}");
            for word in ["u64", "i64", "struct", "Body", "sequence", "map"] {
                assert!(!e.message.contains(word), "{body}: {e:?}");
            }
        }
        assert_eq!(
            humanize("data did not match any variant of untagged enum ExpiresIn"),
            "does not match any accepted form"
        );
        assert_eq!(humanize("expected u8x"), "expected u8x");
    }
}
