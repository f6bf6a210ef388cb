//! Schema migrations from `migrations/`, applied by refinery as the owning (admin) role.

use anyhow::Context;

use crate::db::ConnectOptions;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Applies every migration not yet applied; running it again changes nothing.
/// Returns the names of the migrations applied now.
pub async fn run(admin: &ConnectOptions) -> anyhow::Result<Vec<String>> {
    let mut client = admin.connect().await.context("connecting to PostgreSQL as the migration role")?;
    let report = embedded::migrations::runner().run_async(&mut client).await.context("applying migrations")?;
    Ok(report.applied_migrations().iter().map(|m| m.to_string()).collect())
}
