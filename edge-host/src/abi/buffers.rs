//! Buffer host calls: plugin / VM configuration, request / response bodies, HTTP call
//! response body.

use wasmtime::{Caller, Linker};

use crate::memory::{read, return_built, splice, window, write_u32};
use crate::state::HostState;
use crate::status::{code, AbiResult, Status};

type C<'a> = Caller<'a, HostState>;

const REQUEST_BODY: u32 = 0;
const RESPONSE_BODY: u32 = 1;
const HTTP_CALL_RESPONSE_BODY: u32 = 4;
const VM_CONFIGURATION: u32 = 6;
const PLUGIN_CONFIGURATION: u32 = 7;

fn buffer(s: &HostState, t: u32) -> AbiResult<&[u8]> {
    match t {
        REQUEST_BODY => s.http_ctx().map(|c| c.request_body.as_slice()),
        RESPONSE_BODY => s.http_ctx().map(|c| c.response_body.as_slice()),
        HTTP_CALL_RESPONSE_BODY => s.call_response.as_ref().map(|r| r.body.as_slice()),
        VM_CONFIGURATION => Some(s.plugin.opts.vm_config.as_slice()),
        PLUGIN_CONFIGURATION => Some(s.plugin.opts.plugin_config.as_slice()),
        2 | 3 | 5 | 8 => None,
        _ => return Err(Status::BadArgument),
    }
    .ok_or(Status::NotFound)
}

fn buffer_mut(s: &mut HostState, t: u32) -> AbiResult<&mut Vec<u8>> {
    match t {
        REQUEST_BODY => s.http_ctx_mut().map(|c| &mut c.request_body),
        RESPONSE_BODY => s.http_ctx_mut().map(|c| &mut c.response_body),
        HTTP_CALL_RESPONSE_BODY => s.call_response.as_mut().map(|r| &mut r.body),
        _ => return Err(Status::BadArgument),
    }
    .ok_or(Status::NotFound)
}

pub(super) fn link(l: &mut Linker<HostState>) -> anyhow::Result<()> {
    l.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, t: u32, start: u32, max: u32, rp: u32, rs: u32| -> wasmtime::Result<u32> {
            // An absent or empty buffer (or a window past its end) reads as NotFound, which
            // the SDK maps to `None`.
            return_built(&mut c, rp, rs, |_, state, out| {
                let data = window(buffer(state, t)?, start, max);
                if data.is_empty() {
                    return Err(Status::NotFound);
                }
                out.extend_from_slice(data);
                Ok(())
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, t: u32, start: u32, size: u32, p: u32, len: u32| -> u32 {
            code((|| {
                let value = read(&mut c, p, len)?;
                splice(buffer_mut(c.data_mut(), t)?, start, size, &value);
                Ok(())
            })())
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: C<'_>, t: u32, len_ptr: u32, flags_ptr: u32| -> u32 {
            code((|| {
                let len = buffer(c.data(), t)?.len();
                write_u32(&mut c, len_ptr, u32::try_from(len).unwrap_or(u32::MAX))?;
                write_u32(&mut c, flags_ptr, 0)
            })())
        },
    )?;
    Ok(())
}
