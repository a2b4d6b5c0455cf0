//! Bounds-checked access to guest memory. A bad pointer becomes
//! `Status::InvalidMemoryAccess`, never a host panic.

use wasmtime::Caller;

use crate::state::HostState;
use crate::status::{AbiResult, Status};

fn range(ptr: u32, len: u32) -> AbiResult<std::ops::Range<usize>> {
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .ok_or(Status::InvalidMemoryAccess)?;
    Ok(start..end)
}

/// Copies `len` bytes at `ptr` out of guest memory.
pub(crate) fn read(caller: &mut Caller<'_, HostState>, ptr: u32, len: u32) -> AbiResult<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let mem = caller.data().memory.ok_or(Status::InternalFailure)?;
    mem.data(&*caller)
        .get(range(ptr, len)?)
        .map(<[u8]>::to_vec)
        .ok_or(Status::InvalidMemoryAccess)
}

/// Reads a UTF-8 string; invalid UTF-8 is `BadArgument`.
pub(crate) fn read_str(
    caller: &mut Caller<'_, HostState>,
    ptr: u32,
    len: u32,
) -> AbiResult<String> {
    String::from_utf8(read(caller, ptr, len)?).map_err(|_| Status::BadArgument)
}

/// Writes `bytes` at `ptr`.
pub(crate) fn write(caller: &mut Caller<'_, HostState>, ptr: u32, bytes: &[u8]) -> AbiResult {
    let mem = caller.data().memory.ok_or(Status::InternalFailure)?;
    let len = u32::try_from(bytes.len()).map_err(|_| Status::InvalidMemoryAccess)?;
    mem.data_mut(&mut *caller)
        .get_mut(range(ptr, len)?)
        .ok_or(Status::InvalidMemoryAccess)?
        .copy_from_slice(bytes);
    Ok(())
}

pub(crate) fn write_u32(caller: &mut Caller<'_, HostState>, ptr: u32, v: u32) -> AbiResult {
    write(caller, ptr, &v.to_le_bytes())
}

pub(crate) fn write_u64(caller: &mut Caller<'_, HostState>, ptr: u32, v: u64) -> AbiResult {
    write(caller, ptr, &v.to_le_bytes())
}

/// Checks that `len` bytes at `ptr` are addressable (for return pointers, before doing work
/// with side effects).
pub(crate) fn check(caller: &mut Caller<'_, HostState>, ptr: u32, len: u32) -> AbiResult {
    let mem = caller.data().memory.ok_or(Status::InternalFailure)?;
    if mem.data(&*caller).get(range(ptr, len)?).is_some() {
        Ok(())
    } else {
        Err(Status::InvalidMemoryAccess)
    }
}

/// Hands `data` to the guest: allocates a buffer through the guest's exported allocator,
/// copies the data in, and stores the pointer and size at `ret_ptr` / `ret_size`. The outer `Err` is a trap raised by the
/// guest's allocator and must be propagated.
pub(crate) fn return_bytes(
    caller: &mut Caller<'_, HostState>,
    data: &[u8],
    ret_ptr: u32,
    ret_size: u32,
) -> wasmtime::Result<AbiResult> {
    if let Err(s) = check(caller, ret_ptr, 4).and_then(|()| check(caller, ret_size, 4)) {
        return Ok(Err(s));
    }
    let Ok(size) = u32::try_from(data.len()) else {
        return Ok(Err(Status::InvalidMemoryAccess));
    };
    let Some(alloc) = caller.data().alloc.clone() else {
        return Ok(Err(Status::InternalFailure));
    };
    // Allocate even for empty data, as Envoy does: the SDK reads a null pointer as "no
    // value" but a non-null one of size 0 as an empty value.
    let ptr = alloc.call(&mut *caller, size)?;
    if ptr == 0 && size != 0 {
        return Ok(Err(Status::InternalFailure));
    }
    if let Err(s) = write(caller, ptr, data) {
        return Ok(Err(s));
    }
    Ok(write_u32(caller, ret_ptr, ptr).and_then(|()| write_u32(caller, ret_size, size)))
}
