//! Test-only proxy-wasm filter (real SDK, `proxy-wasm` 0.2.5) that calls every host call the
//! SDK offers and records whether each answer was right. `GET /checks` answers a local
//! response whose JSON body lists every check (`name`, `ok`, `detail`).
//!
//! Plugin configuration: a flat JSON object of strings.
//! - `mode`: `conformance` (default), `noop` (only `Continue` on request headers, for
//!   benchmarks), `fail-configure` (`on_configure` returns false), `envoy` (see
//!   `envoy.rs`: bodies, trailers, local replies, a pausing callout, as SDK filters do).
//! - `expect_plugin_name`, `expect_root_id`, `expect_vm_config`: values the host should hand
//!   out.
//! - `upstream`: cluster for the HTTP call made from the first tick of the root context.
//!
//! Request paths in `conformance` mode: `/checks`, `/trap` (panics), `/loop` (spins forever),
//! `/callout?upstream=NAME`, `/shared/get?key=K`, `/shared/set?key=K&value=V`; any other
//! path runs the HTTP-context checks, edits headers and continues.

mod checks;
mod envoy;
mod http;
mod root;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::Root::default()) });
}}
