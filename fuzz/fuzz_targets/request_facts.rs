//! Request-fact extraction and the decision on it: client address from the source and
//! `X-Forwarded-For`, JWT subjects, pixel ids from routes and the query, API keys from
//! headers, bearer tokens and the query, every reading of the path. Never a panic, and the
//! compiled matcher decides every request as the reference semantics (`naive.rs`) does.
//!
//! Input: fields separated by `\n`: method, host, path and query, source address,
//! X-Forwarded-For, two API-key header values, Authorization, account.
#![no_main]

use std::sync::OnceLock;

use edge_policy::config::FilterConfig;
use edge_policy::facts::{self, Extractor};
use edge_policy::request::{decide, decide_with, Needs, RawRequest};
use edge_policy::wire::Snapshot;
use edge_policy::{Isolation, KeyHash, Matcher, Mode, Rule, RuleKind, Scope, Target};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"{
    "control_plane": {"cluster": "c", "authority": "a",
                      "trusted_keys": ["ed25519:6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw="]},
    "edge_token": "t", "edge_id": "fuzz", "trusted_hops": 1,
    "api_key_query": ["api_key", "key"], "account_header": "x-account-id",
    "pixel_routes": ["/p/{pixel}.gif", "/px/{pixel}.js", "?pid=", "/t/{pixel}"]
}"#;

fn rules() -> Vec<Rule> {
    let r = |id, mode, kind| Rule {
        id,
        incident: Some(1),
        mode,
        expires_at_ms: None,
        kind,
    };
    let e = Mode::Enforce;
    vec![
        r(1, e, RuleKind::Block(Target::Ip("203.0.113.0/24".parse().unwrap()))),
        r(2, e, RuleKind::Block(Target::Ip("2001:db8::/32".parse().unwrap()))),
        r(3, e, RuleKind::Allow(Target::Ip("203.0.113.7/32".parse().unwrap()))),
        r(4, e, RuleKind::Block(Target::ApiKey(KeyHash::of("sk_live_stolen")))),
        r(5, e, RuleKind::Block(Target::Account("acct-42".into()))),
        r(6, e, RuleKind::Block(Target::Pixel("abc123".into()))),
        r(7, e, RuleKind::Block(Target::Host("admin.example.com".into()))),
        r(8, e, RuleKind::Block(Target::PathPrefix("/admin".into()))),
        r(9, Mode::Simulate, RuleKind::Block(Target::PathPrefix("/api/v1".into()))),
        r(
            10,
            e,
            RuleKind::Isolate {
                scope: Scope::PathPrefix("/checkout".into()),
                action: Isolation::ReadOnly,
            },
        ),
        r(11, e, RuleKind::Allow(Target::PathPrefix("/admin/health".into()))),
    ]
}

struct Fixture {
    rules: Vec<Rule>,
    matcher: Matcher,
    ex: Extractor,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let cfg = FilterConfig::parse(CONFIG.as_bytes()).expect("config");
        let rules = rules();
        Fixture {
            matcher: Matcher::from_snapshot(Snapshot {
                version: 1,
                rules: rules.clone(),
            }),
            ex: Extractor::new(&cfg).expect("extractor"),
            rules,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut f = text.split('\n');
    let mut next = || f.next().unwrap_or("");
    let (method, host, path, source, xff) = (next(), next(), next(), next(), next());
    let (key1, key2, auth, account) = (next(), next(), next(), next());
    let fx = fixture();
    let source = facts::parse_source_address(source);
    let client_ip = facts::client_ip(source, Some(xff), 1);
    let _ = facts::bearer_subject(auth);
    let (p, q) = facts::split_path(path);
    let _ = fx.ex.pixel_ids(p, q).count();
    let req = RawRequest {
        client_ip,
        method,
        host,
        path_and_query: path,
        header_keys: [key1, key2]
            .into_iter()
            .filter(|k| !k.is_empty())
            .map(Into::into)
            .collect(),
        authorization: (!auth.is_empty()).then_some(auth),
        account: (!account.is_empty()).then_some(account),
    };
    let fast = decide(&fx.matcher, &fx.ex, &req, &mut |k| KeyHash::of(k), 0);
    let reference = decide_with(Needs::ALL, &fx.ex, &req, &mut |facts| {
        edge_policy::naive::evaluate(&fx.rules, facts, 0)
    });
    assert_eq!(fast, reference, "{req:?}");
});
