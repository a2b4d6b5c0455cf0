//! Logging, time, ticks, properties, stubs (gRPC, foreign functions) and the WASI `fd_write`
//! override that turns guest stdout/stderr into log lines.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use crate::memory::{
    check, read, read_str, return_built, return_bytes, slice, write_u32, write_u64,
};
use crate::options::LogLevel;
use crate::properties;
use crate::state::HostState;
use crate::status::{code, Status};

type C<'a> = Caller<'a, HostState>;

/// WASI errno values used here.
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;

/// Longest partial line kept from WASI stdout / stderr before it is flushed as is.
const MAX_PARTIAL_LINE: usize = 16 * 1024;

fn log(c: &C<'_>, level: LogLevel, message: String) {
    let p = &c.data().plugin;
    p.logs.push(&p.opts.plugin_name, level, message);
}

fn fd_write(c: &mut C<'_>, fd: i32, iovs: u32, iovs_len: u32, nwritten: u32) -> i32 {
    let slot = match fd {
        1 => 0,
        2 => 1,
        _ => return ERRNO_BADF,
    };
    let Ok(table) = read(c, iovs, iovs_len.saturating_mul(8)) else {
        return ERRNO_FAULT;
    };
    let mut data = Vec::new();
    for iov in table.chunks_exact(8) {
        let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        match read(c, ptr, len) {
            Ok(bytes) => data.extend_from_slice(&bytes),
            Err(_) => return ERRNO_FAULT,
        }
    }
    let Ok(n) = u32::try_from(data.len()) else {
        return ERRNO_FAULT;
    };
    if write_u32(c, nwritten, n).is_err() {
        return ERRNO_FAULT;
    }
    let level = if slot == 0 {
        LogLevel::Info
    } else {
        LogLevel::Error
    };
    let mut buf = std::mem::take(&mut c.data_mut().stdio[slot]);
    buf.extend_from_slice(&data);
    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buf.drain(..=pos).collect();
        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        log(c, level, text);
    }
    if buf.len() > MAX_PARTIAL_LINE {
        let text = String::from_utf8_lossy(&buf).into_owned();
        buf.clear();
        log(c, level, text);
    }
    c.data_mut().stdio[slot] = buf;
    ERRNO_SUCCESS
}

pub(super) fn link(l: &mut Linker<HostState>) -> anyhow::Result<()> {
    l.func_wrap(
        "wasi_snapshot_preview1",
        "fd_write",
        |mut c: C<'_>, fd: i32, iovs: u32, iovs_len: u32, nwritten: u32| -> i32 {
            fd_write(&mut c, fd, iovs, iovs_len, nwritten)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_log",
        |mut c: C<'_>, level: u32, p: u32, len: u32| -> u32 {
            code((|| {
                let level = LogLevel::from_u32(level).ok_or(Status::BadArgument)?;
                let bytes = read(&mut c, p, len)?;
                log(&c, level, String::from_utf8_lossy(&bytes).into_owned());
                Ok(())
            })())
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: C<'_>, ret: u32| -> u32 {
            let level = c.data().plugin.opts.log_level as u32;
            code(write_u32(&mut c, ret, level))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ret: u32| -> u32 {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            code(write_u64(&mut c, ret, now))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, ms: u32| -> u32 {
            let s = c.data_mut();
            if ms == 0 {
                s.tick_period = None;
                s.next_tick = None;
            } else {
                let period = Duration::from_millis(u64::from(ms));
                s.tick_period = Some(period);
                s.next_tick = Some(Instant::now() + period);
            }
            Status::Ok.code()
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C<'_>, p: u32, len: u32, rp: u32, rs: u32| -> wasmtime::Result<u32> {
            return_built(&mut c, rp, rs, |mem, state, out| {
                properties::get(state, slice(mem, p, len)?, out)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C<'_>, p: u32, len: u32, vp: u32, vl: u32| -> u32 {
            code((|| {
                let path = properties::split_path(&read(&mut c, p, len)?)?;
                let value = read(&mut c, vp, vl)?;
                properties::set(c.data_mut(), &path, value)
            })())
        },
    )?;
    l.func_wrap("env", "proxy_done", |_c: C<'_>| Status::Ok.code())?;
    l.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: C<'_>, np: u32, nl: u32, _ap: u32, _al: u32, _rp: u32, _rs: u32| -> u32 {
            match read_str(&mut c, np, nl) {
                Ok(_) => Status::NotFound.code(),
                Err(s) => s.code(),
            }
        },
    )?;
    // gRPC is not implemented. Each call answers a status the Rust SDK (proxy-wasm 0.2)
    // maps to an `Err` (anything else makes it panic): dispatch / open -> InternalFailure,
    // send / cancel / close -> NotFound (no stream or call can exist).
    l.func_wrap(
        "env",
        "proxy_grpc_call",
        |_c: C<'_>,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32|
         -> u32 { Status::InternalFailure.code() },
    )?;
    l.func_wrap(
        "env",
        "proxy_grpc_stream",
        |_c: C<'_>, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32| {
            Status::InternalFailure.code()
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_grpc_send",
        |_c: C<'_>, _: u32, _: u32, _: u32, _: u32| Status::NotFound.code(),
    )?;
    l.func_wrap("env", "proxy_grpc_cancel", |_c: C<'_>, _: u32| {
        Status::NotFound.code()
    })?;
    l.func_wrap("env", "proxy_grpc_close", |_c: C<'_>, _: u32| {
        Status::NotFound.code()
    })?;
    // The status of the last gRPC call: none was ever made, so code 0 and an empty message
    // (the SDK panics on anything but Ok).
    l.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: C<'_>, code_ptr: u32, rp: u32, rs: u32| -> wasmtime::Result<u32> {
            if let Err(s) = check(&mut c, code_ptr, 4) {
                return Ok(s.code());
            }
            if let Err(s) = return_bytes(&mut c, &[], rp, rs)? {
                return Ok(s.code());
            }
            Ok(code(write_u32(&mut c, code_ptr, 0)))
        },
    )?;
    Ok(())
}
