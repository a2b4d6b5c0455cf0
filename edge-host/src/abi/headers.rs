//! Header map host calls.

use wasmtime::{Caller, Linker};

use crate::map::{decode_map, encode_map_into, encoded_map_size};
use crate::memory::{read_str, return_built, slice, write_u32};
use crate::state::HostState;
use crate::status::{code, AbiResult, Status};

type C<'a> = Caller<'a, HostState>;

fn read_key(c: &mut C<'_>, ptr: u32, len: u32) -> AbiResult<String> {
    Ok(read_str(c, ptr, len)?.to_ascii_lowercase())
}

/// Appends the value of header `key` in map `t` to `out`: every value of the key, in order,
/// joined with `,` (as Envoy does for a repeated header). Keys match case-insensitively.
fn get_value(state: &HostState, t: u32, key: &[u8], out: &mut Vec<u8>) -> AbiResult {
    let key = std::str::from_utf8(key).map_err(|_| Status::BadArgument)?;
    let map = state.map(t).ok_or(Status::BadArgument)?;
    let mut found = false;
    for (_, v) in map.iter().filter(|(k, _)| k.eq_ignore_ascii_case(key)) {
        if found {
            out.push(b',');
        }
        out.extend_from_slice(v.as_bytes());
        found = true;
    }
    if found {
        Ok(())
    } else {
        Err(Status::NotFound)
    }
}

fn modify(
    c: &mut C<'_>,
    t: u32,
    kp: u32,
    kl: u32,
    value: Option<(u32, u32)>,
    f: fn(&mut Vec<(String, String)>, String, String),
) -> AbiResult {
    let key = read_key(c, kp, kl)?;
    let value = match value {
        Some((vp, vl)) => read_str(c, vp, vl)?,
        None => String::new(),
    };
    let map = c.data_mut().map_mut(t).ok_or(Status::BadArgument)?;
    f(map, key, value);
    Ok(())
}

fn add(map: &mut Vec<(String, String)>, k: String, v: String) {
    map.push((k, v));
}

fn replace(map: &mut Vec<(String, String)>, k: String, v: String) {
    match map.iter().position(|(x, _)| *x == k) {
        Some(pos) => {
            map[pos].1 = v;
            let mut i = 0;
            map.retain(|(x, _)| {
                i += 1;
                i - 1 == pos || *x != k
            });
        }
        None => map.push((k, v)),
    }
}

fn remove(map: &mut Vec<(String, String)>, k: String, _v: String) {
    map.retain(|(x, _)| *x != k);
}

pub(super) fn link(l: &mut Linker<HostState>) -> anyhow::Result<()> {
    l.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, t: u32, rp: u32, rs: u32| -> wasmtime::Result<u32> {
            return_built(&mut c, rp, rs, |_, state, out| {
                encode_map_into(state.map(t).ok_or(Status::BadArgument)?, out);
                Ok(())
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, t: u32, p: u32, len: u32| -> u32 {
            code((|| {
                let bytes = crate::memory::read(&mut c, p, len)?;
                let pairs = decode_map(&bytes)?;
                let map = c.data_mut().map_mut(t).ok_or(Status::BadArgument)?;
                *map = pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect();
                Ok(())
            })())
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kl: u32, rp: u32, rs: u32| -> wasmtime::Result<u32> {
            return_built(&mut c, rp, rs, |mem, state, out| {
                get_value(state, t, slice(mem, kp, kl)?, out)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kl: u32, vp: u32, vl: u32| -> u32 {
            code(modify(&mut c, t, kp, kl, Some((vp, vl)), add))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kl: u32, vp: u32, vl: u32| -> u32 {
            code(modify(&mut c, t, kp, kl, Some((vp, vl)), replace))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kl: u32| -> u32 {
            code(modify(&mut c, t, kp, kl, None, remove))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: C<'_>, t: u32, rs: u32| -> u32 {
            code((|| {
                let map = c.data().map(t).ok_or(Status::BadArgument)?;
                let size = u32::try_from(encoded_map_size(map)).unwrap_or(u32::MAX);
                write_u32(&mut c, rs, size)
            })())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn replace_keeps_one_value_in_place() {
        let mut m = pairs(&[("a", "1"), ("b", "2"), ("a", "3")]);
        replace(&mut m, "a".into(), "x".into());
        assert_eq!(m, pairs(&[("a", "x"), ("b", "2")]));
        replace(&mut m, "c".into(), "y".into());
        assert_eq!(m, pairs(&[("a", "x"), ("b", "2"), ("c", "y")]));
        remove(&mut m, "a".into(), String::new());
        assert_eq!(m, pairs(&[("b", "2"), ("c", "y")]));
    }
}
