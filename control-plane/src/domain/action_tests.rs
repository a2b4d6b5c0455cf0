use super::*;
use edge_policy::KeyHash;

const NOW: i64 = 1_714_564_800_000;

fn req(v: serde_json::Value) -> ActionRequest {
    serde_json::from_value(v).unwrap()
}

fn field_of(r: CoreResult<NewAction>) -> String {
    match r {
        Err(CoreError::Invalid { field, .. }) => field,
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn durations() {
    for (s, want) in [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2d", 172_800),
    ] {
        assert_eq!(parse_duration_secs(s), Some(want), "{s}");
    }
    for s in ["", "h", "1x", "1h30", "-5", "1.5h", "99999999999999999999d"] {
        assert_eq!(parse_duration_secs(s), None, "{s}");
    }
}

#[test]
fn cidr_host_bits_are_normalised_with_a_warning() {
    let mut w = Vec::new();
    let n = normalise_cidr("target.cidr", "10.1.2.3/8", &mut w).unwrap();
    assert_eq!(n.to_string(), "10.0.0.0/8");
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("host bits"));
    let mut w = Vec::new();
    assert_eq!(
        normalise_cidr("f", "198.51.100.7", &mut w)
            .unwrap()
            .to_string(),
        "198.51.100.7/32"
    );
    assert_eq!(
        normalise_cidr("f", "2001:db8::1/48", &mut w)
            .unwrap()
            .to_string(),
        "2001:db8::/48"
    );
    for bad in ["10.0.0.0/33", "300.1.1.1", "10.0.0.0/", "example.com", ""] {
        assert!(normalise_cidr("f", bad, &mut w).is_err(), "{bad}");
    }
}

#[test]
fn every_kind_validates_and_maps_to_a_rule() {
    let cases = [
        json_req("block", r#"{"cidr": "203.0.113.0/24"}"#),
        json_req("block", r#"{"api_key": "sk_live_123"}"#),
        json_req("block", r#"{"account": "acct-9"}"#),
        json_req("block", r#"{"pixel": "px-1"}"#),
        json_req("block", r#"{"host": "Evil.Example.com:443"}"#),
        json_req("allow", r#"{"path_prefix": "/health"}"#),
    ];
    for (i, r) in cases.iter().enumerate() {
        let a = validate(1, r, NOW).unwrap();
        let rule = to_rule(
            i as i64 + 1,
            1,
            a.kind,
            &a.target,
            a.isolation,
            a.mode,
            a.expires_at_ms,
        )
        .unwrap();
        assert_eq!(rule.id, i as u64 + 1);
    }
    let a = validate(1, &json_req("block", r#"{"api_key": "sk_live_123"}"#), NOW).unwrap();
    assert_eq!(a.target.value, KeyHash::of("sk_live_123").to_hex());
    let a = validate(
        1,
        &json_req("block", r#"{"host": "Evil.Example.com:443"}"#),
        NOW,
    )
    .unwrap();
    assert_eq!(a.target.value, "evil.example.com");
    assert_eq!(a.warnings.len(), 1);
    for iso in IsolationInput::ALL_FOR_TESTS {
        let r = req(
            serde_json::json!({"kind": "isolate", "scope": {"pixel": "px-1"}, "isolation": iso, "reason": "r"}),
        );
        let a = validate(1, &r, NOW).unwrap();
        let rule = to_rule(7, 1, a.kind, &a.target, a.isolation, a.mode, None).unwrap();
        assert!(matches!(
            rule.kind,
            RuleKind::Isolate {
                scope: Scope::Pixel(_),
                ..
            }
        ));
    }
}

impl IsolationInput {
    const ALL_FOR_TESTS: [&'static str; 3] = ["block", "read_only", "pixel_kill"];
}

fn json_req(kind: &str, target: &str) -> ActionRequest {
    let t: serde_json::Value = serde_json::from_str(target).unwrap();
    req(serde_json::json!({"kind": kind, "target": t, "reason": "test"}))
}

#[test]
fn validation_names_fields() {
    let base =
        serde_json::json!({"kind": "block", "target": {"cidr": "10.0.0.0/8"}, "reason": "r"});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = base.clone();
        b[k] = v;
        req(b)
    };
    assert_eq!(
        field_of(validate(1, &with("reason", " ".into()), NOW)),
        "reason"
    );
    assert_eq!(
        field_of(validate(
            1,
            &with("target", serde_json::json!({"cidr": "nope"})),
            NOW
        )),
        "target.cidr"
    );
    assert_eq!(
        field_of(validate(1, &with("expires_in", "soon".into()), NOW)),
        "expires_in"
    );
    assert_eq!(
        field_of(validate(1, &with("expires_in", 0.into()), NOW)),
        "expires_in"
    );
    assert_eq!(
        field_of(validate(
            1,
            &with("expires_at", "2000-01-01T00:00:00Z".into()),
            NOW
        )),
        "expires_at"
    );
    assert_eq!(
        field_of(validate(1, &with("expires_at", "tomorrow".into()), NOW)),
        "expires_at"
    );
    assert_eq!(
        field_of(validate(
            1,
            &with("scope", serde_json::json!({"host": "a"})),
            NOW
        )),
        "scope"
    );
    let pp = with("target", serde_json::json!({"path_prefix": "api"}));
    assert_eq!(field_of(validate(1, &pp, NOW)), "target.path_prefix");
    let iso =
        req(serde_json::json!({"kind": "isolate", "scope": {"host": "a.example"}, "reason": "r"}));
    assert_eq!(field_of(validate(1, &iso, NOW)), "isolation");
    let a = validate(1, &with("expires_in", "1h".into()), NOW).unwrap();
    assert_eq!(a.expires_at_ms, Some(NOW + 3_600_000));
    let a = validate(1, &with("expires_in", 60.into()), NOW).unwrap();
    assert_eq!(a.expires_at_ms, Some(NOW + 60_000));
}

fn block(cidr: &str, force: bool) -> NewAction {
    let mut r = json_req("block", &format!(r#"{{"cidr": "{cidr}"}}"#));
    r.force = force;
    validate(1, &r, NOW).unwrap()
}

fn live(id: i64, kind: ActionKind, cidr: &str) -> ActiveTarget {
    ActiveTarget {
        id,
        kind,
        target: StoredTarget {
            ty: "cidr",
            value: cidr.into(),
        },
    }
}

#[test]
fn guard_rails() {
    let rails = GuardRails::default();
    let guard = |r: CoreResult<()>| matches!(r, Err(CoreError::GuardRail { .. }));
    assert!(guard(check_conflicts(
        &block("0.0.0.0/0", false),
        &[],
        rails
    )));
    assert!(guard(check_conflicts(&block("::/0", false), &[], rails)));
    assert!(guard(check_conflicts(
        &block("10.0.0.0/7", false),
        &[],
        rails
    )));
    assert!(check_conflicts(&block("10.0.0.0/8", false), &[], rails).is_ok());
    assert!(guard(check_conflicts(
        &block("2001:db8::/23", false),
        &[],
        rails
    )));
    assert!(check_conflicts(&block("2001:db8::/24", false), &[], rails).is_ok());
    assert!(check_conflicts(&block("0.0.0.0/0", true), &[], rails).is_ok());
    // Overlap with an allow entry, either way round.
    let allows = [live(5, ActionKind::Allow, "192.0.2.0/24")];
    assert!(guard(check_conflicts(
        &block("192.0.2.7/32", false),
        &allows,
        rails
    )));
    assert!(guard(check_conflicts(
        &block("192.0.0.0/16", false),
        &allows,
        rails
    )));
    assert!(check_conflicts(&block("198.51.100.0/24", false), &allows, rails).is_ok());
    assert!(check_conflicts(&block("192.0.2.7/32", true), &allows, rails).is_ok());
    // Duplicates are refused even with force.
    let blocks = [live(6, ActionKind::Block, "198.51.100.0/24")];
    let dup = check_conflicts(&block("198.51.100.0/24", true), &blocks, rails);
    assert!(
        matches!(dup, Err(CoreError::Conflict { ref field, .. }) if field == "target.cidr"),
        "{dup:?}"
    );
}

#[test]
fn every_kind_round_trips() {
    for k in ActionKind::ALL {
        assert_eq!(ActionKind::parse(k.as_str()), Some(k));
    }
}
