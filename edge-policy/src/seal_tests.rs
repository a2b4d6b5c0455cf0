use super::*;
use crate::model::{Mode, Rule, RuleKind, Target};
use crate::wire::{encode_delta, encode_snapshot, Delta, Snapshot};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn snapshot(version: Version) -> Vec<u8> {
    let rules = (1..=20)
        .map(|id| Rule {
            id,
            incident: Some(1),
            mode: Mode::Enforce,
            expires_at_ms: None,
            kind: RuleKind::Block(Target::Ip(format!("10.0.{id}.0/24").parse().unwrap())),
        })
        .collect();
    encode_snapshot(&Snapshot { version, rules })
}

fn trusted(keys: &[&SigningKey]) -> TrustedKeys {
    let pubs: Vec<VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
    TrustedKeys::new(&pubs)
}

fn open_all(bytes: &[u8], t: &TrustedKeys, held: Option<Version>) -> Result<Seal, SealError> {
    open(&mut &bytes[..], t, held, 1_000_000, 0, 7)
}

#[test]
fn a_sealed_snapshot_opens_and_points_at_its_message() {
    let msg = snapshot(5);
    let k = key(1);
    let sealed = seal(&msg, 1234, &[&k]).unwrap();
    let s = open_all(&sealed, &trusted(&[&k]), None).unwrap();
    assert_eq!(
        (s.kind, s.version, s.since, s.issued_at_ms),
        (b'S', 5, 0, 1234)
    );
    assert_eq!(s.key, KeyId::of(&k.verifying_key()));
    assert_eq!(&sealed[s.message_start..], &msg[..]);
    // The window hands the decoder exactly the message, piece by piece.
    let mut src = &sealed[..];
    let mut w = s.message(&mut src, 3);
    let (mut joined, mut piece, mut i) = (Vec::new(), Vec::new(), 0);
    while w.piece(i, &mut piece).unwrap() {
        joined.extend_from_slice(&piece);
        i += 1;
    }
    assert_eq!(joined, msg);
}

#[test]
fn a_delta_seal_carries_both_versions() {
    let d = encode_delta(&Delta {
        since: 3,
        version: 9,
        upserts: vec![],
        removed: vec![4],
    });
    let k = key(2);
    let s = open_all(&seal(&d, 1, &[&k]).unwrap(), &trusted(&[&k]), Some(3)).unwrap();
    assert_eq!((s.kind, s.since, s.version), (b'D', 3, 9));
    assert!(s
        .check_message(crate::wire::Head::Delta {
            since: 3,
            version: 9
        })
        .is_ok());
    assert!(matches!(
        s.check_message(crate::wire::Head::Delta {
            since: 2,
            version: 9
        }),
        Err(SealError::Mismatch { what: "since", .. })
    ));
}

#[test]
fn every_kind_of_bad_answer_is_refused_with_its_reason() {
    let msg = snapshot(7);
    let k = key(1);
    let other = key(9);
    let t = trusted(&[&k]);
    let good = seal(&msg, 10, &[&k]).unwrap();

    assert_eq!(open_all(&msg, &t, None), Err(SealError::Unsigned));
    assert!(matches!(
        open_all(&seal(&msg, 10, &[&other]).unwrap(), &t, None),
        Err(SealError::UnknownKey(..))
    ));
    // A signature made by another key but labelled with the trusted key's id.
    let mut relabelled = seal(&msg, 10, &[&other]).unwrap();
    relabelled[69..77].copy_from_slice(&KeyId::of(&k.verifying_key()).0);
    assert!(matches!(
        open_all(&relabelled, &t, None),
        Err(SealError::BadSignature(_))
    ));
    // Every signed header byte matters (kind, time, versions, length, digest).
    for at in 3..SIGNED_LEN {
        let mut b = good.clone();
        b[at] ^= 0x01;
        let r = open_all(&b, &t, None);
        assert!(
            matches!(
                r,
                Err(SealError::BadSignature(_)) | Err(SealError::Malformed(_))
            ),
            "byte {at}: {r:?}"
        );
    }
    // Every signature byte matters.
    for at in 77..141 {
        let mut b = good.clone();
        b[at] ^= 0x80;
        assert!(open_all(&b, &t, None).is_err(), "signature byte {at}");
    }
    // The message: altered anywhere, cut anywhere, extended.
    for at in 141..good.len() {
        let mut b = good.clone();
        b[at] ^= 0x01;
        assert_eq!(open_all(&b, &t, None), Err(SealError::Altered), "byte {at}");
    }
    for cut in 0..good.len() {
        assert!(open_all(&good[..cut], &t, None).is_err(), "cut at {cut}");
    }
    assert!(matches!(
        open_all(&good[..good.len() - 1], &t, None),
        Err(SealError::Truncated { .. })
    ));
    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(
        open_all(&longer, &t, None),
        Err(SealError::TrailingBytes(1))
    );
    // Older than held: replayed. The same version is no news, not a replay.
    assert!(matches!(
        open_all(&good, &t, Some(8)),
        Err(SealError::Replayed { got: 7, held: 8 })
    ));
    assert!(open_all(&good, &t, Some(7)).is_ok());
    assert!(open_all(&good, &t, None).is_ok());
}

#[test]
fn the_age_check_uses_the_edge_clock_when_asked() {
    let k = key(1);
    let sealed = seal(&snapshot(1), 100_000, &[&k]).unwrap();
    let t = trusted(&[&k]);
    let at = |now, max| open(&mut &sealed[..], &t, None, now, max, 1 << 20);
    assert!(at(100_000 + 60_000, 60).is_ok());
    assert!(matches!(
        at(100_000 + 61_000, 60),
        Err(SealError::TooOld { .. })
    ));
    assert!(at(u64::MAX, 0).is_ok(), "0 turns the check off");
    assert!(
        at(0, 60).is_ok(),
        "a clock behind the control plane's is no replay"
    );
}

#[test]
fn during_a_rotation_either_key_opens_the_answer() {
    let (old, new) = (key(1), key(2));
    let both = seal(&snapshot(3), 1, &[&old, &new]).unwrap();
    for t in [trusted(&[&old]), trusted(&[&new]), trusted(&[&new, &old])] {
        assert!(open_all(&both, &t, None).is_ok());
    }
    // A forged first signature by a trusted key does not hide behind a good second one.
    let mut b = both.clone();
    b[80] ^= 1;
    assert!(open_all(&b, &trusted(&[&new]), None).is_ok());
    assert!(matches!(
        open_all(&b, &trusted(&[&old]), None),
        Err(SealError::BadSignature(_))
    ));
}

#[test]
fn public_keys_round_trip_as_text_and_bad_ones_are_named() {
    let k = key(4).verifying_key();
    let text = public_key_text(&k);
    assert!(text.starts_with("ed25519:"));
    assert_eq!(parse_public_key(&text).unwrap(), k);
    assert!(TrustedKeys::parse(&[text.as_str(), "ed25519:AAAA"])
        .unwrap_err()
        .starts_with("[1]: must be 32 bytes"));
    assert!(parse_public_key("rsa:xyz").is_err());
    assert!(parse_public_key("ed25519:!!!").is_err());
    // The identity point is a small-order key: refused.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = format!(
        "ed25519:{}",
        base64::engine::general_purpose::STANDARD.encode(identity)
    );
    assert!(parse_public_key(&weak).unwrap_err().contains("weak"));
}

#[test]
fn nothing_but_policy_messages_is_sealed() {
    let k = key(1);
    assert!(seal(b"hello", 1, &[&k]).is_none());
    assert!(seal(&snapshot(1), 1, &[]).is_none());
}
