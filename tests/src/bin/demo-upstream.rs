//! The demo upstream as a process: `demo-upstream --listen 127.0.0.1:9000`.

use std::sync::Arc;

use clap::Parser;

/// A demo web app behind the edge: a page, an API route and a tracking pixel.
#[derive(Parser)]
struct Args {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the address is printed).
    #[arg(long, env = "DEMO_LISTEN", default_value = "127.0.0.1:9000")]
    listen: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!(
        "demo-upstream listening on http://{}",
        listener.local_addr()?
    );
    let app = edge_e2e::demo::router(Arc::new(edge_e2e::demo::DemoCounts::default()));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
