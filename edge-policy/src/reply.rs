//! The local replies the edge sends instead of forwarding.

use crate::model::RuleId;
use crate::verdict::{Action, Verdict};

/// A reply the edge sends itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The body of a pixel script under the kill switch: valid JavaScript that does nothing, so
/// the customer pages that include it keep working.
pub const NOOP_SCRIPT: &str = "/* pixel disabled by edge containment */\n";

fn json(status: u16, error: &str, rule: Option<RuleId>, retry_after_s: Option<u32>) -> LocalReply {
    // Only the rule id and a fixed word: never incident text.
    let body = match rule {
        Some(id) => format!("{{\"error\":\"{error}\",\"rule\":{id}}}"),
        None => format!("{{\"error\":\"{error}\"}}"),
    };
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("cache-control", "no-store".to_string()),
    ];
    if let Some(s) = retry_after_s {
        headers.push(("retry-after", s.to_string()));
    }
    if let Some(id) = rule {
        headers.push((RULE_HEADER, id.to_string()));
    }
    LocalReply {
        status,
        headers,
        body: body.into_bytes(),
    }
}

/// The reply for a verdict, or `None` when the request is forwarded. Every reply names
/// the deciding rule in `x-edge-containment-rule`, so evidence can be attributed to it.
pub fn for_verdict(v: &Verdict, retry_after_s: u32) -> Option<LocalReply> {
    let mut r = reply_for(v, retry_after_s)?;
    if let Some(id) = v.rule {
        if !r.headers.iter().any(|(k, _)| *k == RULE_HEADER) {
            r.headers.push((RULE_HEADER, id.to_string()));
        }
    }
    Some(r)
}

/// The response header naming the rule that decided a local reply.
pub const RULE_HEADER: &str = "x-edge-containment-rule";

/// The property the filter sets to the id of the rule that decided a request (a local
/// reply, or an allow-list entry that let it pass). Envoy keeps a property a wasm filter
/// sets as filter state named `wasm.` and the property, so an access log prints it with
/// `%FILTER_STATE(wasm.edge_containment_rule:PLAIN)%`; the control plane's access-log
/// evidence reads it from the field `edge_containment_rule`.
pub const RULE_PROPERTY: &str = "edge_containment_rule";

/// The property set to the id of a `simulate` rule that would have acted on a request that
/// passed.
pub const SIMULATED_PROPERTY: &str = "edge_containment_simulated";

fn reply_for(v: &Verdict, retry_after_s: u32) -> Option<LocalReply> {
    match v.action {
        Action::Allow | Action::AllowListed => None,
        Action::Block => Some(json(403, "blocked", v.rule, None)),
        Action::Isolate => Some(json(503, "isolated", v.rule, Some(retry_after_s))),
        Action::ReadOnlyRefused => Some(json(503, "read_only", v.rule, Some(retry_after_s))),
        Action::PixelNoopScript => Some(LocalReply {
            status: 200,
            headers: vec![
                ("content-type", "application/javascript".to_string()),
                ("cache-control", "no-store".to_string()),
            ],
            body: NOOP_SCRIPT.as_bytes().to_vec(),
        }),
        Action::PixelDropBeacon => Some(LocalReply {
            status: 204,
            headers: vec![("cache-control", "no-store".to_string())],
            body: Vec::new(),
        }),
    }
}

/// The reply to a request whose path common servers read differently, under
/// `ambiguous_path: reject` (see [`crate::canon`]).
pub fn ambiguous_path() -> LocalReply {
    json(400, "ambiguous_path", None, None)
}

/// The reply under fail mode `closed` before any policy was received.
pub fn no_policy(retry_after_s: u32) -> LocalReply {
    json(503, "no_policy", None, Some(retry_after_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_its_reply() {
        for action in Action::ALL {
            let v = Verdict {
                action,
                rule: Some(7),
                simulated: None,
            };
            let r = for_verdict(&v, 30);
            let status = r.as_ref().map(|r| r.status);
            let expected = match action {
                Action::Allow | Action::AllowListed => None,
                Action::Block => Some(403),
                Action::Isolate | Action::ReadOnlyRefused => Some(503),
                Action::PixelNoopScript => Some(200),
                Action::PixelDropBeacon => Some(204),
            };
            assert_eq!(status, expected, "{action:?}");
            if let Some(r) = r {
                let has_retry = r.headers.iter().any(|(k, _)| *k == "retry-after");
                assert_eq!(has_retry, r.status == 503, "{action:?}");
            }
        }
    }

    #[test]
    fn block_body_names_rule_only() {
        let r = for_verdict(
            &Verdict {
                action: Action::Block,
                rule: Some(42),
                simulated: None,
            },
            5,
        )
        .unwrap();
        assert_eq!(r.body, br#"{"error":"blocked","rule":42}"#);
    }
}
