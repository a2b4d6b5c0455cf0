//! The compiled matcher, target by target, mode by mode, with every action.

use std::collections::HashSet;

use edge_policy::wire::ApplyError;
use edge_policy::{
    Action, Delta, Isolation, Matcher, Mode, PixelKind, Rule, RuleKind, Scope, Target, Verdict,
};

use crate::common::*;

#[test]
fn ipv4_address_and_cidr() {
    let rules = [
        block(1, Target::Ip(net("192.0.2.7/32"))),
        block(2, Target::Ip(net("198.51.100.0/24"))),
    ];
    expect_blocked_by(&rules, &req().client(ip("192.0.2.7")), 1);
    expect_allowed(&rules, &req().client(ip("192.0.2.8")));
    expect_blocked_by(&rules, &req().client(ip("198.51.100.0")), 2);
    expect_blocked_by(&rules, &req().client(ip("198.51.100.255")), 2);
    expect_allowed(&rules, &req().client(ip("198.51.101.0")));
    expect_allowed(&rules, &req());
    // An IPv4 rule never matches an IPv6 client, not even a v4-mapped one (as naive).
    expect_allowed(&rules, &req().client(ip("::ffff:192.0.2.7")));
}

#[test]
fn ipv6_address_and_cidr() {
    let rules = [
        block(1, Target::Ip(net("2001:db8::1/128"))),
        block(2, Target::Ip(net("2001:db8:aa::/48"))),
    ];
    expect_blocked_by(&rules, &req().client(ip("2001:db8::1")), 1);
    expect_allowed(&rules, &req().client(ip("2001:db8::2")));
    expect_blocked_by(&rules, &req().client(ip("2001:db8:aa:ffff::9")), 2);
    expect_allowed(&rules, &req().client(ip("2001:db8:ab::")));
    expect_allowed(&rules, &req().client(ip("192.0.2.1")));
}

#[test]
fn zero_length_prefixes_and_host_bits() {
    let rules = [
        block(1, Target::Ip(net("10.9.8.7/0"))),
        block(2, Target::Ip(net("2001:db8::5/126"))),
    ];
    expect_blocked_by(&rules, &req().client(ip("203.0.113.1")), 1);
    expect_blocked_by(&rules, &req().client(ip("2001:db8::7")), 2);
    expect_allowed(&rules, &req().client(ip("2001:db8::8")));
    // Host bits are kept in the snapshot the matcher gives back.
    let m = Matcher::new(&snapshot(3, rules.to_vec()));
    assert_eq!(m.to_snapshot().rules, rules.to_vec());
}

#[test]
fn api_key_account_pixel() {
    let rules = [
        block(1, key_target("sk_live_leaked")),
        block(2, Target::Account("acct-42".into())),
        block(3, Target::Pixel("px-9".into())),
    ];
    expect_blocked_by(&rules, &req().api_key("sk_live_leaked"), 1);
    expect_allowed(&rules, &req().api_key("sk_live_other"));
    expect_blocked_by(&rules, &req().account("acct-42"), 2);
    expect_allowed(&rules, &req().account("ACCT-42"));
    expect_allowed(&rules, &req().account("acct-4"));
    expect_blocked_by(&rules, &req().pixel("px-9", PixelKind::Beacon), 3);
    expect_allowed(&rules, &req().pixel("px-90", PixelKind::Beacon));
}

#[test]
fn pixel_ids_compare_as_the_route_that_found_them_says() {
    let rules = [
        block(1, Target::Pixel("Px-9".into())),
        block(2, Target::Pixel("px-9".into())),
        block(3, Target::Pixel("Other".into())),
    ];
    // Case-insensitive route: every spelling is both rules (the lower id decides).
    expect_blocked_by(&rules, &req().pixel("PX-9", PixelKind::Beacon), 1);
    expect_blocked_by(&rules, &req().pixel("px-9", PixelKind::Beacon), 1);
    expect_blocked_by(&rules, &req().pixel("OTHER", PixelKind::Beacon), 3);
    // Case-sensitive route: only the exact id.
    expect_blocked_by(&rules, &req().pixel_exact("Px-9", PixelKind::Beacon), 1);
    expect_blocked_by(&rules, &req().pixel_exact("px-9", PixelKind::Beacon), 2);
    expect_allowed(&rules, &req().pixel_exact("PX-9", PixelKind::Beacon));
    expect_allowed(&rules, &req().pixel_exact("other", PixelKind::Beacon));
}

