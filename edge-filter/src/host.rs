//! Small wrappers over the host calls. The SDK's trait helpers unwrap host statuses; these
//! turn any unexpected status into `None` or an error the caller handles.

use std::ops::Range;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};

pub fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

pub fn info(msg: &str) {
    log(LogLevel::Info, msg);
}

pub fn warn(msg: &str) {
    log(LogLevel::Warn, msg);
}

pub fn error(msg: &str) {
    log(LogLevel::Error, msg);
}

/// Unix time in milliseconds (0 if the host cannot tell, which makes no rule expire early).
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[allow(clashing_extern_declarations)]
extern "C" {
    // The SDK declares this import with its own enum types; same wasm signature.
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    // Called directly: the SDK's `set_property` panics on any status but Ok, and Kong's
    // host answers NotFound for a name outside its namespaces (the filter would abort).
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
}

/// `proxy_set_property` with NUL-separated `path` segments; true when the host took it.
fn set_property(path: &[&str], value: &[u8]) -> bool {
    let serialized = path.join("\0");
    // SAFETY: both buffers are alive and unchanged for the duration of the call; the host
    // only reads them.
    let status = unsafe {
        proxy_set_property(
            serialized.as_ptr(),
            serialized.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    status == 0
}

/// The request headers the filter asks for, fetched with one host call and read in place
/// (no per-header allocation). Names are compared ASCII-case-insensitively; repeated
/// headers are joined with `,` as `get_header_map_value` joins them.
pub struct RequestHeaders {
    buf: Vec<u8>,
    /// Where each (name, value) pair with a wanted name sits in `buf`, found in one pass by
    /// [`RequestHeaders::fetch`] (each lookup would otherwise walk the whole map again).
    pairs: Vec<(Range<usize>, Range<usize>)>,
}

impl RequestHeaders {
    /// One `proxy_get_header_map_pairs` call, keeping the headers named in `wanted` (`None`
    /// entries are skipped); an error or a malformed map reads as empty.
    pub fn fetch(wanted: &[Option<&str>]) -> RequestHeaders {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer to a buffer it allocated through this module's
        // `proxy_on_memory_allocate` (a `Vec<u8>` of capacity `size` that was forgotten), as
        // the SDK's own `get_map` assumes; ownership comes back to us here.
        let buf = unsafe {
            let status = proxy_get_header_map_pairs(
                MapType::HttpRequestHeaders as u32,
                &mut data,
                &mut size,
            );
            take_host_buffer(status, data, size).unwrap_or_default()
        };
        let pairs = parse_pairs(&buf, |name| {
            wanted
                .iter()
                .flatten()
                .any(|w| w.as_bytes().eq_ignore_ascii_case(name))
        });
        RequestHeaders { buf, pairs }
    }

    /// Every kept (name, value) pair as bytes. UTF-8 is only checked for the values a
    /// caller asks for.
    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.pairs
            .iter()
            .filter_map(|(k, v)| Some((self.buf.get(k.clone())?, self.buf.get(v.clone())?)))
    }

    /// Each value of the headers called `name`, in order; a value that is not UTF-8 is
    /// skipped, as the host's `get_header_map_value` would not return it either.
    fn values<'s: 'n, 'n>(&'s self, name: &'n str) -> impl Iterator<Item = &'s str> + 'n {
        let name = name.as_bytes();
        self.pairs()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The value of `name` (several values joined with `,`).
    pub fn get(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        let mut found: Option<std::borrow::Cow<'_, str>> = None;
        for v in self.values(name) {
            found = Some(match found {
                None => std::borrow::Cow::Borrowed(v),
                Some(prev) => std::borrow::Cow::Owned(format!("{prev},{v}")),
            });
        }
        found
    }

    /// Every value of `name`, each repeated header on its own and each comma-separated
    /// element of a value on its own (RFC 9110 field combination), trimmed, non-empty.
    pub fn get_all(&self, name: &str) -> Vec<std::borrow::Cow<'_, str>> {
        self.values(name)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(std::borrow::Cow::Borrowed)
            .collect()
    }
}

/// The pairs of a serialized header map (a count, then the length of each name and value,
/// then each name and value followed by a NUL) whose name `keep` accepts, up to the first
/// malformed entry; never panics.
fn parse_pairs(b: &[u8], keep: impl Fn(&[u8]) -> bool) -> Vec<(Range<usize>, Range<usize>)> {
    let u32_at = |i: usize| -> Option<usize> {
        let a: [u8; 4] = b.get(i..i.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_le_bytes(a) as usize)
    };
    let n = u32_at(0).unwrap_or(0);
    let mut data = 4usize.saturating_add(n.saturating_mul(8));
    let mut out = Vec::with_capacity(8);
    for i in 0..n {
        let entry = || -> Option<(Range<usize>, Range<usize>, usize)> {
            let kl = u32_at(4 + i * 8)?;
            let vl = u32_at(8 + i * 8)?;
            let k = data..data.checked_add(kl)?;
            let vs = k.end.checked_add(1)?;
            let v = vs..vs.checked_add(vl)?;
            let next = v.end.checked_add(1)?;
            (next <= b.len()).then_some((k, v, next))
        };
        let Some((k, v, next)) = entry() else { break };
        if b.get(k.clone()).is_some_and(&keep) {
            out.push((k, v));
        }
        data = next;
    }
    out
}

pub fn call_response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpCallResponseHeaders, name)
        .ok()
        .flatten()
}

/// Set a property to a rule id, for the proxy's access log: `name` (Envoy keeps it as
/// filter state `wasm.<name>`), or `wasmx.<name>` where a host allows new properties only in
/// its own namespace (Kong's ngx_wasm_module). A host that refuses both changes nothing
/// about the verdict.
pub fn set_rule_property(name: &str, rule: u64) {
    let value = rule.to_string();
    if !set_property(&[name], value.as_bytes()) {
        set_property(&["wasmx", name], value.as_bytes());
    }
}

pub fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

/// A property by its already serialized path (segments separated by NUL), as bytes: one
/// host call and the host's buffer taken over, for the request path.
pub fn property_bytes(serialized_path: &[u8]) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the path buffer is alive for the call and only read; the host writes a
    // pointer to a buffer it allocated through `proxy_on_memory_allocate` (as for
    // `proxy_get_header_map_pairs` above), whose ownership comes back to us here.
    unsafe {
        let status = proxy_get_property(
            serialized_path.as_ptr(),
            serialized_path.len(),
            &mut data,
            &mut size,
        );
        take_host_buffer(status, data, size)
    }
}

/// The buffer a host call returned, owned again: `None` when the call failed or returned
/// no buffer.
///
/// # Safety
/// `data` and `size` must be what the host wrote for a call that returns a buffer it
/// allocated through this module's `proxy_on_memory_allocate` (a forgotten `Vec<u8>` of
/// capacity `size`, as the SDK's own helpers assume), not taken before.
unsafe fn take_host_buffer(status: u32, data: *mut u8, size: usize) -> Option<Vec<u8>> {
    // SAFETY: as the caller promises.
    (status == 0 && !data.is_null()).then(|| unsafe { Vec::from_raw_parts(data, size, size) })
}

/// A random number from the VM's hasher seeds (WASI `random_get`) and the clock.
pub fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(now_ms())
}
