//! The policy wire decoder, whole and piece-wise: never a panic, and the three decoders
//! (`wire::decode`, `Matcher::decode_update`, `Matcher::decode_pieces` with pieces of a
//! size taken from the input) agree on what is valid and on what it holds.
#![no_main]

use edge_policy::matcher::{SlicePieces, Update};
use edge_policy::{wire, Matcher};
use libfuzzer_sys::fuzz_target;

fn summary(u: &Update) -> (char, u64, usize) {
    match u {
        Update::Snapshot(m) => ('S', m.version(), m.len()),
        Update::Delta(d) => ('D', d.version, d.upserts.len() + d.removed.len()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&len, msg)) = data.split_first() else {
        return;
    };
    let plain = wire::decode(msg);
    let whole = Matcher::decode_update(msg);
    let pieces = Matcher::decode_pieces(&mut SlicePieces {
        bytes: msg,
        len: 1 + len as usize,
    });
    assert_eq!(plain.is_ok(), whole.is_ok(), "{plain:?} / {whole:?}");
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(summary(a), summary(b)),
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?} but pieces {pieces:?}"),
    }
    if let Ok(m) = plain {
        // Valid input re-encodes to a message that decodes the same. (Not always to the
        // same bytes: postcard accepts over-long varints, `ff 00` for 127. Harmless: a
        // seal signs the exact bytes, so no second spelling verifies; see wire_props.rs.)
        let again = wire::encode(&m);
        assert_eq!(wire::decode(&again).as_ref(), Ok(&m));
        // The head read without decoding agrees.
        let head = wire::decode_head(msg).expect("a valid message has a head");
        match (head, &m) {
            (wire::Head::Snapshot { version }, wire::Message::Snapshot(s)) => {
                assert_eq!(version, s.version)
            }
            (wire::Head::Delta { since, version }, wire::Message::Delta(d)) => {
                assert_eq!((since, version), (d.since, d.version))
            }
            _ => panic!("head {head:?} for {m:?}"),
        }
    }
});
