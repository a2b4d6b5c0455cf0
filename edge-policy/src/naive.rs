//! The reference semantics: a linear scan over every rule.
//!
//! This is the specification the compiled [`crate::Matcher`] must agree with (property
//! tests compare the two). It is far too slow for the request path.
//!
//! Precedence, highest first, among live rules whose target or scope matches:
//! 1. an allow-list entry (any mode): [`Action::AllowListed`];
//! 2. an enforced block: [`Action::Block`];
//! 3. an enforced isolation `block`: [`Action::Isolate`];
//! 4. an enforced isolation `read_only` on a method other than GET/HEAD/OPTIONS:
//!    [`Action::ReadOnlyRefused`];
//! 5. an enforced `pixel_kill` on a pixel request: [`Action::PixelNoopScript`] or
//!    [`Action::PixelDropBeacon`];
//! 6. otherwise [`Action::Allow`].
//!
//! Within one level the rule with the lowest id decides. `simulated` is the simulate-mode rule
//! that would have decided at the highest level (lowest id within it), reported only when the
//! request is forwarded (action Allow) — a request an enforced rule stops is not "would have".
//!
//! This decides one reading of a request. A request is first read the way upstream servers
//! read it (`crate::canon`: the canonical path, and every reading of an ambiguous one; every
//! pixel id and API key it carries), each reading is decided here, and the verdicts are
//! combined (`crate::verdict::combine`: a rule that stops any reading stops the request; an
//! allow-list entry lets it through only when it covers every reading). `crate::request`
//! does that around either evaluator, and its tests hold the matcher to this one through it.

use crate::model::{path_has_prefix, Isolation, KeyHash, Mode, Rule, RuleKind, Scope, Target};
use crate::verdict::{Action, Facts, PixelKind, Verdict};

/// Whether a target matches the facts.
pub fn target_matches(t: &Target, f: &Facts<'_>) -> bool {
    match t {
        Target::Ip(net) => f.client_ip.is_some_and(|ip| net.trunc().contains(&ip)),
        Target::ApiKey(h) => f.api_key.is_some_and(|k| KeyHash::of(k) == *h),
        Target::Account(a) => f.account == Some(a.as_str()),
        Target::Pixel(p) => f.pixel.is_some_and(|px| px.is(p)),
        Target::Host(h) => f.host.eq_ignore_ascii_case(h),
        Target::PathPrefix(p) => path_has_prefix(f.path, p),
    }
}

/// Whether an isolation scope covers the facts.
pub fn scope_matches(s: &Scope, f: &Facts<'_>) -> bool {
    match s {
        Scope::Host(h) => f.host.eq_ignore_ascii_case(h),
        Scope::PathPrefix(p) => path_has_prefix(f.path, p),
        Scope::Pixel(p) => f.pixel.is_some_and(|px| px.is(p)),
    }
}

/// Methods that pass a `read_only` isolation.
pub fn is_read_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// The action a rule would take on these facts, if any (ignoring its mode), and its level
/// (lower acts first).
pub fn rule_effect(r: &Rule, f: &Facts<'_>) -> Option<(u8, Action)> {
    match &r.kind {
        RuleKind::Allow(t) => target_matches(t, f).then_some((0, Action::AllowListed)),
        RuleKind::Block(t) => target_matches(t, f).then_some((1, Action::Block)),
        RuleKind::Isolate { scope, action } => {
            if !scope_matches(scope, f) {
                return None;
            }
            match action {
                Isolation::Block => Some((2, Action::Isolate)),
                Isolation::ReadOnly => {
                    (!is_read_method(f.method)).then_some((3, Action::ReadOnlyRefused))
                }
                Isolation::PixelKill => f.pixel.map(|px| match px.kind {
                    PixelKind::Script => (4, Action::PixelNoopScript),
                    PixelKind::Beacon => (4, Action::PixelDropBeacon),
                }),
            }
        }
    }
}

/// Evaluate every rule in turn.
pub fn evaluate(rules: &[Rule], f: &Facts<'_>, now_ms: u64) -> Verdict {
    let mut best: Option<(u8, u64, Action)> = None;
    let mut best_sim: Option<(u8, u64)> = None;
    for r in rules.iter().filter(|r| r.is_live(now_ms)) {
        let Some((level, action)) = rule_effect(r, f) else {
            continue;
        };
        let enforced = r.mode == Mode::Enforce || matches!(r.kind, RuleKind::Allow(_));
        if enforced {
            if best.is_none_or(|(l, id, _)| (level, r.id) < (l, id)) {
                best = Some((level, r.id, action));
            }
        } else if best_sim.is_none_or(|(l, id)| (level, r.id) < (l, id)) {
            best_sim = Some((level, r.id));
        }
    }
    match best {
        Some((_, id, action)) => Verdict {
            action,
            rule: Some(id),
            simulated: None,
        },
        None => Verdict {
            action: Action::Allow,
            rule: None,
            simulated: best_sim.map(|(_, id)| id),
        },
    }
}
