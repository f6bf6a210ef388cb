//! Schema migrations from `migrations/`, applied by refinery as the owning (admin) role.

use anyhow::Context;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Applies every migration not yet applied; running it again changes nothing.
/// Returns the names of the migrations applied now.
pub async fn run(admin: &tokio_postgres::Config) -> anyhow::Result<Vec<String>> {
    let (mut client, connection) =
        admin.connect(tokio_postgres::NoTls).await.context("connecting to PostgreSQL as the migration role")?;
    let connection = tokio::spawn(connection);
    let report = embedded::migrations::runner().run_async(&mut client).await.context("applying migrations")?;
    drop(client);
    connection.await.ok();
    Ok(report.applied_migrations().iter().map(|m| m.to_string()).collect())
}
