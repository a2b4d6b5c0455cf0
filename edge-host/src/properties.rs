//! `proxy_get_property` / `proxy_set_property`: paths are NUL-separated segments.

use crate::state::HostState;
use crate::status::{AbiResult, Status};

/// Splits a serialized property path into segments.
pub(crate) fn split_path(raw: &[u8]) -> AbiResult<Vec<String>> {
    raw.split(|b| *b == 0)
        .map(|s| String::from_utf8(s.to_vec()).map_err(|_| Status::BadArgument))
        .collect()
}

/// Looks a property up. Values set with `proxy_set_property` win; unknown paths are `None`
/// (the host answers `NotFound`).
pub(crate) fn get(state: &HostState, path: &[String]) -> Option<Vec<u8>> {
    let set_here = state.http_ctx().is_some_and(|c| !c.properties.is_empty());
    if set_here || !state.root_properties.is_empty() {
        let joined = path.join(".");
        if let Some(ctx) = state.http_ctx() {
            if let Some(v) = ctx.properties.get(&joined) {
                return Some(v.clone());
            }
        }
        if let Some(v) = state.root_properties.get(&joined) {
            return Some(v.clone());
        }
    }
    let opts = &state.plugin.opts;
    let segs: Vec<&str> = path.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["plugin_name"] => return Some(opts.plugin_name.clone().into_bytes()),
        ["plugin_root_id"] => return Some(opts.root_id.clone().into_bytes()),
        ["plugin_vm_id"] => return Some(opts.vm_id.clone().into_bytes()),
        ["node", "id"] => return Some(opts.node_id.clone().into_bytes()),
        ["destination", "address"] => {
            return opts.destination_address.map(|a| a.to_string().into_bytes())
        }
        ["destination", "port"] => {
            return opts
                .destination_address
                .map(|a| i64::from(a.port()).to_le_bytes().to_vec())
        }
        _ => {}
    }
    let ctx = state.http_ctx()?;
    let head = &ctx.head;
    let url_path = head.path.split('?').next().unwrap_or_default();
    let value = match segs.as_slice() {
        ["source", "address"] => {
            if opts.source_address_with_port {
                head.source.to_string()
            } else {
                head.source.ip().to_string()
            }
        }
        ["source", "port"] => return Some(i64::from(head.source.port()).to_le_bytes().to_vec()),
        ["request", "path"] => head.path.clone(),
        ["request", "url_path"] => url_path.to_string(),
        ["request", "query"] => head.path.split_once('?').map(|x| x.1)?.to_string(),
        ["request", "host"] => head.authority.clone(),
        ["request", "method"] => head.method.clone(),
        ["request", "scheme"] => head.scheme.clone(),
        ["request", "protocol"] => "HTTP/1.1".to_string(),
        ["request", "id"] => ctx.request_id.clone(),
        ["request", "headers"] => return Some(crate::map::encode_map(&ctx.request_headers)),
        ["response", "headers"] => return Some(crate::map::encode_map(&ctx.response_headers)),
        ["request", "headers", name] => {
            let name = name.to_ascii_lowercase();
            ctx.request_headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())?
        }
        ["response", "code"] => {
            return ctx
                .response_code
                .map(|c| i64::from(c).to_le_bytes().to_vec())
        }
        _ => return None,
    };
    Some(value.into_bytes())
}

/// Stores a property for the current context (an HTTP context, else the root).
pub(crate) fn set(state: &mut HostState, path: &[String], value: Vec<u8>) -> AbiResult {
    if path.is_empty() || path.iter().all(String::is_empty) {
        return Err(Status::BadArgument);
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
