//! Shared harness for the end-to-end tests: locating the built binaries and the filter,
//! starting processes on 127.0.0.1 with ports chosen at run time, a recording upstream and a
//! stand-in policy server.

pub mod demo;
pub mod policy_server;
pub mod procs;
pub mod serve;
pub mod upstream;

use std::path::PathBuf;

/// The workspace's target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
}

/// The compiled filter. Built once by the README's test command; never rebuilt per test.
pub fn filter_wasm() -> PathBuf {
    let p = std::env::var("EDGE_FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            target_dir()
                .join("wasm32-wasip1")
                .join("wasm-release")
                .join("edge_filter.wasm")
        });
    assert!(
        p.exists(),
        "{} is missing: build it first with \
         `cargo build --profile wasm-release --target wasm32-wasip1 -p edge-filter`",
        p.display()
    );
    p
}

/// A binary of this workspace, from the same profile directory as the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/e2e-<hash>
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("profile dir")
        .to_path_buf();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: `cargo test --workspace` builds it (or `cargo build --workspace --bins`)",
        p.display()
    );
    p
}
