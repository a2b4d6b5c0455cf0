//! Bounds-checked access to guest memory. A bad pointer becomes
//! `Status::InvalidMemoryAccess`, never a host panic.

use wasmtime::Caller;

use crate::state::HostState;
use crate::status::{code, AbiResult, Status};

/// Largest scratch buffer kept between host calls (a bigger one, e.g. a large body copied
/// into the guest, is freed after use).
const MAX_SCRATCH: usize = 64 * 1024;

fn range(ptr: u32, len: u32) -> AbiResult<std::ops::Range<usize>> {
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .ok_or(Status::InvalidMemoryAccess)?;
    Ok(start..end)
}

/// The `len` bytes at `ptr` of guest memory `data`, borrowed (an empty slice when `len` is
/// 0, wherever `ptr` points, as [`read`]).
pub(crate) fn slice(data: &[u8], ptr: u32, len: u32) -> AbiResult<&[u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    data.get(range(ptr, len)?)
        .ok_or(Status::InvalidMemoryAccess)
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
    let Some(mem) = caller.data().memory else {
        return Ok(Err(Status::InternalFailure));
    };
    let addressable = |m: &[u8], ptr| range(ptr, 4).is_ok_and(|r| m.get(r).is_some());
    let m = mem.data(&*caller);
    if !addressable(m, ret_ptr) || !addressable(m, ret_size) {
        return Ok(Err(Status::InvalidMemoryAccess));
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
    // One borrow of guest memory (it may have grown in the allocator) for the three writes.
    let m = mem.data_mut(&mut *caller);
    let mut put = |at: u32, bytes: &[u8]| -> AbiResult {
        let len = u32::try_from(bytes.len()).map_err(|_| Status::InvalidMemoryAccess)?;
        m.get_mut(range(at, len)?)
            .ok_or(Status::InvalidMemoryAccess)?
            .copy_from_slice(bytes);
        Ok(())
    };
    Ok(put(ptr, data)
        .and_then(|()| put(ret_ptr, &ptr.to_le_bytes()))
        .and_then(|()| put(ret_size, &size.to_le_bytes())))
}

/// Like [`return_bytes`] for bytes built on the spot: `fill` gets guest memory (to read
/// arguments in place), the host state, and an empty buffer to write the result into (the
/// VM's reusable scratch buffer, so nothing is allocated per call). An error from `fill` is
/// returned as the call's status. The outer `Err` is a trap raised by the guest's allocator.
pub(crate) fn return_built(
    caller: &mut Caller<'_, HostState>,
    ret_ptr: u32,
    ret_size: u32,
    fill: impl FnOnce(&[u8], &HostState, &mut Vec<u8>) -> AbiResult,
) -> wasmtime::Result<u32> {
    let Some(mem) = caller.data().memory else {
        return Ok(Status::InternalFailure.code());
    };
    let (data, state) = mem.data_and_store_mut(&mut *caller);
    let mut out = std::mem::take(&mut state.scratch);
    out.clear();
    let status = match fill(data, state, &mut out) {
        Ok(()) => code(return_bytes(caller, &out, ret_ptr, ret_size)?),
        Err(s) => s.code(),
    };
    if out.capacity() <= MAX_SCRATCH {
        caller.data_mut().scratch = out;
    }
    Ok(status)
}

/// The `[start, start + max)` window of `data`, clamped to its length.
pub(crate) fn window(data: &[u8], start: u32, max: u32) -> &[u8] {
    let start = (start as usize).min(data.len());
    let end = start.saturating_add(max as usize).min(data.len());
    &data[start..end]
}

/// Replaces `[start, start + size)` of `buf` (clamped) with `value`.
pub(crate) fn splice(buf: &mut Vec<u8>, start: u32, size: u32, value: &[u8]) {
    let start = (start as usize).min(buf.len());
    let end = start.saturating_add(size as usize).min(buf.len());
    buf.splice(start..end, value.iter().copied());
}

#[cfg(test)]
mod tests {
    use super::{splice, window};

    #[test]
    fn window_clamps() {
        assert_eq!(window(b"hello", 1, 3), b"ell");
        assert_eq!(window(b"hello", 3, 100), b"lo");
        assert_eq!(window(b"hello", 9, 1), b"");
        assert_eq!(window(b"hello", u32::MAX, u32::MAX), b"");
    }

    #[test]
    fn splice_replaces_prepends_and_appends() {
        let mut b = b"hello".to_vec();
        splice(&mut b, 0, 5, b"bye");
        assert_eq!(b, b"bye");
        splice(&mut b, 0, 0, b">");
        assert_eq!(b, b">bye");
        splice(&mut b, 100, 0, b"!");
        assert_eq!(b, b">bye!");
    }
}
