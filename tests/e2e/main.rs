//! End-to-end tests: the real `edge_filter.wasm` in the real `edge-proxy`, on 127.0.0.1 with
//! ports chosen at run time.

mod cluster;
mod common;
mod cp;
mod deploy;
mod evasion;
mod evasion_props;
mod filter;
mod intake;
mod profiles;
mod quickstart;
mod replicas;
mod sharing;
mod signed;
mod system;
mod visibility;