#[test]
fn host_ignores_ascii_case() {
    let rules = [block(1, Target::Host("Shop.Example.com".into()))];
    expect_blocked_by(&rules, &req().host("shop.example.com"), 1);
    expect_blocked_by(&rules, &req().host("SHOP.EXAMPLE.COM"), 1);
    expect_allowed(&rules, &req().host("shop.example.co"));
    expect_allowed(&rules, &req().host("x.shop.example.com"));
}

#[test]
fn path_prefix_on_segment_boundaries() {
    let rules = [
        block(1, Target::PathPrefix("/api".into())),
        block(2, Target::PathPrefix("/admin/".into())),
    ];
    expect_blocked_by(&rules, &req().path("/api"), 1);
    expect_blocked_by(&rules, &req().path("/api/"), 1);
    expect_blocked_by(&rules, &req().path("/api/v1/users"), 1);
    expect_allowed(&rules, &req().path("/apix"));
    expect_allowed(&rules, &req().path("/ap"));
    expect_allowed(&rules, &req().path("/v1/api"));
    expect_blocked_by(&rules, &req().path("/admin"), 2);
    expect_blocked_by(&rules, &req().path("/admin/x"), 2);
    expect_allowed(&rules, &req().path("/administrator"));
    expect_allowed(&rules, &req().path(""));
    for everything in ["", "/"] {
        let rules = [block(9, Target::PathPrefix(everything.into()))];
        for p in ["", "/", "/a/b", "x"] {
            expect_blocked_by(&rules, &req().path(p), 9);
        }
    }
    // Odd prefixes behave as naive says too.
    let odd = [
        block(3, Target::PathPrefix("//".into())),
        block(4, Target::PathPrefix("a".into())),
    ];
    for p in ["/", "//", "//x", "/x", "a", "a/b", "ab", "/a"] {
        eval(&odd, &req().path(p), 0);
    }
}

#[test]
fn every_mode_of_a_block() {
    for mode in Mode::ALL {
        let mut r = block(5, Target::Host("example.com".into()));
        r.mode = mode;
        let v = eval(&[r], &req(), 0);
        let expected = match mode {
            Mode::Enforce => Verdict {
                action: Action::Block,
                rule: Some(5),
                simulated: None,
            },
            Mode::Simulate => Verdict {
                action: Action::Allow,
                rule: None,
                simulated: Some(5),
            },
        };
        assert_eq!(v, expected, "{mode:?}");
    }
}

#[test]
fn allow_entries_act_in_every_mode() {
    for mode in Mode::ALL {
        let mut a = allow(9, Target::Ip(net("192.0.2.0/24")));
        a.mode = mode;
        let rules = [a, block(1, Target::Host("example.com".into()))];
        let v = eval(&rules, &req().client(ip("192.0.2.1")), 0);
        assert_eq!(
            v,
            Verdict {
                action: Action::AllowListed,
                rule: Some(9),
                simulated: None
            },
            "{mode:?}"
        );
    }
}

