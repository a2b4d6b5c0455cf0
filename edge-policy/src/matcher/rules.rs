//! Rules rebuilt from the matcher's storage, exactly as they came in (host bits of a
//! network included): for [`Matcher::to_snapshot`] and the snapshot the filter republishes.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::dense::{Dense, Entry};
use super::index::{Bits, StrKind};
use super::slab::{self, Meta};
use super::Matcher;
use crate::model::{Isolation, KeyHash, Mode, Rule, RuleId, RuleKind, Scope, Target};
use crate::wire::Snapshot;

impl Matcher {
    /// The policy this matcher enforces, rules sorted by id, each exactly as received.
    pub fn to_snapshot(&self) -> Snapshot {
        let mut rules = Vec::with_capacity(self.len());
        self.for_each_rule(&mut |r| rules.push(r));
        rules.sort_unstable_by_key(|r| r.id);
        Snapshot {
            version: self.version,
            rules,
        }
    }

    /// Every rule, rebuilt one at a time in storage order (not sorted).
    pub fn for_each_rule(&self, each: &mut dyn FnMut(Rule)) {
        self.each_dense(&self.v4d, each, |a, l| {
            Ipv4Net::new(Ipv4Addr::from(a), l).ok().map(IpNet::V4)
        });
        self.each_dense(&self.v6d, each, |a, l| {
            Ipv6Net::new(Ipv6Addr::from(a), l).ok().map(IpNet::V6)
        });
        for s in self.v4.live_slots() {
            let net = self
                .v4
                .key(s)
                .zip(self.v4.aux(s))
                .and_then(|(&a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).ok());
            if let (Some(net), Some(m)) = (net, self.v4.meta(s)) {
                if let Some(r) = self.hashed_rule(m, Target::Ip(IpNet::V4(net)), None) {
                    each(r);
                }
            }
        }
        for s in self.v6.live_slots() {
            let net = self
                .v6
                .key(s)
                .zip(self.v6.aux(s))
                .and_then(|(&a, l)| Ipv6Net::new(Ipv6Addr::from(a), l).ok());
            if let (Some(net), Some(m)) = (net, self.v6.meta(s)) {
                if let Some(r) = self.hashed_rule(m, Target::Ip(IpNet::V6(net)), None) {
                    each(r);
                }
            }
        }
        for s in self.keys.live_slots() {
            if let (Some(&k), Some(m)) = (self.keys.key(s), self.keys.meta(s)) {
                if let Some(r) = self.hashed_rule(m, Target::ApiKey(KeyHash(k)), None) {
                    each(r);
                }
            }
        }
        for s in self.strs.live_slots() {
            let (Some(k), Some(kind), Some(m)) = (
                self.strs.key(s),
                self.strs.aux(s).and_then(StrKind::from_aux),
                self.strs.meta(s),
            ) else {
                continue;
            };
            let text = String::from(&**k);
            let scope = match kind {
                StrKind::Host => Some(Scope::Host(text.clone())),
                StrKind::Path => Some(Scope::PathPrefix(text.clone())),
                StrKind::Pixel => Some(Scope::Pixel(text.clone())),
                StrKind::Account => None,
            };
            let target = match kind {
                StrKind::Host => Target::Host(text),
                StrKind::Path => Target::PathPrefix(text),
                StrKind::Pixel => Target::Pixel(text),
                StrKind::Account => Target::Account(text),
            };
            if let Some(r) = self.hashed_rule(m, target, scope) {
                each(r);
            }
        }
    }

    fn each_dense<A: Bits>(
        &self,
        d: &Dense<A>,
        each: &mut dyn FnMut(Rule),
        net: impl Fn(A, u8) -> Option<IpNet>,
    ) {
        for e in d.entries.iter().filter(|e| e.is_alive()) {
            let (flags, incident) = self.attrs.get(e.attr());
            let expires = dense_expiry(d, e, flags);
            if let Some(n) = net(e.addr, e.len()) {
                if let Some(r) = rule_of(e.id, flags, expires, incident, Target::Ip(n), None) {
                    each(r);
                }
            }
        }
    }

    /// Rebuild a rule from its slot in the hashed layout. Isolations need `scope`.
    fn hashed_rule(&self, m: Meta, target: Target, scope: Option<Scope>) -> Option<Rule> {
        let incident = self
            .incidents
            .get(m.incident)
            .filter(|_| m.incident != slab::NO_INCIDENT);
        rule_of(m.id, m.flags, m.expires_at_ms, incident, target, scope)
    }
}

/// The expiry of a dense entry with these flags (0 when it has none).
pub(super) fn dense_expiry<A: Bits>(d: &Dense<A>, e: &Entry<A>, flags: u8) -> u64 {
    if flags & slab::FLAG_EXPIRES != 0 {
        d.expiry(e.id)
    } else {
        0
    }
}

/// Rebuild a rule from its parts (see [`slab`] for the flags). Isolations need `scope`.
fn rule_of(
    id: RuleId,
    flags: u8,
    expires_at_ms: u64,
    incident: Option<u64>,
    target: Target,
    scope: Option<Scope>,
) -> Option<Rule> {
    let iso = |action| {
        scope
            .clone()
            .map(|scope| RuleKind::Isolate { scope, action })
    };
    let kind = match flags & slab::CLASS_MASK {
        slab::CLASS_ALLOW => RuleKind::Allow(target),
        slab::CLASS_BLOCK => RuleKind::Block(target),
        slab::CLASS_ISO_BLOCK => iso(Isolation::Block)?,
        slab::CLASS_ISO_READ_ONLY => iso(Isolation::ReadOnly)?,
        slab::CLASS_ISO_PIXEL_KILL => iso(Isolation::PixelKill)?,
        _ => return None,
    };
    Some(Rule {
        id,
        incident,
        mode: if flags & slab::FLAG_SIMULATE != 0 {
            Mode::Simulate
        } else {
            Mode::Enforce
        },
        expires_at_ms: (flags & slab::FLAG_EXPIRES != 0).then_some(expires_at_ms),
        kind,
    })
}
