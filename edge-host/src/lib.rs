//! A proxy-wasm ABI 0.2.1 host on wasmtime, and the pieces of `edge-proxy`.
//!
//! - [`Plugin`]: a compiled filter plus the state its VMs share (shared data, queues,
//!   metrics, logs).
//! - [`Vm`]: one instance (one Envoy worker), driven synchronously.
//! - [`Worker`]: a `Vm` on its own thread with timers and real HTTP calls, used from async
//!   code through a [`WorkerHandle`]; re-creates the VM after a trap.
//! - [`proxy`]: the reverse proxy behind the `edge-proxy` binary.

mod abi;
mod cluster;
mod httpcall;
mod map;
mod memory;
mod options;
mod plugin;
mod properties;
mod runtime;
mod shared;
mod state;
mod status;
mod types;
mod vm;
mod worker;

pub mod proxy;

pub use map::{decode_map, encode_map};
pub use options::{
    FailMode, HostOptions, HostProfile, LogLevel, DEFAULT_CALLBACK_DEADLINE,
    DEFAULT_HEALTH_CHECK_INTERVAL,
};
pub use plugin::{prometheus_name, Plugin};
pub use shared::{LogLine, MetricKind, MetricSnapshot};
pub use status::Status;
pub use types::{
    DataOutcome, Direction, FilterOutcome, GuestTrap, HeaderList, HttpCallResponse, HttpContextId,
    PendingHttpCall, RequestHead, ResponseHead, ResponseOutcome,
};
pub use vm::Vm;
pub use worker::{Outcome, Worker, WorkerHandle};

#[cfg(test)]
mod profile_tests;

#[cfg(test)]
mod tests {
    fn assert_send<T: Send>() {}
    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn thread_bounds() {
        assert_send::<crate::Vm>();
        assert_send_sync_clone::<crate::Plugin>();
        assert_send_sync_clone::<crate::WorkerHandle>();
    }
}
