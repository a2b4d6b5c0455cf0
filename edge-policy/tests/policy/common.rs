//! Builders and `expect_*` helpers shared by the test modules.

use std::net::IpAddr;

use edge_policy::{
    naive, Facts, IpNet, Isolation, KeyHash, Matcher, Mode, PixelCase, PixelKind, PixelRef, Rule,
    RuleKind, Scope, Snapshot, Target, Verdict,
};

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

pub fn net(s: &str) -> IpNet {
    s.parse().expect("test network")
}

pub fn rule(id: u64, kind: RuleKind) -> Rule {
    Rule {
        id,
        incident: Some(7),
        mode: Mode::Enforce,
        expires_at_ms: None,
        kind,
    }
}

pub fn block(id: u64, t: Target) -> Rule {
    rule(id, RuleKind::Block(t))
}

pub fn allow(id: u64, t: Target) -> Rule {
    rule(id, RuleKind::Allow(t))
}

pub fn isolate(id: u64, scope: Scope, action: Isolation) -> Rule {
    rule(id, RuleKind::Isolate { scope, action })
}

pub fn simulate(mut r: Rule) -> Rule {
    r.mode = Mode::Simulate;
    r
}

pub fn snapshot(version: u64, rules: Vec<Rule>) -> Snapshot {
    Snapshot { version, rules }
}

/// Facts of a plain `GET example.com /` request with no client address.
pub fn req() -> Facts<'static> {
    Facts {
        method: "GET",
        host: "example.com",
        path: "/",
        ..Facts::default()
    }
}

pub trait FactsExt<'a> {
    fn client(self, ip: IpAddr) -> Self;
    fn method(self, m: &'a str) -> Self;
    fn host(self, h: &'a str) -> Self;
    fn path(self, p: &'a str) -> Self;
    fn api_key(self, k: &'a str) -> Self;
    fn account(self, a: &'a str) -> Self;
    /// A pixel id from a case-insensitive route (the default).
    fn pixel(self, id: &'a str, kind: PixelKind) -> Self;
    /// A pixel id from a case-sensitive route.
    fn pixel_exact(self, id: &'a str, kind: PixelKind) -> Self;
}

impl<'a> FactsExt<'a> for Facts<'a> {
    fn client(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }
    fn method(mut self, m: &'a str) -> Self {
        self.method = m;
        self
    }
    fn host(mut self, h: &'a str) -> Self {
        self.host = h;
        self
    }
    fn path(mut self, p: &'a str) -> Self {
        self.path = p;
        self
    }
    fn api_key(mut self, k: &'a str) -> Self {
        self.api_key = Some(k);
        self
    }
    fn account(mut self, a: &'a str) -> Self {
        self.account = Some(a);
        self
    }
    fn pixel(mut self, id: &'a str, kind: PixelKind) -> Self {
        self.pixel = Some(PixelRef {
            id,
            kind,
            case: PixelCase::Insensitive,
        });
        self
    }
    fn pixel_exact(mut self, id: &'a str, kind: PixelKind) -> Self {
        self.pixel = Some(PixelRef {
            id,
            kind,
            case: PixelCase::Sensitive,
        });
        self
    }
}

/// Evaluate with the compiled matcher, checking it agrees with the naive reference.
#[track_caller]
pub fn eval(rules: &[Rule], f: &Facts<'_>, now_ms: u64) -> Verdict {
    let m = Matcher::new(&snapshot(1, rules.to_vec()));
    let got = m.evaluate(f, now_ms);
    assert_eq!(
        got,
        naive::evaluate(rules, f, now_ms),
        "matcher disagrees with naive on {f:?}"
    );
    got
}

#[track_caller]
pub fn expect_blocked_by(rules: &[Rule], f: &Facts<'_>, id: u64) {
    let v = eval(rules, f, 0);
    assert_eq!(
        (v.action, v.rule),
        (edge_policy::Action::Block, Some(id)),
        "facts {f:?}"
    );
}

#[track_caller]
pub fn expect_allowed(rules: &[Rule], f: &Facts<'_>) {
    assert_eq!(eval(rules, f, 0), Verdict::ALLOW, "facts {f:?}");
}

pub fn key_target(key: &str) -> Target {
    Target::ApiKey(KeyHash::of(key))
}
