//! What the benchmarks share: the admin connection that creates and seeds their database.

/// The admin (owner) settings for `database`, from `ADMIN_DATABASE_URL`.
pub fn admin_config(database: &str) -> tokio_postgres::Config {
    let url =
        std::env::var("ADMIN_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut config: tokio_postgres::Config = url.parse().expect("ADMIN_DATABASE_URL parses");
    config.dbname(database);
    config
}

/// A connection as the owner to `database`.
pub async fn admin(database: &str) -> tokio_postgres::Client {
    let (client, connection) = admin_config(database).connect(tokio_postgres::NoTls).await.expect("PostgreSQL answers");
    tokio::spawn(connection);
    client
}

/// The runtime role's settings for `database`.
pub fn runtime_config(database: &str) -> tokio_postgres::Config {
    let mut config = admin_config(database);
    config.user("customer_app");
    config
}
