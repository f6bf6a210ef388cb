//! The PostgreSQL pool of the runtime role and the only way to reach tenant data: a
//! transaction that has set `app.current_organization_id` for itself alone.

use anyhow::Context;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Transaction};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error as PgError, Row};
use uuid::Uuid;

/// Longest wait for a pooled connection, a new one, or a recycle check.
pub const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// Pool of connections as the runtime role, which cannot bypass row-level security.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

/// A pooled connection that offers nothing but tenant transactions.
pub struct DbConnection(Object);

/// A transaction scoped to one organization: the only handle that runs tenant SQL.
pub struct TenantTx<'a> {
    tx: Transaction<'a>,
    organization_id: Uuid,
}

impl Db {
    pub fn connect(url: &str, max_size: usize) -> anyhow::Result<Self> {
        let pg_config = url.parse().context("DATABASE_URL is not a valid PostgreSQL connection string")?;
        Self::from_config(pg_config, max_size)
    }

    /// A pool that waits at most [`POOL_TIMEOUT`] for a connection, so an unreachable or
    /// saturated database answers `Unavailable` instead of holding the request.
    pub fn from_config(mut pg_config: tokio_postgres::Config, max_size: usize) -> anyhow::Result<Self> {
        if pg_config.get_connect_timeout().is_none() {
            pg_config.connect_timeout(POOL_TIMEOUT);
        }
        let manager = Manager::from_config(
            pg_config,
            tokio_postgres::NoTls,
            // Fast is safe: tenant settings are transaction-local and end with the transaction.
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .context("building the PostgreSQL pool")?;
        Ok(Self { pool })
    }

    /// The functions' pool at cold start: `config`'s connection, refused unless its role is
    /// bound by row-level security (see [`Db::ensure_runtime_role`]).
    pub async fn open(config: &crate::config::DatabaseConfig) -> anyhow::Result<Self> {
        let db = Self::from_config(config.connection.clone(), config.pool_size)?;
        db.ensure_runtime_role().await?;
        Ok(db)
    }

    /// Fails unless the pool's role is bound by row-level security: not a superuser, without
    /// BYPASSRLS, owning no table. Called at cold start so a misconfigured URL never serves.
    pub async fn ensure_runtime_role(&self) -> anyhow::Result<()> {
        let client = self.pool.get().await.context("connecting to PostgreSQL")?;
        let row = client
            .query_one(
                "SELECT r.rolname, r.rolsuper OR r.rolbypassrls, \
                        EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = r.oid AND c.relnamespace = 'public'::regnamespace) \
                 FROM pg_roles r WHERE r.rolname = current_user",
                &[],
            )
            .await
            .context("reading the database role")?;
        let (role, bypasses, owns): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
        anyhow::ensure!(
            !bypasses && !owns,
            "DATABASE_URL connects as `{role}`, which bypasses row-level security or owns tables; \
             connect as the runtime role `customer_app`"
        );
        Ok(())
    }

    /// Every organization with data here, from the registry: the one read that needs no
    /// tenant (it holds ids only), so scheduled jobs can visit each tenant in turn.
    pub async fn organizations(&self) -> anyhow::Result<Vec<Uuid>> {
        let client = self.pool.get().await.context("connecting to PostgreSQL")?;
        let rows = client
            .query("SELECT organization_id FROM organizations ORDER BY organization_id", &[])
            .await
            .context("listing organizations")?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The organizations with events waiting in the outbox, in id order: one query for the
    /// relay, however many tenants there are (see `organizations_with_pending_events` in V6).
    pub async fn organizations_with_pending_events(&self) -> anyhow::Result<Vec<Uuid>> {
        let client = self.pool.get().await.context("connecting to PostgreSQL")?;
        let rows = client
            .query("SELECT pending FROM organizations_with_pending_events() AS pending ORDER BY 1", &[])
            .await
            .context("listing organizations with pending events")?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    pub async fn connection(&self) -> anyhow::Result<DbConnection> {
        Ok(DbConnection(self.pool.get().await.context("getting a PostgreSQL connection")?))
    }
}

impl DbConnection {
    /// The tenant a statement outside any transaction would see on this connection: always
    /// `None`, because tenants are set per transaction. Kept for tests and diagnostics.
    pub async fn organization_outside_transactions(&self) -> anyhow::Result<Option<String>> {
        let row = self
            .0
            .query_one("SELECT NULLIF(current_setting('app.current_organization_id', true), '')", &[])
            .await
            .context("reading the session tenant")?;
        Ok(row.get(0))
    }

    /// Begins a transaction that sees and writes only `organization_id`'s rows.
    pub async fn begin(&mut self, organization_id: Uuid) -> anyhow::Result<TenantTx<'_>> {
        let tx = self.0.transaction().await.context("beginning a transaction")?;
        let set_tenant = tx
            .prepare_cached("SELECT set_config('app.current_organization_id', $1, true)")
            .await
            .context("preparing the tenant setting")?;
        tx.execute(&set_tenant, &[&organization_id.to_string()])
            .await
            .context("setting the tenant of the transaction")?;
        Ok(TenantTx { tx, organization_id })
    }
}

impl TenantTx<'_> {
    pub fn organization_id(&self) -> Uuid {
        self.organization_id
    }

    /// Lets this transaction's statements run up to `limit` (the runtime role's default is a few
    /// seconds): for jobs that work a whole organization at once.
    pub async fn allow_statements_for(&self, limit: Duration) -> anyhow::Result<()> {
        self.tx
            .execute("SELECT set_config('statement_timeout', $1, true)", &[&format!("{}ms", limit.as_millis())])
            .await
            .context("raising the statement timeout")?;
        Ok(())
    }

    pub async fn commit(self) -> anyhow::Result<()> {
        self.tx.commit().await.context("committing")
    }

    /// Runs a cached prepared statement and returns its rows.
    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, PgError> {
        let statement = self.tx.prepare_cached(sql).await?;
        self.tx.query(&statement, params).await
    }

    /// Runs a cached prepared statement that returns at most one row.
    pub async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, PgError> {
        let statement = self.tx.prepare_cached(sql).await?;
        self.tx.query_opt(&statement, params).await
    }

    /// Runs a cached prepared statement that returns exactly one row.
    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, PgError> {
        let statement = self.tx.prepare_cached(sql).await?;
        self.tx.query_one(&statement, params).await
    }

    /// Runs a cached prepared statement and returns the number of rows it touched.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, PgError> {
        let statement = self.tx.prepare_cached(sql).await?;
        self.tx.execute(&statement, params).await
    }
}