/// Every isolation in every mode, on reads, writes and both kinds of pixel request; collects
/// the actions seen so the last test can check every action is reachable.
fn isolation_actions() -> HashSet<Action> {
    let mut seen = HashSet::new();
    let requests = [
        req().method("GET"),
        req().method("POST"),
        req().method("HEAD"),
        req().method("OPTIONS"),
        req().method("DELETE").pixel("px-1", PixelKind::Script),
        req().method("GET").pixel("px-1", PixelKind::Script),
        req().method("GET").pixel("px-1", PixelKind::Beacon),
    ];
    for action in Isolation::ALL {
        for mode in Mode::ALL {
            for scope in [
                Scope::Host("example.com".into()),
                Scope::PathPrefix("/".into()),
                Scope::Pixel("px-1".into()),
            ] {
                let mut r = isolate(3, scope.clone(), action);
                r.mode = mode;
                for f in &requests {
                    let v = eval(std::slice::from_ref(&r), f, 0);
                    let pixel_scope_missed = matches!(scope, Scope::Pixel(_)) && f.pixel.is_none();
                    let would = if pixel_scope_missed {
                        None
                    } else {
                        match action {
                            Isolation::Block => Some(Action::Isolate),
                            Isolation::ReadOnly => {
                                (!matches!(f.method, "GET" | "HEAD" | "OPTIONS"))
                                    .then_some(Action::ReadOnlyRefused)
                            }
                            Isolation::PixelKill => f.pixel.map(|p| match p.kind {
                                PixelKind::Script => Action::PixelNoopScript,
                                PixelKind::Beacon => Action::PixelDropBeacon,
                            }),
                        }
                    };
                    let expected = match (would, mode) {
                        (None, _) => Verdict::ALLOW,
                        (Some(a), Mode::Enforce) => Verdict {
                            action: a,
                            rule: Some(3),
                            simulated: None,
                        },
                        (Some(_), Mode::Simulate) => Verdict {
                            action: Action::Allow,
                            rule: None,
                            simulated: Some(3),
                        },
                    };
                    assert_eq!(v, expected, "{action:?} {mode:?} {scope:?} {f:?}");
                    seen.insert(v.action);
                }
            }
        }
    }
    seen
}

#[test]
fn every_isolation_in_every_mode() {
    isolation_actions();
}

#[test]
fn every_action_is_reachable() {
    let mut seen = isolation_actions();
    seen.insert(eval(&[block(1, Target::Host("example.com".into()))], &req(), 0).action);
    seen.insert(eval(&[allow(1, Target::Host("example.com".into()))], &req(), 0).action);
    for a in Action::ALL {
        assert!(seen.contains(&a), "{a:?} never produced");
    }
}

#[test]
fn precedence_allow_then_block_then_isolation() {
    let f = req()
        .method("POST")
        .client(ip("192.0.2.1"))
        .pixel("px", PixelKind::Beacon);
    let allow_r = allow(50, Target::Ip(net("192.0.2.0/24")));
    let block_r = block(40, Target::Ip(net("192.0.2.1/32")));
    let iso = isolate(10, Scope::Host("example.com".into()), Isolation::Block);
    let ro = isolate(5, Scope::PathPrefix("/".into()), Isolation::ReadOnly);
    let pk = isolate(1, Scope::Pixel("px".into()), Isolation::PixelKill);
    let all = vec![
        allow_r.clone(),
        block_r.clone(),
        iso.clone(),
        ro.clone(),
        pk.clone(),
    ];
    let v = eval(&all, &f, 0);
    assert_eq!((v.action, v.rule), (Action::AllowListed, Some(50)));
    let v = eval(&all[1..], &f, 0);
    assert_eq!((v.action, v.rule), (Action::Block, Some(40)));
    let v = eval(&all[2..], &f, 0);
    assert_eq!((v.action, v.rule), (Action::Isolate, Some(10)));
    let v = eval(&all[3..], &f, 0);
    assert_eq!((v.action, v.rule), (Action::ReadOnlyRefused, Some(5)));
    let v = eval(&all[4..], &f, 0);
    assert_eq!((v.action, v.rule), (Action::PixelDropBeacon, Some(1)));
    // A simulated block under an enforced isolation is not reported.
    let v = eval(&[simulate(block_r.clone()), iso.clone()], &f, 0);
    assert_eq!(
        v,
        Verdict {
            action: Action::Isolate,
            rule: Some(10),
            simulated: None
        }
    );
    // Simulated rules: the highest level wins, then the lowest id.
    let v = eval(
        &[
            simulate(iso),
            simulate(block_r),
            simulate(block(41, Target::Account("a".into()))),
        ],
        &f.account("a"),
        0,
    );
    assert_eq!(
        v,
        Verdict {
            action: Action::Allow,
            rule: None,
            simulated: Some(40)
        }
    );
}

