//! Stream control, local responses, effective context and HTTP calls.

use std::time::Duration;

use wasmtime::{Caller, Linker};

use crate::httpcall::resolve_upstream;
use crate::map::decode_map;
use crate::memory::{check, read, read_str, write_u32};
use crate::state::{HostState, LocalReply};
use crate::status::{code, AbiResult, Status};
use crate::types::PendingHttpCall;

type C<'a> = Caller<'a, HostState>;

/// Default for a call dispatched with timeout 0.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

fn stream_flag(c: &mut C<'_>, stream: u32, reset: bool) -> AbiResult {
    let Some(ctx) = c.data_mut().http_ctx_mut() else {
        // Downstream / upstream streams or a root context: nothing to resume.
        return Ok(());
    };
    match (stream, reset) {
        (0, false) => ctx.request_resumed = true,
        (1, false) => ctx.response_resumed = true,
        (0 | 1, true) => ctx.reset = true,
        _ => {}
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn http_call(
    c: &mut C<'_>,
    up: (u32, u32),
    hdr: (u32, u32),
    body: (u32, u32),
    trl: (u32, u32),
    timeout_ms: u32,
    ret_token: u32,
) -> AbiResult {
    let upstream = read_str(c, up.0, up.1)?;
    let headers = decode_map(&read(c, hdr.0, hdr.1)?)?;
    let body = read(c, body.0, body.1)?;
    let trailers = decode_map(&read(c, trl.0, trl.1)?)?;
    check(c, ret_token, 4)?;
    for required in [":method", ":path", ":authority"] {
        if !headers.iter().any(|(k, _)| k == required) {
            return Err(Status::BadArgument);
        }
    }
    let s = c.data_mut();
    let base_url = resolve_upstream(&s.plugin, &upstream).ok_or(Status::BadArgument)?;
    let token = s.next_token;
    s.next_token = s.next_token.wrapping_add(1).max(1);
    let timeout = match timeout_ms {
        0 => DEFAULT_CALL_TIMEOUT,
        ms => Duration::from_millis(u64::from(ms)),
    };
    s.call_owner.insert(token, s.effective_context);
    s.pending_calls.push(PendingHttpCall {
        token,
        upstream,
        base_url,
        headers,
        body,
        trailers,
        timeout,
    });
    write_u32(c, ret_token, token)
}

pub(super) fn link(l: &mut Linker<HostState>) -> anyhow::Result<()> {
    l.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C<'_>,
         status: u32,
         dp: u32,
         dl: u32,
         bp: u32,
         bl: u32,
         hp: u32,
         hl: u32,
         _grpc_status: i32|
         -> u32 {
            code((|| {
                let _details = read(&mut c, dp, dl)?;
                let body = read(&mut c, bp, bl)?;
                let headers = decode_map(&read(&mut c, hp, hl)?)?;
                let status = u16::try_from(status)
                    .ok()
                    .filter(|s| (100..=999).contains(s))
                    .ok_or(Status::BadArgument)?;
                let ctx = c.data_mut().http_ctx_mut().ok_or(Status::BadArgument)?;
                let mut headers: Vec<(String, String)> = headers
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect();
                // Envoy's local replies: a non-empty body without a content-type is text/plain.
                if !body.is_empty() && !headers.iter().any(|(k, _)| k == "content-type") {
                    headers.push(("content-type".into(), "text/plain".into()));
                }
                ctx.local_reply = Some(LocalReply {
                    status,
                    headers,
                    body,
                });
                Ok(())
            })())
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C<'_>,
         upp: u32,
         upl: u32,
         hp: u32,
         hl: u32,
         bp: u32,
         bl: u32,
         tp: u32,
         tl: u32,
         timeout: u32,
         ret: u32|
         -> wasmtime::Result<u32> {
            let s = c.data();
            let profile = s.plugin.opts.profile;
            if !profile.allows_dispatch_in(s.callback) {
                // What Kong's ngx_wasm_module does: a trap, not an error status, so the
                // filter's error path never runs.
                return Err(wasmtime::Error::msg(format!(
                    "host trap (bad usage): the {profile} host refuses proxy_http_call in {}",
                    s.callback
                )));
            }
            Ok(code(http_call(
                &mut c,
                (upp, upl),
                (hp, hl),
                (bp, bl),
                (tp, tl),
                timeout,
                ret,
            )))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C<'_>, id: u32| -> u32 {
            let s = c.data_mut();
            if id == s.root_context || s.http.contains_key(&id) {
                s.effective_context = id;
                Status::Ok.code()
            } else {
                Status::BadArgument.code()
            }
        },
    )?;
    l.func_wrap("env", "proxy_continue_stream", |mut c: C<'_>, t: u32| {
        code(stream_flag(&mut c, t, false))
    })?;
    l.func_wrap("env", "proxy_close_stream", |mut c: C<'_>, t: u32| {
        code(stream_flag(&mut c, t, true))
    })?;
    l.func_wrap("env", "proxy_continue_request", |mut c: C<'_>| {
        code(stream_flag(&mut c, 0, false))
    })?;
    l.func_wrap("env", "proxy_continue_response", |mut c: C<'_>| {
        code(stream_flag(&mut c, 1, false))
    })?;
    Ok(())
}
