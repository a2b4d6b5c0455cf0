//! The edge containment proxy-wasm filter.
//!
//! Glue only: it reads the plugin configuration, syncs the policy from the control plane,
//! shares it between worker VMs, asks the host for the few facts a decision needs, and applies
//! the verdict that `edge_policy` computes. See docs/ARCHITECTURE.md for the data flow and
//! the sharing protocol.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod host;
mod http;
mod metrics;
mod root;
mod shared;
mod state;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // With panic = "abort" a panic ends the VM for every request of this worker: make sure
    // the reason reaches the proxy's log at the highest level.
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(LogLevel::Critical, &format!("edge-filter panic: {info}"));
    }));
    proxy_wasm::set_root_context(|context_id| Box::new(root::Root::new(context_id)));
}}