#[test]
fn lowest_id_decides_among_rules_sharing_a_target() {
    let t = Target::Ip(net("192.0.2.0/24"));
    let rules = [
        block(30, t.clone()),
        block(20, t.clone()),
        simulate(block(10, t.clone())),
        block(25, Target::Ip(net("192.0.2.0/25"))),
    ];
    expect_blocked_by(&rules, &req().client(ip("192.0.2.1")), 20);
    expect_blocked_by(&rules, &req().client(ip("192.0.2.200")), 20);
}

#[test]
fn expired_rules_stop_matching_without_rebuild() {
    let mut r = block(1, Target::Ip(net("192.0.2.0/24")));
    r.expires_at_ms = Some(1_000);
    let mut fallback = simulate(block(2, Target::Host("example.com".into())));
    fallback.expires_at_ms = Some(2_000);
    let m = Matcher::new(&snapshot(1, vec![r, fallback]));
    let f = req().client(ip("192.0.2.9"));
    assert_eq!(m.evaluate(&f, 999).action, Action::Block);
    assert_eq!(
        m.evaluate(&f, 1_000),
        Verdict {
            action: Action::Allow,
            rule: None,
            simulated: Some(2)
        }
    );
    assert_eq!(m.evaluate(&f, 2_000), Verdict::ALLOW);
    assert_eq!(m.len(), 2, "expired rules stay until removed");
}

#[test]
fn key_hash_cache_always_answers_the_sha256() {
    use edge_policy::matcher::KeyHashCache;
    use edge_policy::KeyHash;
    let long = "k".repeat(KeyHashCache::MAX_KEY_LEN + 1);
    for slots in [1, 7, 1024] {
        let mut c = KeyHashCache::new(slots);
        for round in 0..3 {
            for i in 0..50 {
                let key = format!("key-{i}");
                assert_eq!(
                    c.hash(&key),
                    KeyHash::of(&key),
                    "slots {slots} round {round}"
                );
            }
            assert_eq!(c.hash(&long), KeyHash::of(&long));
            assert_eq!(c.hash(""), KeyHash::of(""));
        }
    }
}

/// `has_expiring` (the filter skips reading the clock without such rules) follows upserts,
/// replacements and removals.
#[test]
fn has_expiring_tracks_rules_with_an_expiry() {
    let mut r = block(1, Target::Ip(net("192.0.2.0/24")));
    r.expires_at_ms = Some(1_000);
    let plain = block(2, Target::Host("example.com".into()));
    let mut m = Matcher::new(&snapshot(1, vec![r.clone(), plain.clone()]));
    assert!(m.has_expiring());
    let mut replaced = r.clone();
    replaced.expires_at_ms = None;
    let step = |since, upserts, removed| Delta {
        since,
        version: since + 1,
        upserts,
        removed,
    };
    m.apply_delta(&step(1, vec![replaced], vec![])).unwrap();
    assert!(!m.has_expiring(), "the only expiring rule was replaced");
    m.apply_delta(&step(2, vec![r.clone()], vec![])).unwrap();
    assert!(m.has_expiring());
    m.apply_delta(&step(3, vec![], vec![1])).unwrap();
    assert!(!m.has_expiring(), "removed");
    assert!(!Matcher::new(&snapshot(1, vec![plain])).has_expiring());
}

