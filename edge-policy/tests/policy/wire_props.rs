//! Wire format properties: round trips, and no panic on any input.

use edge_policy::matcher::Update;
use edge_policy::wire::{self, Message};
use edge_policy::{Delta, Matcher, Snapshot};
use proptest::prelude::*;

use crate::props::arb_rule;

fn arb_message() -> impl Strategy<Value = Message> {
    let rules = || prop::collection::vec(arb_rule(0..u64::MAX), 0..20);
    prop_oneof![
        (any::<u64>(), rules())
            .prop_map(|(version, rules)| Message::Snapshot(Snapshot { version, rules })),
        (
            0..u64::MAX,
            1..u64::MAX,
            rules(),
            prop::collection::vec(any::<u64>(), 0..20)
        )
            .prop_map(|(since, gap, upserts, removed)| Message::Delta(Delta {
                since,
                version: since.saturating_add(gap),
                upserts,
                removed,
            })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity(m in arb_message()) {
        prop_assert_eq!(wire::decode(&wire::encode(&m)), Ok(m));
    }

    #[test]
    fn random_bytes_never_panic(
        header in prop::sample::select(vec![&b""[..], b"EC\x01S", b"EC\x01D", b"EC\x02S", b"XX\x01S", b"EC\x01Q"]),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = header.to_vec();
        bytes.extend(body);
        let _ = wire::decode(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(
        m in arb_message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = wire::encode(&m);
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        match wire::decode(&bytes) {
            Ok(Message::Delta(d)) => prop_assert!(d.since < d.version),
            Ok(Message::Snapshot(_)) | Err(_) => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The streaming decoder accepts exactly what `wire::decode` accepts and compiles the same
    /// policy.
    #[test]
    fn streaming_decode_agrees_with_decode(
        m in arb_message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let mut bytes = wire::encode(&m);
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        match (Matcher::decode_update(&bytes), wire::decode(&bytes)) {
            (Ok(Update::Snapshot(got)), Ok(Message::Snapshot(s))) => {
                prop_assert_eq!(got.to_snapshot(), Matcher::new(&s).to_snapshot());
            }
            (Ok(Update::Delta(got)), Ok(Message::Delta(d))) => prop_assert_eq!(got, d),
            (Err(a), Err(b)) => prop_assert_eq!(std::mem::discriminant(&a), std::mem::discriminant(&b)),
            (a, b) => prop_assert!(false, "streaming {:?} vs decode {:?}", a.map(|_| ()), b),
        }
    }
}

#[test]
fn header_errors_are_typed() {
    use edge_policy::WireError;
    assert_eq!(wire::decode(b"EC\x01"), Err(WireError::TooShort(3)));
    assert_eq!(wire::decode(b"ZZ\x01S"), Err(WireError::BadMagic));
    assert_eq!(
        wire::decode(b"EC\x09S"),
        Err(WireError::UnsupportedVersion(9))
    );
    assert_eq!(wire::decode(b"EC\x01X"), Err(WireError::UnknownKind(b'X')));
    let d = Delta {
        since: 5,
        version: 5,
        ..Delta::default()
    };
    assert_eq!(
        wire::decode(&wire::encode_delta(&d)),
        Err(WireError::DeltaBackwards {
            since: 5,
            version: 5
        })
    );
    let mut ok = wire::encode_snapshot(&Snapshot::default());
    assert_eq!(
        wire::decode(&ok),
        Ok(Message::Snapshot(Snapshot::default()))
    );
    ok.push(0);
    assert_eq!(wire::decode(&ok), Err(WireError::TrailingBytes(1)));
    assert!(matches!(
        wire::decode(b"EC\x01S\xff"),
        Err(WireError::Body(_))
    ));
}

/// The examples in WIRE.md, byte for byte.
#[test]
fn wire_md_examples() {
    use edge_policy::{IpNet, Mode, Rule, RuleKind, Target};
    let net: IpNet = "192.0.2.0/24".parse().expect("net");
    let s = Snapshot {
        version: 3,
        rules: vec![Rule {
            id: 1,
            incident: Some(7),
            mode: Mode::Enforce,
            expires_at_ms: None,
            kind: RuleKind::Block(Target::Ip(net)),
        }],
    };
    assert_eq!(
        hex::encode(wire::encode_snapshot(&s)),
        "45430153".to_owned() + "0301" + "0101070000" + "000000" + "c000020018"
    );
    let d = Delta {
        since: 3,
        version: 4,
        upserts: vec![],
        removed: vec![1],
    };
    assert_eq!(hex::encode(wire::encode_delta(&d)), "454301440304000101");
}

#[test]
fn report_json_matches_wire_md() {
    use edge_policy::report::{EdgeReport, RuleHits};
    let json = r#"{"edge_id":"envoy-ams-1","boot_id":"4f1c9a","seq":12,"policy_version":42,
 "hits":[{"rule_id":1017,"count":3},{"rule_id":1020,"count":118}]}"#;
    let r: EdgeReport = serde_json::from_str(json).expect("parses");
    assert_eq!(
        r.hits[1],
        RuleHits {
            rule_id: 1020,
            count: 118
        }
    );
    let no_hits: EdgeReport =
        serde_json::from_str(r#"{"edge_id":"e","boot_id":"b","seq":1,"policy_version":0}"#)
            .expect("parses");
    assert!(no_hits.hits.is_empty());
    assert!(serde_json::from_str::<EdgeReport>(
        r#"{"edge_id":"e","boot_id":"b","seq":1,"policy_version":0,"x":1}"#
    )
    .is_err());
}
