use super::*;
use crate::config::FilterConfig;
use crate::model::{Isolation, Mode, Rule, RuleKind, Scope, Target};
use crate::wire::Snapshot;
use crate::Action;

fn rule(id: u64, kind: RuleKind) -> Rule {
    Rule {
        id,
        incident: Some(1),
        mode: Mode::Enforce,
        expires_at_ms: None,
        kind,
    }
}

fn setup(extra: &str) -> (Matcher, Extractor) {
    let rules = vec![
        rule(1, RuleKind::Block(Target::PathPrefix("/admin".into()))),
        rule(2, RuleKind::Allow(Target::PathPrefix("/public".into()))),
        rule(3, RuleKind::Block(Target::Pixel("px-evil".into()))),
        rule(
            4,
            RuleKind::Block(Target::ApiKey(KeyHash::of("stolen-key"))),
        ),
        rule(
            5,
            RuleKind::Isolate {
                scope: Scope::PathPrefix("/checkout".into()),
                action: Isolation::Block,
            },
        ),
    ];
    let m = Matcher::from_snapshot(Snapshot { version: 1, rules });
    let json = format!(
        r#"{{"control_plane": {{"cluster": "c", "authority": "a"}}, "edge_token": "x", "edge_id": "e",
            "api_key_query": ["api_key"] {extra}}}"#
    );
    let cfg = FilterConfig::parse(json.as_bytes()).expect("config");
    (m, Extractor::new(&cfg).expect("extractor"))
}

fn decide_on(
    m: &Matcher,
    ex: &Extractor,
    path: &str,
    keys: &[&str],
    auth: Option<&str>,
) -> Decision {
    let req = RawRequest {
        method: "GET",
        host: "shop.example",
        path_and_query: path,
        header_keys: keys.iter().map(|k| Cow::Borrowed(*k)).collect(),
        authorization: auth,
        ..RawRequest::default()
    };
    decide(m, ex, &req, &mut |k| KeyHash::of(k), 0)
}

fn action(d: Decision) -> Option<Action> {
    match d {
        Decision::Verdict(v) => Some(v.action),
        Decision::RejectAmbiguous => None,
    }
}

#[test]
fn a_block_applies_under_any_reading_an_allow_only_under_all() {
    let (m, ex) = setup("");
    let a = |p: &str| action(decide_on(&m, &ex, p, &[], None));
    assert_eq!(a("/admin"), Some(Action::Block));
    assert_eq!(a("/public/x"), Some(Action::AllowListed));
    // Read as `/admin` by servers that decode %2F: the block applies.
    assert_eq!(a("/public/..%2Fadmin"), Some(Action::Block));
    // Read as `/public` by the edge's canonical form but under /admin literally.
    assert_eq!(a("/admin/..%2Fpublic"), Some(Action::Block));
    assert_eq!(a("/x/%252e%252e/admin"), Some(Action::Block));
    assert_eq!(a("/admin%00.png"), Some(Action::Block));
    assert_eq!(a("/checkout;x/pay"), Some(Action::Isolate));
    assert_eq!(a("/shop"), Some(Action::Allow));
}

#[test]
fn ambiguous_paths_can_be_refused() {
    let (m, ex) = setup(r#", "ambiguous_path": "reject""#);
    assert_eq!(
        decide_on(&m, &ex, "/a%2Fb", &[], None),
        Decision::RejectAmbiguous
    );
    assert!(matches!(
        decide_on(&m, &ex, "//a/./b", &[], None),
        Decision::Verdict(_)
    ));
}

#[test]
fn every_key_from_every_source_is_checked() {
    let (m, ex) = setup("");
    let a = |p: &str, keys: &[&str], auth| action(decide_on(&m, &ex, p, keys, auth));
    assert_eq!(a("/", &["stolen-key"], None), Some(Action::Block));
    assert_eq!(a("/", &["fine", "stolen-key"], None), Some(Action::Block));
    assert_eq!(a("/", &[" stolen-key "], None), Some(Action::Block));
    assert_eq!(a("/?api_key=stolen-key", &[], None), Some(Action::Block));
    assert_eq!(
        a("/?x=1&api_key=ok&api_key=stolen%2Dkey", &[], None),
        Some(Action::Block)
    );
    assert_eq!(a("/", &[], Some("Bearer stolen-key")), Some(Action::Block));
    assert_eq!(a("/", &[], Some("bearer stolen-key")), Some(Action::Block));
    assert_eq!(a("/", &[], Some("Bearer a.b.c")), Some(Action::Allow));
    assert_eq!(a("/", &["fine"], None), Some(Action::Allow));
}

#[test]
fn pixel_ids_are_found_however_they_are_spelled() {
    let (m, ex) = setup("");
    let a = |p: &str| action(decide_on(&m, &ex, p, &[], None));
    for p in [
        "/p/px-evil.gif",
        "/p/PX-EVIL.gif",
        "//p/px-evil.gif",
        "/x/../p/px-evil.gif",
        "/p/px%2Devil.gif",
        "/p/%70x-evil.gif",
        "/?pid=px-evil",
        "/?pid=ok&pid=px-evil",
        "/?pid=px%2devil",
        "/?p%69d=px-evil",
        "/px/px-evil.js",
    ] {
        assert_eq!(a(p), Some(Action::Block), "{p}");
    }
    assert_eq!(a("/p/px-good.gif"), Some(Action::Allow));
}
