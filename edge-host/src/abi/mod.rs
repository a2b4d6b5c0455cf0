//! Host functions of the proxy-wasm ABI 0.2.1, registered on one `Linker<HostState>`.

mod buffers;
mod calls;
mod headers;
mod misc;
mod shared;

use wasmtime::Linker;

use crate::state::HostState;

/// Registers every `env` host function and the WASI preview1 calls.
pub(crate) fn link(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, |s: &mut HostState| &mut s.wasi)?;
    linker.allow_shadowing(true);
    misc::link(linker)?;
    linker.allow_shadowing(false);
    headers::link(linker)?;
    buffers::link(linker)?;
    calls::link(linker)?;
    shared::link(linker)?;
    Ok(())
}
