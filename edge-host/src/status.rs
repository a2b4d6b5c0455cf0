//! Status codes of the proxy-wasm ABI 0.2.1 (`WasmResult` in the spec).

/// Result code returned by every host call.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

impl Status {
    /// The raw code handed to the guest.
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// Result of a host-call body: `Err` carries the status to return.
pub(crate) type AbiResult<T = ()> = Result<T, Status>;

/// Collapses an [`AbiResult`] into the code handed to the guest.
pub(crate) fn code(r: AbiResult) -> u32 {
    match r {
        Ok(()) => Status::Ok.code(),
        Err(s) => s.code(),
    }
}
