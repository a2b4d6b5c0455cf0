//! The list of check results, kept for the lifetime of the VM.

use std::cell::RefCell;

pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

thread_local! {
    static CHECKS: RefCell<Vec<Check>> = const { RefCell::new(Vec::new()) };
}

/// Records one check.
pub fn check(name: &str, ok: bool, detail: impl Into<String>) {
    CHECKS.with(|c| {
        c.borrow_mut().push(Check {
            name: name.to_string(),
            ok,
            detail: detail.into(),
        })
    });
}

/// Records `actual == expected`, with both in the detail.
pub fn check_eq<T: PartialEq + std::fmt::Debug>(name: &str, actual: T, expected: T) {
    let ok = actual == expected;
    check(name, ok, format!("{actual:?} (expected {expected:?})"));
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// All checks as a JSON array.
pub fn to_json() -> String {
    CHECKS.with(|c| {
        let items: Vec<String> = c
            .borrow()
            .iter()
            .map(|x| {
                format!(
                    r#"{{"name":"{}","ok":{},"detail":"{}"}}"#,
                    escape(&x.name),
                    x.ok,
                    escape(&x.detail)
                )
            })
            .collect();
        format!("[{}]", items.join(","))
    })
}

/// Value of `"key": "value"` in a flat JSON object of strings.
pub fn field(json: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\"");
    let rest = &json[json.find(&pat)? + pat.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// Value of `name=` in a query string.
pub fn query(path: &str, name: &str) -> Option<String> {
    let q = path.split_once('?')?.1;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}