#[test]
fn delta_upsert_remove_replace() {
    let s1 = snapshot(
        1,
        vec![
            block(1, Target::Ip(net("192.0.2.0/24"))),
            block(2, Target::Host("a.example".into())),
            block(3, key_target("k")),
        ],
    );
    let mut m = Matcher::new(&s1);
    let d = Delta {
        since: 1,
        version: 2,
        // Rule 1 moves from an address to a path: its old target must stop matching.
        upserts: vec![
            block(1, Target::PathPrefix("/x".into())),
            allow(4, Target::Account("ops".into())),
        ],
        removed: vec![2, 99],
    };
    m.apply_delta(&d).expect("applies");
    assert_eq!(m.version(), 2);
    assert_eq!(m.len(), 3);
    assert_eq!(m.to_snapshot(), s1.apply(&d).expect("applies"));
    assert_eq!(
        m.evaluate(&req().client(ip("192.0.2.1")), 0),
        Verdict::ALLOW
    );
    assert_eq!(m.evaluate(&req().host("a.example"), 0), Verdict::ALLOW);
    assert_eq!(m.evaluate(&req().path("/x/y"), 0).rule, Some(1));
    assert_eq!(m.evaluate(&req().api_key("k"), 0).rule, Some(3));
    assert_eq!(
        m.evaluate(&req().api_key("k").account("ops"), 0).action,
        Action::AllowListed
    );
    // Remove and re-add the same id in one delta: the upsert wins.
    let d3 = Delta {
        since: 2,
        version: 3,
        upserts: vec![block(3, key_target("k2"))],
        removed: vec![3],
    };
    m.apply_delta(&d3).expect("applies");
    assert_eq!(m.evaluate(&req().api_key("k"), 0), Verdict::ALLOW);
    assert_eq!(m.evaluate(&req().api_key("k2"), 0).rule, Some(3));
}

#[test]
fn delta_with_wrong_base_leaves_matcher_unchanged() {
    let s = snapshot(5, vec![block(1, Target::Host("a.example".into()))]);
    let mut m = Matcher::new(&s);
    for since in [0, 4, 6] {
        let d = Delta {
            since,
            version: 7,
            upserts: vec![block(2, Target::Host("b".into()))],
            removed: vec![1],
        };
        assert_eq!(
            m.apply_delta(&d),
            Err(ApplyError::VersionMismatch { have: 5, since })
        );
        assert_eq!(m.version(), 5);
        assert_eq!(m.to_snapshot(), s);
        assert_eq!(m.evaluate(&req().host("a.example"), 0).rule, Some(1));
    }
}

#[test]
fn snapshot_round_trip_keeps_every_field() {
    let mut rules: Vec<Rule> = vec![
        block(9, Target::Ip(net("10.1.2.3/8"))),
        allow(2, Target::Ip(net("2001:db8::1/64"))),
        block(3, key_target("key")),
        rule(4, RuleKind::Block(Target::Account("Acc".into()))),
        isolate(5, Scope::Host("Ex.com".into()), Isolation::ReadOnly),
        isolate(6, Scope::PathPrefix("/p/".into()), Isolation::PixelKill),
        isolate(7, Scope::Pixel("px".into()), Isolation::Block),
        simulate(block(8, Target::Pixel("px".into()))),
    ];
    rules[0].incident = None;
    rules[1].expires_at_ms = Some(u64::MAX);
    rules[2].incident = Some(u64::MAX);
    let m = Matcher::from_snapshot(snapshot(11, rules.clone()));
    rules.sort_by_key(|r| r.id);
    assert_eq!(m.to_snapshot(), snapshot(11, rules.clone()));
    assert_eq!(
        Matcher::new(&snapshot(11, rules.clone()))
            .to_snapshot()
            .rules,
        rules
    );
    assert!(Matcher::default().is_empty());
    assert!(m.heap_bytes() > 0);
}

#[test]
fn duplicate_ids_in_a_snapshot_keep_the_last() {
    let s = snapshot(
        1,
        vec![
            block(1, Target::Host("a".into())),
            block(1, Target::Host("b".into())),
        ],
    );
    let m = Matcher::new(&s);
    assert_eq!(m.len(), 1);
    assert_eq!(m.evaluate(&req().host("a"), 0), Verdict::ALLOW);
    assert_eq!(m.evaluate(&req().host("b"), 0).rule, Some(1));
}
