//! The proxy-wasm map encoding: `u32` count, then a `(u32 key size, u32 value size)` pair per
//! entry, then every key and value each followed by a NUL byte. All integers little endian.

use crate::status::Status;

/// Encodes header pairs into the proxy-wasm map format.
pub fn encode_map<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_map_into(pairs, &mut out);
    out
}

/// Appends the encoding of `pairs` to `out`.
pub(crate) fn encode_map_into<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)], out: &mut Vec<u8>) {
    let payload: usize = pairs
        .iter()
        .map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 2)
        .sum();
    out.reserve(4 + pairs.len() * 8 + payload);
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&len_u32(k.as_ref().len()).to_le_bytes());
        out.extend_from_slice(&len_u32(v.as_ref().len()).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
}

/// Size in bytes of the encoding of `pairs`, without building it.
pub fn encoded_map_size(pairs: &[(String, String)]) -> usize {
    4 + pairs
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len() + 2)
        .sum::<usize>()
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Decodes a guest-provided map. An empty buffer is an empty map. Malformed input (sizes
/// running past the end, missing NUL terminators, invalid UTF-8) is a `SerializationFailure`
/// or `ParseFailure`, never a panic.
pub fn decode_map(bytes: &[u8]) -> Result<Vec<(String, String)>, Status> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let count = read_u32(bytes, 0)? as usize;
    let header_end = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(4))
        .filter(|&n| n <= bytes.len())
        .ok_or(Status::SerializationFailure)?;
    let mut pos = header_end;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let ks = read_u32(bytes, 4 + i * 8)? as usize;
        let vs = read_u32(bytes, 8 + i * 8)? as usize;
        let key = take_nul_terminated(bytes, &mut pos, ks)?;
        let value = take_nul_terminated(bytes, &mut pos, vs)?;
        out.push((key, value));
    }
    Ok(out)
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, Status> {
    let b = bytes
        .get(at..at.checked_add(4).ok_or(Status::SerializationFailure)?)
        .ok_or(Status::SerializationFailure)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    Ok(u32::from_le_bytes(a))
}

fn take_nul_terminated(bytes: &[u8], pos: &mut usize, len: usize) -> Result<String, Status> {
    let end = pos.checked_add(len).ok_or(Status::SerializationFailure)?;
    let s = bytes.get(*pos..end).ok_or(Status::SerializationFailure)?;
    if bytes.get(end) != Some(&0) {
        return Err(Status::SerializationFailure);
    }
    *pos = end + 1;
    String::from_utf8(s.to_vec()).map_err(|_| Status::ParseFailure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const FIXTURE: &[u8] = &[
        2, 0, 0, 0,
        7, 0, 0, 0, 3, 0, 0, 0,
        1, 0, 0, 0, 0, 0, 0, 0,
        b':', b'm', b'e', b't', b'h', b'o', b'd', 0, b'G', b'E', b'T', 0,
        b'x', 0, 0,
    ];

    #[test]
    fn encodes_the_byte_fixture() {
        let pairs = vec![
            (":method".to_string(), "GET".to_string()),
            ("x".into(), "".into()),
        ];
        assert_eq!(encode_map(&pairs), FIXTURE);
        assert_eq!(encoded_map_size(&pairs), FIXTURE.len());
    }

    #[test]
    fn decodes_the_byte_fixture() {
        let pairs = decode_map(FIXTURE).expect("valid fixture");
        assert_eq!(
            pairs,
            vec![(":method".into(), "GET".into()), ("x".into(), "".into())]
        );
    }

    #[test]
    fn empty_buffer_and_zero_count_are_empty_maps() {
        assert_eq!(decode_map(&[]), Ok(vec![]));
        assert_eq!(decode_map(&[0, 0, 0, 0]), Ok(vec![]));
        assert_eq!(encode_map::<&str, &str>(&[]), vec![0, 0, 0, 0]);
    }

    #[test]
    fn malformed_maps_are_errors_not_panics() {
        // count larger than the buffer
        assert_eq!(decode_map(&[9, 0, 0, 0]), Err(Status::SerializationFailure));
        // truncated count
        assert_eq!(decode_map(&[1, 0]), Err(Status::SerializationFailure));
        // missing NUL terminator
        let mut bad = FIXTURE.to_vec();
        bad[19] = b'!';
        assert_eq!(decode_map(&bad), Err(Status::SerializationFailure));
        // size field pointing past the end
        let mut bad = FIXTURE.to_vec();
        bad[4] = 200;
        assert_eq!(decode_map(&bad), Err(Status::SerializationFailure));
        // count that overflows when multiplied
        assert_eq!(
            decode_map(&[255, 255, 255, 255]),
            Err(Status::SerializationFailure)
        );
        // invalid UTF-8
        let bad = encode_map(&[(vec![0xffu8], b"v".to_vec())]);
        assert_eq!(decode_map(&bad), Err(Status::ParseFailure));
    }

    #[test]
    fn round_trips_arbitrary_pairs() {
        let pairs: Vec<(String, String)> =
            (0..50).map(|i| (format!("k{i}"), "v".repeat(i))).collect();
        assert_eq!(decode_map(&encode_map(&pairs)), Ok(pairs));
    }
}
