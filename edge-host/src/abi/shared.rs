//! Shared data, shared queues and metrics host calls.

use wasmtime::{Caller, Linker};

use crate::memory::{check, read, read_str, return_bytes, write_u32, write_u64};
use crate::shared::MetricKind;
use crate::state::HostState;
use crate::status::{code, Status};

type C<'a> = Caller<'a, HostState>;

pub(super) fn link(l: &mut Linker<HostState>) -> anyhow::Result<()> {
    l.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C<'_>, kp: u32, kl: u32, rp: u32, rs: u32, rc: u32| -> wasmtime::Result<u32> {
            let key = match read_str(&mut c, kp, kl).and_then(|k| check(&mut c, rc, 4).map(|()| k))
            {
                Ok(k) => k,
                Err(s) => return Ok(s.code()),
            };
            let Some((value, cas)) = c.data().plugin.shared.get(&key) else {
                return Ok(Status::NotFound.code());
            };
            if let Err(s) = return_bytes(&mut c, &value, rp, rs)? {
                return Ok(s.code());
            }
            Ok(code(write_u32(&mut c, rc, cas)))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: u32, kl: u32, vp: u32, vl: u32, cas: u32| -> u32 {
            code((|| {
                let key = read_str(&mut c, kp, kl)?;
                let value = read(&mut c, vp, vl)?;
                let p = &c.data().plugin;
                p.shared.set(&key, &value, cas, p.opts.strict_cas)
            })())
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: u32, nl: u32, ret: u32| -> u32 {
            code((|| {
                let name = read_str(&mut c, np, nl)?;
                check(&mut c, ret, 4)?;
                let s = c.data();
                let id =
                    s.plugin
                        .queues
                        .register(&s.plugin.opts.vm_id, &name, s.vm, s.root_context);
                write_u32(&mut c, ret, id)
            })())
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: u32, vl: u32, np: u32, nl: u32, ret: u32| -> u32 {
            code((|| {
                let vm_id = read_str(&mut c, vp, vl)?;
                let name = read_str(&mut c, np, nl)?;
                let id = c
                    .data()
                    .plugin
                    .queues
                    .resolve(&vm_id, &name)
                    .ok_or(Status::NotFound)?;
                write_u32(&mut c, ret, id)
            })())
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, id: u32, vp: u32, vl: u32| -> u32 {
            code((|| {
                let value = read(&mut c, vp, vl)?;
                c.data().plugin.queues.enqueue(id, &value)
            })())
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, id: u32, rp: u32, rs: u32| -> wasmtime::Result<u32> {
            if let Err(s) = check(&mut c, rp, 4).and_then(|()| check(&mut c, rs, 4)) {
                return Ok(s.code());
            }
            match c.data().plugin.queues.dequeue(id) {
                Ok(v) => Ok(code(return_bytes(&mut c, &v, rp, rs)?)),
                Err(s) => Ok(s.code()),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C<'_>, kind: u32, np: u32, nl: u32, ret: u32| -> u32 {
            code((|| {
                let kind = MetricKind::from_u32(kind).ok_or(Status::BadArgument)?;
                let name = read_str(&mut c, np, nl)?;
                check(&mut c, ret, 4)?;
                let id = c.data().plugin.metrics.define(kind, &name)?;
                write_u32(&mut c, ret, id)
            })())
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_increment_metric",
        |c: C<'_>, id: u32, offset: i64| -> u32 {
            code(c.data().plugin.metrics.increment(id, offset))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_record_metric",
        |c: C<'_>, id: u32, value: u64| -> u32 { code(c.data().plugin.metrics.record(id, value)) },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C<'_>, id: u32, ret: u32| -> u32 {
            code((|| {
                check(&mut c, ret, 8)?;
                let v = c.data().plugin.metrics.get(id)?;
                write_u64(&mut c, ret, v)
            })())
        },
    )?;
    Ok(())
}
