//! `proxy_get_property` / `proxy_set_property`: paths are NUL-separated segments.

use std::net::SocketAddr;

use crate::state::HostState;
use crate::status::{AbiResult, Status};

/// Splits a serialized property path into segments.
pub(crate) fn split_path(raw: &[u8]) -> AbiResult<Vec<String>> {
    raw.split(|b| *b == 0)
        .map(|s| String::from_utf8(s.to_vec()).map_err(|_| Status::BadArgument))
        .collect()
}

/// Looks a property up by its serialized path (NUL-separated segments, read in place from
/// guest memory) and appends its value to `out`. Values set with `proxy_set_property` win.
/// An unknown path is `NotFound`, a path that is not UTF-8 `BadArgument`. Allocates nothing
/// unless a property was set.
pub(crate) fn get(state: &HostState, raw: &[u8], out: &mut Vec<u8>) -> AbiResult {
    let path = std::str::from_utf8(raw).map_err(|_| Status::BadArgument)?;
    let set_here = state.http_ctx().is_some_and(|c| !c.properties.is_empty());
    if set_here || !state.root_properties.is_empty() {
        let joined = path.replace('\0', ".");
        let found = state
            .http_ctx()
            .and_then(|ctx| ctx.properties.get(&joined))
            .or_else(|| state.root_properties.get(&joined));
        if let Some(v) = found {
            out.extend_from_slice(v);
            return Ok(());
        }
    }
    // Built-in properties have at most three segments; a deeper path is matched on its
    // first three and the rest (no fixed-size array: depth alone never fails a lookup).
    let mut it = path.split('\0');
    let segs = [it.next(), it.next(), it.next()];
    if it.next().is_some() {
        return Err(Status::NotFound);
    }
    let n = segs.iter().take_while(|s| s.is_some()).count();
    let segs: [&str; 3] = segs.map(Option::unwrap_or_default);
    let segs = &segs[..n];
    let opts = &state.plugin.opts;
    let text = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(s.as_bytes());
        Ok(())
    };
    let int = |out: &mut Vec<u8>, v: i64| {
        out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    };
    match segs {
        ["plugin_name"] => return text(out, &opts.plugin_name),
        ["plugin_root_id"] => return text(out, &opts.root_id),
        ["plugin_vm_id"] => return text(out, &opts.vm_id),
        ["node", "id"] => return text(out, &opts.node_id),
        ["destination", "address"] => {
            let a = opts.destination_address.ok_or(Status::NotFound)?;
            return display(out, &a);
        }
        ["destination", "port"] => {
            let a = opts.destination_address.ok_or(Status::NotFound)?;
            return int(out, i64::from(a.port()));
        }
        _ => {}
    }
    let ctx = state.http_ctx().ok_or(Status::NotFound)?;
    let head = &ctx.head;
    match segs {
        ["source", "address"] => {
            address(out, head.source, opts.source_address_with_port);
            Ok(())
        }
        ["source", "port"] => int(out, i64::from(head.source.port())),
        ["request", "path"] => text(out, &head.path),
        ["request", "url_path"] => text(out, head.path.split('?').next().unwrap_or_default()),
        ["request", "query"] => {
            let (_, query) = head.path.split_once('?').ok_or(Status::NotFound)?;
            text(out, query)
        }
        ["request", "host"] => text(out, &head.authority),
        ["request", "method"] => text(out, &head.method),
        ["request", "scheme"] => text(out, &head.scheme),
        ["request", "protocol"] => text(out, head.protocol),
        ["request", "id"] => text(out, &ctx.request_id),
        ["request", "headers"] => {
            crate::map::encode_map_into(&ctx.request_headers, out);
            Ok(())
        }
        ["response", "headers"] => {
            crate::map::encode_map_into(&ctx.response_headers, out);
            Ok(())
        }
        ["request", "headers", name] => {
            let (_, v) = ctx
                .request_headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .ok_or(Status::NotFound)?;
            text(out, v)
        }
        ["response", "code"] => int(out, i64::from(ctx.response_code.ok_or(Status::NotFound)?)),
        _ => Err(Status::NotFound),
    }
}

/// Appends `addr` as its `Display` form would (`ip:port`, or the bare IP without
/// `with_port`). IPv4, the per-request case, is written by hand: `fmt` costs more than the
/// rest of the lookup.
fn address(out: &mut Vec<u8>, addr: SocketAddr, with_port: bool) {
    let SocketAddr::V4(v4) = addr else {
        let _ = if with_port {
            display(out, &addr)
        } else {
            display(out, &addr.ip())
        };
        return;
    };
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        decimal(out, u32::from(octet));
    }
    if with_port {
        out.push(b':');
        decimal(out, u32::from(v4.port()));
    }
}

