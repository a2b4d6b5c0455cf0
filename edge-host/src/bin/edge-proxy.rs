//! `edge-proxy`: runs requests through a proxy-wasm filter on wasmtime. See `--help`.

use std::io::IsTerminal;

use clap::Parser;
use edge_host::proxy::{run, Args};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    run(Args::parse()).await
}
