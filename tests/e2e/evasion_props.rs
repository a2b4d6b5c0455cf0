//! Issue #11, property tests against the real filter: random spellings of requests that a
//! rule covers (a path under a prefix with dot segments, repeated slashes, encoded
//! unreserved characters in either hex case; a pixel id in any case, encoded, among other
//! `pid` values; a blocked key among other key values or as a bearer token; an IPv4-mapped
//! spelling of a blocked address) are contained by `edge_filter.wasm` in `edge-host`, and
//! the same spellings of an uncovered request pass. On a case-sensitive pixel route only
//! the id's own case is contained, however it is encoded.

use edge_host::{HostProfile, Vm};
use edge_policy::{wire, Isolation, KeyHash, RuleKind, Scope, Snapshot, Target};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::cell::RefCell;

use crate::common::{block_ip, rule};
use crate::sharing::{answer_sync, plugin_with, status_of};

/// The pixel blocked on the case-sensitive route `/s/{pixel}.gif` (rule 6).
const EXACT_ID: &str = "Cust-A";

fn vm(profile: HostProfile) -> Vm {
    let p = plugin_with(profile, |c| {
        c.pixel_routes.push(
            serde_json::from_str(r#"{"pattern": "/s/{pixel}.gif", "case": "sensitive"}"#).unwrap(),
        )
    });
    let mut vm = Vm::start(&p).unwrap();
    let snap = Snapshot {
        version: 1,
        rules: vec![
            rule(
                1,
                RuleKind::Block(Target::PathPrefix("/admin/panel".into())),
            ),
            rule(2, RuleKind::Block(Target::Pixel("px-evil".into()))),
            rule(
                3,
                RuleKind::Block(Target::ApiKey(KeyHash::of("stolen-key"))),
            ),
            block_ip(4, "203.0.113.7"),
            rule(
                5,
                RuleKind::Isolate {
                    scope: Scope::PathPrefix("/checkout".into()),
                    action: Isolation::Block,
                },
            ),
            rule(6, RuleKind::Block(Target::Pixel(EXACT_ID.into()))),
        ],
    };
    answer_sync(&mut vm, wire::encode_snapshot(&snap));
    vm
}

/// The status for a GET with these headers (0: forwarded).
fn status(vm: &mut Vm, path: &str, headers: &[(&str, String)]) -> u16 {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    status_of(vm, path, &headers)
}

/// `seg` with some characters percent-encoded (in the hex case asked for).
fn obfuscate(seg: &str, picks: &[bool], upper: bool) -> String {
    seg.chars()
        .zip(picks.iter().cycle())
        .map(|(c, &enc)| match (enc, upper) {
            (false, _) => c.to_string(),
            (true, false) => format!("%{:02x}", c as u32),
            (true, true) => format!("%{:02X}", c as u32),
        })
        .collect()
}

/// A path made of `segments`, spelled with repeated slashes, `./` and `junk/../` detours,
/// and encoded characters.
fn spell(
    segments: &[&str],
    junk: &[String],
    picks: &[bool],
    slashes: usize,
    dots: usize,
    upper: bool,
) -> String {
    let mut raw = String::new();
    for (i, seg) in segments.iter().enumerate() {
        raw.push_str(&"/".repeat(slashes));
        raw.push_str(&"./".repeat(dots));
        if i == 0 {
            for j in junk {
                raw.push_str(&format!("{j}/../"));
            }
        }
        raw.push_str(&obfuscate(seg, picks, upper));
    }
    raw
}

fn segment() -> impl Strategy<Value = String> {
    "[a-z0-9_~-]{1,8}"
}

fn run(profile: HostProfile) {
    let vm = RefCell::new(vm(profile));
    let mut runner = TestRunner::new(Config::with_cases(300));
    let cases = (
        prop::collection::vec(segment(), 0..3),
        prop::collection::vec(segment(), 0..3),
        prop::collection::vec(any::<bool>(), 1..7),
        1usize..4,
        0usize..3,
        any::<bool>(),
        any::<u16>(),
    );
    runner
        .run(&cases, |(rest, junk, picks, slashes, dots, upper, n)| {
            let vm = &mut *vm.borrow_mut();
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            // A path under the blocked prefix, and under the isolated one: contained.
            for (prefix, want) in [(["admin", "panel"], 403), (["checkout", "x"], 503)] {
                let segs: Vec<&str> = prefix.iter().copied().chain(rest.iter().copied()).collect();
                let path = spell(&segs, &junk, &picks, slashes, dots, upper);
                prop_assert_eq!(status(vm, &path, &[]), want, "{}", path);
            }
            // The same spellings of a path the rules do not cover: forwarded.
            let segs: Vec<&str> = ["admin", "panelx"]
                .into_iter()
                .chain(rest.iter().copied())
                .collect();
            let path = spell(&segs, &junk, &picks, slashes, dots, upper);
            prop_assert_eq!(status(vm, &path, &[]), 0, "{}", path);

            // The pixel id in any case, encoded, at the route or among other `pid`s.
            let id: String = "px-evil"
                .chars()
                .zip(picks.iter().cycle())
                .map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c })
                .collect();
            let encode: Vec<bool> = picks.iter().rev().copied().collect();
            let id = obfuscate(&id, &encode, upper);
            let other = format!("px-{n}");
            for path in [
                format!("{}/p/{id}.gif", "/".repeat(slashes - 1)),
                format!("/collect?pid={other}&pid={id}"),
            ] {
                prop_assert_eq!(status(vm, &path, &[]), 403, "{}", path);
            }
            prop_assert_eq!(status(vm, &format!("/p/{other}.gif"), &[]), 0);

            // On the case-sensitive route: the exact id however encoded, and no other case.
            let exact = obfuscate(EXACT_ID, &encode, upper);
            let path = format!("{}/s/{exact}.gif", "/".repeat(slashes - 1));
            prop_assert_eq!(status(vm, &path, &[]), 403, "{}", path);
            let recased: String = EXACT_ID
                .chars()
                .zip(picks.iter().cycle())
                .map(|(c, &u)| {
                    if u {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect();
            let want = if recased == EXACT_ID { 403 } else { 0 };
            let path = format!("/s/{}.gif", obfuscate(&recased, &encode, upper));
            prop_assert_eq!(status(vm, &path, &[]), want, "{}", path);

            // The key among other values of the header, as a bearer token, in the query.
            let k = "stolen-key".to_string();
            let spellings: [Vec<(&str, String)>; 3] = [
                vec![("x-api-key", format!("k{n}")), ("x-api-key", k.clone())],
                vec![(
                    "authorization",
                    format!("{} {k}", if upper { "BEARER" } else { "bearer" }),
                )],
                vec![("x-api-key", format!("k{n}"))],
            ];
            for (i, h) in spellings.iter().enumerate() {
                let want = if i == 2 { 0 } else { 403 };
                prop_assert_eq!(status(vm, "/api", h), want, "{:?}", h);
            }

            // The blocked address IPv4-mapped, bracketed, with a port.
            let mapped = [
                "::ffff:203.0.113.7".to_string(),
                "::FFFF:cb00:7107".to_string(),
                format!("[::ffff:203.0.113.7]:{n}"),
                format!("203.0.113.7:{n}"),
            ];
            let a = &mapped[n as usize % mapped.len()];
            let xff = vec![("x-forwarded-for", a.clone())];
            prop_assert_eq!(status(vm, "/", &xff), 403, "{}", a);
            Ok(())
        })
        .unwrap();
}

#[test]
fn random_spellings_of_covered_requests_are_contained_envoy() {
    run(HostProfile::Envoy);
}

#[test]
fn random_spellings_of_covered_requests_are_contained_kong() {
    run(HostProfile::Kong);
}
