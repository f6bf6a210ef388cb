//! What the benchmarks share: the admin connection that creates and seeds their database, a
//! seeded random source and percentiles. Each bench uses part of it.
#![allow(dead_code)]

use std::time::Duration;

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

/// A small deterministic random source, so runs draw the same workload.
pub struct Xorshift(pub u64);

impl Xorshift {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The `q` quantile of `latencies` in milliseconds (0 when empty).
pub fn percentile_ms(latencies: &mut [Duration], q: f64) -> f64 {
    latencies.sort_unstable();
    let index = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
    latencies.get(index).copied().unwrap_or_default().as_secs_f64() * 1e3
}
