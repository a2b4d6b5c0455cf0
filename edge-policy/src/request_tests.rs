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
        r#"{{"control_plane": {{"cluster": "c", "authority": "a", "trusted_keys": ["ed25519:6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw="]}}, "edge_token": "x", "edge_id": "e",
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

#[test]
fn a_case_sensitive_route_finds_only_the_exact_id() {
    let (_, ex) = setup(
        r#", "pixel_routes": [{"pattern": "/s/{pixel}.gif", "case": "sensitive"}, "/i/{pixel}.gif",
            {"pattern": "?sid=", "case": "sensitive"}]"#,
    );
    // A rule id written in mixed case (as a control plane keeps it) and a lower-case one.
    let m = Matcher::from_snapshot(Snapshot {
        version: 1,
        rules: vec![
            rule(7, RuleKind::Block(Target::Pixel("Cust-A".into()))),
            rule(8, RuleKind::Block(Target::Pixel("px-evil".into()))),
        ],
    });
    let a = |p: &str| action(decide_on(&m, &ex, p, &[], None));
    for p in [
        "/s/Cust-A.gif",
        "/s/Cust%2DA.gif",
        "//s/./Cust-A.gif",
        "/?sid=x&sid=Cust-A",
        "/i/cust-a.gif",
        "/i/CUST-A.gif",
        "/i/PX-EVIL.gif",
        "/s/px-evil.gif",
    ] {
        assert_eq!(a(p), Some(Action::Block), "{p}");
    }
    for p in [
        "/s/cust-a.gif",
        "/s/CUST-A.gif",
        "/?sid=cust-a",
        "/s/PX-EVIL.gif",
    ] {
        assert_eq!(a(p), Some(Action::Allow), "{p}");
    }
}

mod against_the_reference {
    use proptest::prelude::*;

    use super::*;

    const PATHS: &[&str] = &["/admin", "/public", "/a/b", "/checkout", "/"];
    const PIXELS: &[&str] = &["px-evil", "px-kill", "px-1"];
    const KEYS: &[&str] = &["stolen-key", "k2"];

    fn rules() -> impl Strategy<Value = Vec<Rule>> {
        let kind = prop_oneof![
            prop::sample::select(PATHS).prop_map(|p| RuleKind::Block(Target::PathPrefix(p.into()))),
            prop::sample::select(PATHS).prop_map(|p| RuleKind::Allow(Target::PathPrefix(p.into()))),
            prop::sample::select(PIXELS).prop_map(|p| RuleKind::Block(Target::Pixel(p.into()))),
            prop::sample::select(PIXELS).prop_map(|p| RuleKind::Isolate {
                scope: Scope::Pixel(p.into()),
                action: Isolation::PixelKill,
            }),
            prop::sample::select(PATHS).prop_map(|p| RuleKind::Isolate {
                scope: Scope::PathPrefix(p.into()),
                action: Isolation::ReadOnly,
            }),
            prop::sample::select(KEYS)
                .prop_map(|k| RuleKind::Block(Target::ApiKey(KeyHash::of(k)))),
            prop::sample::select(KEYS)
                .prop_map(|k| RuleKind::Allow(Target::ApiKey(KeyHash::of(k)))),
        ];
        prop::collection::vec((kind, any::<bool>()), 0..8).prop_map(|ks| {
            ks.into_iter()
                .enumerate()
                .map(|(i, (kind, sim))| Rule {
                    mode: if sim { Mode::Simulate } else { Mode::Enforce },
                    ..rule(i as u64 + 1, kind)
                })
                .collect()
        })
    }

    /// A request path built from the rule universe with the spellings servers differ on.
    fn path() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("admin"),
            Just("public"),
            Just("a"),
            Just("b"),
            Just("checkout"),
            Just("p"),
            Just("px-evil.gif"),
            Just("PX-KILL.gif"),
            Just(".."),
            Just("."),
            Just(""),
            Just("%2e%2e"),
            Just("%61dmin"),
            Just("..%2F"),
            Just("%252e%252e"),
            Just("x;y=1"),
            Just("..;"),
            Just("a%00"),
            Just("%zz"),
            Just("\\\\"),
        ];
        (
            prop::collection::vec(piece, 0..6),
            prop::option::of(prop_oneof![
                Just("?pid=px-evil"),
                Just("?pid=ok&pid=PX-KILL"),
                Just("?api_key=stolen-key"),
                Just("?x=1;api_key=k2"),
            ]),
        )
            .prop_map(|(ps, q)| format!("/{}{}", ps.join("/"), q.unwrap_or("")))
    }

    proptest! {
        #[test]
        fn the_matcher_decides_every_request_as_the_reference_does(
            rules in rules(),
            path in path(),
            keys in prop::collection::vec(prop::sample::select(KEYS), 0..3),
            write in any::<bool>(),
        ) {
            let (_, ex) = setup("");
            let m = Matcher::from_snapshot(Snapshot { version: 1, rules: rules.clone() });
            let req = RawRequest {
                method: if write { "POST" } else { "GET" },
                host: "shop.example",
                path_and_query: &path,
                header_keys: keys.iter().map(|k| Cow::Borrowed(*k)).collect(),
                ..RawRequest::default()
            };
            let fast = decide(&m, &ex, &req, &mut |k| KeyHash::of(k), 0);
            let reference = decide_with(Needs::ALL, &ex, &req, &mut |f| crate::naive::evaluate(&rules, f, 0));
            prop_assert_eq!(fast, reference, "{} {:?}", path, rules);
        }
    }
}