/// The name of the unique constraint a statement violated, if that is why it failed.
pub fn unique_violation(error: &tokio_postgres::Error) -> Option<&str> {
    let db_error = error.as_db_error()?;
    (*db_error.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION).then(|| db_error.constraint()).flatten()
}

/// Whether `error` is the database being unreachable, restarting or refusing work for a while
/// (a statement, lock or idle timeout, too many connections, a serialization conflict): a
/// failure the caller may retry, unlike a bug.
pub fn is_transient(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(pool) = cause.downcast_ref::<PoolError>() {
            return match pool {
                PoolError::Backend(postgres) => postgres_is_transient(postgres),
                PoolError::Timeout(_) | PoolError::Closed => true,
                PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => false,
            };
        }
        cause.downcast_ref::<tokio_postgres::Error>().is_some_and(postgres_is_transient)
    })
}

fn postgres_is_transient(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        Some(code) => {
            let class = &code.code()[..2];
            // 08 connection exception, 53 insufficient resources, 57 operator intervention
            // (query_canceled by statement_timeout, admin shutdown, cannot connect now).
            ["08", "53", "57"].contains(&class)
                || [
                    SqlState::LOCK_NOT_AVAILABLE,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                    SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
                ]
                .contains(code)
        }
        None => {
            error.is_closed() || std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>())
        }
    }
}
