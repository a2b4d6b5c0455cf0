//! Harness pieces of the end-to-end tests that are not shared beyond them: a recording
//! upstream, a stand-in policy server, the demo upstream. Finding the built binaries and the
//! filter, child processes and temporary directories come from `edge-testkit`.

pub mod demo;
pub mod policy_server;
pub mod serve;
pub mod upstream;
