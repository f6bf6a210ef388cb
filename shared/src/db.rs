//! The PostgreSQL pool of the runtime role and the only way to reach tenant data: a
//! transaction that has set `app.current_organization_id` for itself alone. Every connection
//! of the product, the migration runner's too, is made here, with the TLS of [`ConnectOptions`].

mod tls;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Transaction};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::{Error as PgError, Row};
use uuid::Uuid;

use crate::cache::Changes;

/// Longest wait for a pooled connection, a new one, or a recycle check.
pub const POOL_TIMEOUT: Duration = Duration::from_secs(5);

pub use tls::{Tls, TlsMode};

/// Where to connect and how to secure it: tokio-postgres's settings, and the TLS it cannot
/// express (`sslmode=verify-full`, `sslrootcert`). `tls` decides; the `sslmode` inside
/// `config` is ignored.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub config: tokio_postgres::Config,
    pub tls: Tls,
}

impl ConnectOptions {
    /// One connection outside the pool (migrations, admin tools); its I/O runs on a task of its own.
    pub async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = self
            .tokio_config()
            .connect(self.tls.connector()?)
            .await
            .with_context(|| format!("connecting to PostgreSQL with sslmode={}", self.tls.mode))?;
        tokio::spawn(connection);
        Ok(client)
    }

    fn tokio_config(&self) -> tokio_postgres::Config {
        let mut config = self.config.clone();
        config.ssl_mode(self.tls.ssl_mode());
        config
    }
}

/// Settings alone: their own `sslmode`, with no CA bundle.
impl From<tokio_postgres::Config> for ConnectOptions {
    fn from(config: tokio_postgres::Config) -> Self {
        let tls = Tls { mode: config.get_ssl_mode().into(), root_cert: None };
        Self { config, tls }
    }
}

/// A connection string; in the `postgres://` form, its `sslmode` (any of libpq's) and
/// `sslrootcert` query parameters are read here and the rest by tokio-postgres. Errors never
/// repeat the string, which may hold a password.
impl FromStr for ConnectOptions {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let (rest, mode, root_cert) = take_tls_parameters(text)?;
        let mut options = Self::from(rest.parse::<tokio_postgres::Config>()?);
        if let Some(mode) = mode {
            options.tls.mode = mode.parse()?;
        }
        options.tls.root_cert = root_cert.map(Into::into);
        Ok(options)
    }
}

/// `url` without its `sslmode` and `sslrootcert` query parameters, and their decoded values.
/// Anything but a `postgres://` URL is returned as it is.
fn take_tls_parameters(url: &str) -> anyhow::Result<(String, Option<String>, Option<String>)> {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let Some((base, query)) = url.split_once('?').filter(|_| is_url) else {
        return Ok((url.to_string(), None, None));
    };
    let (mut kept, mut mode, mut root_cert) = (Vec::new(), None, None);
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "sslmode" => &mut mode,
            "sslrootcert" => &mut root_cert,
            _ => {
                kept.push(pair);
                continue;
            }
        };
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .with_context(|| format!("the {key} of the connection string is not UTF-8"))?;
        *slot = Some(value.into_owned());
    }
    let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, mode, root_cert))
}

/// Pool of connections as the runtime role, which cannot bypass row-level security.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

/// A pooled connection that offers nothing but tenant transactions.
pub struct DbConnection(Object);

/// What every tenant transaction runs first: the organization its rows belong to (`$1`), and
/// UTC as the clock of business dates (`current_date` of due and payment dates), whatever the
/// server's or the database's time zone. Public so the benchmarks' floors run it too.
pub const SET_TENANT_SQL: &str =
    "SELECT set_config('app.current_organization_id', $1, true), set_config('TimeZone', 'UTC', true)";

/// A transaction scoped to one organization: the only handle that runs tenant SQL.
pub struct TenantTx<'a> {
    tx: Transaction<'a>,
    organization_id: Uuid,
    /// Message groups of the events written so far, for the publish after the commit.
    message_groups: std::sync::Mutex<Vec<String>>,
    /// What this transaction changed, for the cache invalidation after the commit.
    changes: std::sync::Mutex<Changes>,
}

/// What a commit made durable: the organization and the message groups it wrote events to.
#[derive(Debug)]
pub struct Committed {
    pub organization_id: Uuid,
    pub message_groups: Vec<String>,
}

impl Db {
    pub fn connect(url: &str, max_size: usize) -> anyhow::Result<Self> {
        let options: ConnectOptions =
            url.parse().context("DATABASE_URL is not a valid PostgreSQL connection string")?;
        Self::from_config(options, max_size)
    }

