//! Integration tests of the control plane over HTTP on 127.0.0.1: the router in-process
//! with a test clock, and the real binary for the CLI, restarts and graceful shutdown.

mod common;

#[path = "api/bad_input.rs"]
mod bad_input;
#[path = "api/caching.rs"]
mod caching;
#[path = "api/closing.rs"]
mod closing;
#[path = "api/contain.rs"]
mod contain;
#[path = "api/contract.rs"]
mod contract;
#[path = "api/copy.rs"]
mod copy;
#[path = "api/deadlines.rs"]
mod deadlines;
#[path = "api/errors.rs"]
mod errors;
#[path = "api/evidence.rs"]
mod evidence;
#[path = "api/export.rs"]
mod export;
#[path = "api/flows.rs"]
mod flows;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/openapi.rs"]
mod openapi;
#[path = "api/record.rs"]
mod record;
#[path = "api/replicas.rs"]
mod replicas;
#[path = "api/responders.rs"]
mod responders;
#[path = "api/roles.rs"]
mod roles;
#[path = "api/sync.rs"]
mod sync;