fn decimal(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
        start -= 1;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// Appends `v`'s `Display` form (an address) without an intermediate `String`.
fn display(out: &mut Vec<u8>, v: &dyn std::fmt::Display) -> AbiResult {
    use std::io::Write as _;
    write!(out, "{v}").map_err(|_| Status::InternalFailure)
}

/// Stores a property for the current context (an HTTP context, else the root).
pub(crate) fn set(state: &mut HostState, path: &[String], value: Vec<u8>) -> AbiResult {
    if path.is_empty() || path.iter().all(String::is_empty) {
        return Err(Status::BadArgument);
    }
    // Kong's host answers NotFound (NGX_DECLINED) for a name it does not know; the Rust
    // SDK maps NotFound to an error and panics on most other statuses.
    if !state.plugin.opts.profile.allows_set_property(path) {
        return Err(Status::NotFound);
    }
    let joined = path.join(".");
    match state.http_ctx_mut() {
        Some(ctx) => ctx.properties.insert(joined, value),
        None => state.root_properties.insert(joined, value),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::HttpCtx;

    fn state(opts: crate::options::HostOptions) -> HostState {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let inner = crate::runtime::PluginInner::new(opts, wasmtime::Engine::default(), stop);
        let wasi = wasmtime_wasi::WasiCtxBuilder::new().build_p1();
        HostState::new(std::sync::Arc::new(inner), wasi, 7)
    }

    fn lookup(s: &HostState, path: &[u8]) -> AbiResult<Vec<u8>> {
        let mut out = Vec::new();
        get(s, path, &mut out).map(|()| out)
    }

    #[test]
    fn built_in_properties() {
        let mut s = state(crate::options::HostOptions {
            plugin_name: "p".into(),
            destination_address: Some(([10, 0, 0, 1], 8080).into()),
            ..Default::default()
        });
        assert_eq!(lookup(&s, b"plugin_name"), Ok(b"p".to_vec()));
        assert_eq!(
            lookup(&s, b"destination\0address"),
            Ok(b"10.0.0.1:8080".to_vec())
        );
        assert_eq!(
            lookup(&s, b"destination\0port"),
            Ok(8080i64.to_le_bytes().to_vec())
        );
        // Request properties need an HTTP context.
        assert_eq!(lookup(&s, b"source\0address"), Err(Status::NotFound));
        let head = crate::types::RequestHead::get("/a?b=1", "h", ([192, 0, 2, 9], 4242).into())
            .header("X-Request-Id", "rid")
            .header("X-Up", "v");
        let ctx = HttpCtx::start(&mut s, &head, 2);
        s.http.insert(2, ctx);
        s.effective_context = 2;
        assert_eq!(
            lookup(&s, b"source\0address"),
            Ok(b"192.0.2.9:4242".to_vec())
        );
        assert_eq!(
            lookup(&s, b"source\0port"),
            Ok(4242i64.to_le_bytes().to_vec())
        );
        assert_eq!(lookup(&s, b"request\0url_path"), Ok(b"/a".to_vec()));
        assert_eq!(lookup(&s, b"request\0query"), Ok(b"b=1".to_vec()));
        assert_eq!(lookup(&s, b"request\0id"), Ok(b"rid".to_vec()));
        assert_eq!(lookup(&s, b"request\0headers\0X-UP"), Ok(b"v".to_vec()));
        assert_eq!(
            lookup(&s, b"request\0headers\0x-none"),
            Err(Status::NotFound)
        );
        assert_eq!(
            lookup(&s, b"request\0headers"),
            Ok(crate::map::encode_map(&head.header_map()))
        );
        assert_eq!(lookup(&s, b"response\0code"), Err(Status::NotFound));
        assert_eq!(
            lookup(&s, b"no\0such\0property\0at_all"),
            Err(Status::NotFound)
        );
        assert_eq!(lookup(&s, b"request\0\xff"), Err(Status::BadArgument));
        // A set value wins over the built-in one.
        set(
            &mut s,
            &split_path(b"source\0address").unwrap(),
            b"x".to_vec(),
        )
        .unwrap();
        assert_eq!(lookup(&s, b"source\0address"), Ok(b"x".to_vec()));
        s.effective_context = 1;
        assert_eq!(lookup(&s, b"source\0address"), Err(Status::NotFound));
    }

    #[test]
    fn source_address_without_port() {
        let mut s = state(crate::options::HostOptions {
            source_address_with_port: false,
            ..Default::default()
        });
        let head = crate::types::RequestHead::get("/", "h", ([192, 0, 2, 9], 4242).into());
        let ctx = HttpCtx::start(&mut s, &head, 2);
        s.http.insert(2, ctx);
        s.effective_context = 2;
        assert_eq!(lookup(&s, b"source\0address"), Ok(b"192.0.2.9".to_vec()));
        assert_eq!(
            lookup(&s, b"request\0id"),
            Ok(b"00000007-00000002".to_vec())
        );
    }

    #[test]
    fn addresses_format_as_display_does() {
        let addrs: [SocketAddr; 6] = [
            ([0, 0, 0, 0], 0).into(),
            ([255, 255, 255, 255], 65535).into(),
            ([10, 20, 100, 7], 8080).into(),
            ([1, 0, 99, 200], 9).into(),
            "[2001:db8::1]:443".parse().unwrap(),
            "[fe80::1%3]:80".parse().unwrap(),
        ];
        for a in addrs {
            let mut out = Vec::new();
            address(&mut out, a, true);
            assert_eq!(out, a.to_string().into_bytes());
            out.clear();
            address(&mut out, a, false);
            assert_eq!(out, a.ip().to_string().into_bytes());
        }
    }

    #[test]
    fn splits_nul_separated_paths() {
        assert_eq!(
            split_path(b"source\0address"),
            Ok(vec!["source".to_string(), "address".to_string()])
        );
        assert_eq!(
            split_path(b"plugin_name"),
            Ok(vec!["plugin_name".to_string()])
        );
        assert_eq!(split_path(&[0xff]), Err(Status::BadArgument));
    }
}