    /// A pool over `options` (a bare `tokio_postgres::Config` keeps its own `sslmode`) that
    /// waits at most [`POOL_TIMEOUT`] for a connection, so an unreachable or saturated database
    /// answers `Unavailable` instead of holding the request. Connections are made on demand; a
    /// bad CA bundle fails here.
    pub fn from_config(options: impl Into<ConnectOptions>, max_size: usize) -> anyhow::Result<Self> {
        let mut options = options.into();
        if options.config.get_connect_timeout().is_none() {
            options.config.connect_timeout(POOL_TIMEOUT);
        }
        let manager = Manager::from_config(
            options.tokio_config(),
            options.tls.connector()?,
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
        let set_tenant = tx.prepare_cached(SET_TENANT_SQL).await.context("preparing the tenant setting")?;
        tx.execute(&set_tenant, &[&organization_id.to_string()])
            .await
            .context("setting the tenant of the transaction")?;
        Ok(TenantTx { tx, organization_id, message_groups: Default::default(), changes: Default::default() })
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

    /// Notes that this transaction wrote an event to `group` (see `events::message_group`).
    pub fn note_message_group(&self, group: &str) {
        let mut groups = self.message_groups.lock().expect("message groups lock");
        if !groups.iter().any(|noted| noted == group) {
            groups.push(group.to_string());
        }
    }

    /// Notes that this transaction changes what reads of `customer_id` answer (see `cache`):
    /// called where a writer locks the customer or its account.
    pub fn changes_customer(&self, customer_id: Uuid) {
        self.changes_customers(&[customer_id]);
    }

    /// [`TenantTx::changes_customer`] for several customers.
    pub fn changes_customers(&self, customer_ids: &[Uuid]) {
        let mut changes = self.changes.lock().expect("changes lock");
        changes.customers.extend_from_slice(customer_ids);
    }

    /// Notes that this transaction changes customers across the organization (a scoring run).
    pub fn changes_organization(&self) {
        self.changes.lock().expect("changes lock").organization = true;
    }

    /// What the transaction noted it changes, taken out (for the invalidation after commit).
    pub fn take_changes(&self) -> Changes {
        let mut changes = std::mem::take(&mut *self.changes.lock().expect("changes lock"));
        if changes.organization {
            changes.customers.clear();
        }
        changes.customers.sort_unstable();
        changes.customers.dedup();
        changes
    }

    pub async fn commit(self) -> anyhow::Result<Committed> {
        self.tx.commit().await.context("committing")?;
        let message_groups = self.message_groups.into_inner().expect("message groups lock");
        Ok(Committed { organization_id: self.organization_id, message_groups })
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

/// Statement parameters whose number and types a query decides at run time.
pub type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// `params` as a statement takes them.
pub fn borrow_params(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}

/// Where a row version lies in its table (`ctid`): found again without an index, but only
/// while no one else can update or delete the row, so only within the transaction that read
/// it and while it keeps the row's writers waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowAddress {
    block: u32,
    offset: u16,
}

impl<'a> FromSql<'a> for RowAddress {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let raw: [u8; 6] = raw.try_into().map_err(|_| "a tid is 6 bytes")?;
        Ok(Self {
            block: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
            offset: u16::from_be_bytes([raw[4], raw[5]]),
        })
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TID
    }
}

impl ToSql for RowAddress {
    fn to_sql(&self, _: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.block.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TID
    }

    to_sql_checked!();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_its_sslmode_and_ca_bundle_to_tls_and_the_rest_to_tokio_postgres() {
        let options: ConnectOptions = "postgres://app@db.internal:5432/cs?connect_timeout=5&sslmode=verify-full\
                                       &sslrootcert=%2Fopt%2Frds%2Fglobal-bundle.pem&application_name=cs"
            .parse()
            .unwrap();
        assert_eq!(
            options.tls,
            Tls { mode: TlsMode::VerifyFull, root_cert: Some("/opt/rds/global-bundle.pem".into()) }
        );
        assert_eq!(options.config.get_connect_timeout(), Some(&std::time::Duration::from_secs(5)));
        assert_eq!(options.config.get_application_name(), Some("cs"));
        assert_eq!(options.tokio_config().get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    }

    #[test]
    fn without_sslmode_a_connection_prefers_tls_as_libpq_does() {
        let options: ConnectOptions = "postgres://app@127.0.0.1/cs".parse().unwrap();
        assert_eq!(options.tls, Tls { mode: TlsMode::Prefer, root_cert: None });
        let options: ConnectOptions = "host=127.0.0.1 user=app sslmode=disable".parse().unwrap();
        assert_eq!(options.tls.mode, TlsMode::Disable);
    }

    #[test]
    fn an_unknown_sslmode_is_refused_without_repeating_the_url() {
        let error = "postgres://app:s3cret@db/cs?sslmode=verify".parse::<ConnectOptions>().unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("verify-full") && !message.contains("s3cret"), "{message}");
    }

    #[test]
    fn a_verifying_mode_without_a_ca_bundle_cannot_build_a_connector() {
        let tls = Tls { mode: TlsMode::VerifyFull, root_cert: None };
        assert!(format!("{:#}", tls.connector().err().unwrap()).contains("CA bundle"));
        let tls = Tls { mode: TlsMode::VerifyFull, root_cert: Some("/nonexistent/bundle.pem".into()) };
        assert!(format!("{:#}", tls.connector().err().unwrap()).contains("/nonexistent/bundle.pem"));
    }
}
