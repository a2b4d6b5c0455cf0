//! `control-plane copy`: every record from one database into a new, empty one (the rows
//! are moved by [`crate::store::sql::copy`]).

use clap::Args;

use crate::store::sql::SqlStore;
use crate::store::AuditStore;

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The database to copy from (`sqlite://…` or `postgres://…`); not changed.
    #[arg(long)]
    pub from: String,
    /// The database to copy into: migrated, and refused unless empty.
    #[arg(long)]
    pub to: String,
}

pub async fn run(c: &CopyArgs) -> anyhow::Result<()> {
    let connect = |url: String, what: &'static str| async move {
        SqlStore::connect(&url)
            .await
            .map_err(|e| anyhow::anyhow!("--{what}: {e}"))
    };
    let from = connect(c.from.clone(), "from").await?;
    let to = connect(c.to.clone(), "to").await?;
    let report = crate::store::sql::copy::copy_all(&from, &to)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let chain = to
        .verify_audit()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(b) = chain.first_broken {
        anyhow::bail!("copied, but the audit chain does not verify on the target at {b:?}");
    }
    for (table, n) in &report {
        println!("{table}: {n}");
    }
    println!(
        "audit chain verified: {} events, last hash {}",
        chain.checked, chain.last_hash
    );
    Ok(())
}
