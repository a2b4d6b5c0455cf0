//! Wire format properties: round trips, and no panic on any input.

use edge_policy::matcher::{Pieces, SlicePieces, Update};
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

/// `bytes` with some bytes overwritten, then cut short at `cut` when given.
fn damaged(
    mut bytes: Vec<u8>,
    flips: Vec<(prop::sample::Index, u8)>,
    cut: Option<prop::sample::Index>,
) -> Vec<u8> {
    for (i, b) in flips {
        let i = i.index(bytes.len());
        bytes[i] = b;
    }
    if let Some(cut) = cut {
        bytes.truncate(cut.index(bytes.len() + 1));
    }
    bytes
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
        let bytes = damaged(wire::encode(&m), flips, truncate.then_some(cut));
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
        let bytes = damaged(wire::encode(&m), flips, None);
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

/// Reads `bytes` in pieces of `len`, failing at piece `fail_at` when set.
struct Flaky<'a> {
    inner: SlicePieces<'a>,
    fail_at: Option<usize>,
}

impl Pieces for Flaky<'_> {
    fn piece(&mut self, i: usize, out: &mut Vec<u8>) -> Result<bool, String> {
        if Some(i) == self.fail_at {
            return Err(format!("part {i} is gone"));
        }
        self.inner.piece(i, out)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Reading a message in pieces of any size decodes to the same policy (or the same
    /// error) as reading it whole.
    #[test]
    fn piecewise_decode_agrees_with_whole(
        m in arb_message(),
        len in 1usize..40,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let bytes = damaged(wire::encode(&m), flips, truncate.then_some(cut));
        let whole = Matcher::decode_update(&bytes);
        let pieces = Matcher::decode_pieces(&mut SlicePieces { bytes: &bytes, len });
        match (pieces, whole) {
            (Ok(Update::Snapshot(a)), Ok(Update::Snapshot(b))) => {
                prop_assert_eq!(a.version(), b.version());
                prop_assert_eq!(a.to_snapshot(), b.to_snapshot());
            }
            (Ok(Update::Delta(a)), Ok(Update::Delta(b))) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(std::mem::discriminant(&a), std::mem::discriminant(&b)),
            (a, b) => prop_assert!(false, "pieces {:?} vs whole {:?}", a.map(|_| ()), b.map(|_| ())),
        }
    }

    /// A matcher's snapshot written in pieces is the wire encoding of its rules (in storage
    /// order), and decodes back to the same policy.
    #[test]
    fn piecewise_encode_is_the_wire_encoding(
        version in any::<u64>(),
        rules in prop::collection::vec(arb_rule(0..u64::MAX), 0..40),
        len in 1usize..64,
    ) {
        let m = Matcher::new(&Snapshot { version, rules });
        let mut joined = Vec::new();
        let mut sizes = Vec::new();
        m.encode_snapshot_pieces(len, &mut |p: &[u8]| -> Result<(), ()> {
            sizes.push(p.len());
            joined.extend_from_slice(p);
            Ok(())
        }).unwrap();
        // Every piece but the last is at least `len` bytes.
        prop_assert!(sizes.iter().rev().skip(1).all(|&n| n >= len), "{:?}", sizes);
        let mut in_order = Vec::new();
        m.for_each_rule(&mut |r| in_order.push(r));
        prop_assert_eq!(&joined, &wire::encode_snapshot(&Snapshot { version, rules: in_order }));
        match Matcher::decode_pieces(&mut SlicePieces { bytes: &joined, len }) {
            Ok(Update::Snapshot(back)) => prop_assert_eq!(back.to_snapshot(), m.to_snapshot()),
            other => prop_assert!(false, "{:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn piecewise_decode_reports_a_failing_source_and_trailing_bytes() {
    use edge_policy::WireError;
    use edge_policy::{Rule, RuleKind, Target};
    let rules = (1..=50)
        .map(|id| Rule {
            id,
            incident: None,
            mode: edge_policy::Mode::Enforce,
            expires_at_ms: None,
            kind: RuleKind::Block(Target::Host(format!("host-{id}.example"))),
        })
        .collect();
    let bytes = wire::encode_snapshot(&Snapshot { version: 4, rules });
    for fail_at in [0, 1, 5] {
        let got = Matcher::decode_pieces(&mut Flaky {
            inner: SlicePieces {
                bytes: &bytes,
                len: 16,
            },
            fail_at: Some(fail_at),
        });
        match got {
            Err(WireError::Body(e)) => {
                assert!(e.contains(&format!("part {fail_at} is gone")), "{e}")
            }
            Err(WireError::TooShort(0)) if fail_at == 0 => {}
            other => panic!("fail at {fail_at}: {:?}", other.map(|_| ())),
        }
    }
    // The source failing after the last rule is still an error: the message may go on.
    let pieces = bytes.len().div_ceil(16);
    assert!(Matcher::decode_pieces(&mut Flaky {
        inner: SlicePieces {
            bytes: &bytes,
            len: 16
        },
        fail_at: Some(pieces),
    })
    .is_err());
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 40]);
    assert!(matches!(
        Matcher::decode_pieces(&mut SlicePieces {
            bytes: &longer,
            len: 16
        }),
        Err(WireError::TrailingBytes(40))
    ));
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

/// Found by the wire_decode fuzz target: postcard reads an over-long varint (`ff 00`, 127
/// with a redundant continuation byte) as the number, so one message has more than one
/// spelling. The decoded message is the same, and a seal signs the exact bytes, so a second
/// spelling of a signed answer does not verify.
#[test]
fn an_overlong_varint_decodes_to_the_same_message_but_not_under_the_same_seal() {
    // A delta from 3 to 4 removing rule 127.
    let overlong = hex::decode("4543014403040001ff00").expect("hex");
    let short = hex::decode("45430144030400017f").expect("hex");
    let (a, b) = (wire::decode(&short), wire::decode(&overlong));
    assert!(a.is_ok(), "{a:?}");
    assert_eq!(a, b);
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let mut sealed = edge_policy::seal::seal(&short, 1, &[&key]).expect("sealed");
    let start = sealed.len() - short.len();
    sealed.truncate(start);
    sealed.extend_from_slice(&overlong);
    let trusted = edge_policy::seal::TrustedKeys::new(&[key.verifying_key()]);
    assert!(edge_policy::seal::open(&mut &sealed[..], &trusted, None, 0, 0, 64).is_err());
}
