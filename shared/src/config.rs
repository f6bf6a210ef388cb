//! Settings read once at cold start from the environment.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;

use crate::db::ConnectOptions;

/// A value that must never reach a log: its `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// How bearer tokens are verified.
#[derive(Debug, Clone)]
pub enum TokenKeys {
    /// Local and test mode: HS256 with a shared secret.
    Hs256Secret(Secret),
    /// Deployed mode: RS256 against the identity provider's JWKS document.
    JwksUrl(String),
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub keys: TokenKeys,
    /// Claim that carries the organization id (`org_id` unless configured).
    pub organization_claim: String,
    pub audience: Option<String>,
    pub issuer: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Connection of the runtime role (`customer_app`), never the owner, and its TLS.
    pub connection: ConnectOptions,
    pub pool_size: usize,
}

/// Where this service's own events go.
#[derive(Debug, Clone, Default)]
pub struct EventsConfig {
    /// The outbound FIFO queue (`OUTBOX_QUEUE_URL`). Unset: events wait in the outbox.
    pub outbox_queue_url: Option<String>,
}

/// The read cache (see `cache`).
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// `REDIS_URL` (`redis://`, or `rediss://` for TLS), with the AUTH credentials of
    /// `REDIS_AUTH_SECRET_ARN` when one is set. Unset: every read goes to the database.
    pub url: Option<Secret>,
    /// How long a customer's cached views live at most (`CACHE_TTL_SECONDS`, default 300).
    pub ttl: Duration,
    /// Longest wait for Redis per call (`CACHE_TIMEOUT_MS`, default 10).
    pub timeout: Duration,
    /// How long reads skip Redis after it failed (`CACHE_PAUSE_SECONDS`, default 5).
    pub pause: Duration,
}

impl CacheConfig {
    /// Shortest TTL accepted: longer than any request can take between reading the cache and
    /// storing what it read, which the freshness argument of `cache` relies on.
    pub const MIN_TTL: Duration = Duration::from_secs(60);

    /// [`CacheConfig::from_env`], with the AUTH credentials of the secret named in
    /// `REDIS_AUTH_SECRET_ARN` (fetched here, so once per cold start): a JSON object with
    /// `password` (the ElastiCache AUTH token) and optionally `username`, or the token alone.
    pub async fn load() -> anyhow::Result<Self> {
        let mut config = Self::from_env()?;
        let (Some(url), Some(arn)) = (&config.url, optional("REDIS_AUTH_SECRET_ARN")) else { return Ok(config) };
        let secrets = aws_sdk_secretsmanager::Client::new(&crate::aws::from_env().await);
        let text = secret_text(&secrets, &arn, "cache").await?;
        #[derive(Deserialize)]
        struct Credentials {
            username: Option<String>,
            password: String,
        }
        let credentials = serde_json::from_str::<Credentials>(&text)
            .unwrap_or(Credentials { username: None, password: text.trim().to_string() });
        let mut with_auth = reqwest::Url::parse(url.expose()).context("REDIS_URL is not a valid URL")?;
        let anonymous = with_auth.set_password(Some(&credentials.password)).is_err()
            || with_auth.set_username(credentials.username.as_deref().unwrap_or("")).is_err();
        if anonymous {
            bail!("REDIS_URL cannot carry credentials (it needs a host)");
        }
        config.url = Some(with_auth.to_string().into());
        Ok(config)
    }

    pub fn from_env() -> anyhow::Result<Self> {
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            optional(name).map_or(Ok(default), |value| {
                value.trim().parse().with_context(|| format!("{name} must be a whole number"))
            })
        };
        let config = Self {
            url: optional("REDIS_URL").map(Secret::from),
            ttl: Duration::from_secs(number("CACHE_TTL_SECONDS", 300)?),
            timeout: Duration::from_millis(number("CACHE_TIMEOUT_MS", 10)?),
            pause: Duration::from_secs(number("CACHE_PAUSE_SECONDS", 5)?),
        };
        if config.ttl < Self::MIN_TTL {
            bail!("CACHE_TTL_SECONDS must be at least {}", Self::MIN_TTL.as_secs());
        }
        if config.timeout.is_zero() {
            bail!("CACHE_TIMEOUT_MS must be at least 1");
        }
        Ok(config)
    }
}

/// Who sends each inbound event type: an envelope whose `source` is not the one named here
/// for its type is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundConfig {
    /// `source` of `pricing.loyalty.tier_changed` (`INBOUND_PRICING_SOURCE`).
    pub pricing_source: String,
    /// `source` of `orders.order.*` (`INBOUND_ORDERS_SOURCE`).
    pub orders_source: String,
}

impl Default for InboundConfig {
    /// The contract's producers: `pricing-service` and `order-service`.
    fn default() -> Self {
        Self { pricing_source: "pricing-service".into(), orders_source: "order-service".into() }
    }
}

/// Settings of the nightly segment run (the `rfm` function).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NightlyConfig {
    /// Organizations scored at once (`NIGHTLY_ORGANIZATIONS_AT_ONCE`, default 2 or the pool's
    /// size if smaller): each holds a pooled connection and its organization's rows in memory.
    pub organizations_at_once: usize,
}

/// Settings of an HTTP function.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub events: EventsConfig,
    pub cache: CacheConfig,
}

impl Config {
    pub async fn load() -> anyhow::Result<Self> {
        Ok(Self {
            database: DatabaseConfig::load().await?,
            auth: AuthConfig::from_env()?,
            events: EventsConfig::from_env(),
            cache: CacheConfig::load().await?,
        })
    }
}

impl DatabaseConfig {
    /// `DATABASE_URL`, completed by the secret named in `DATABASE_SECRET_ARN` when one is
    /// set (fetched here, so once per cold start). `DATABASE_SSLMODE` and
    /// `DATABASE_SSLROOTCERT`, when set, replace the URL's `sslmode` and `sslrootcert`: the
    /// deployment's TLS policy, whatever the URL says.
    pub async fn load() -> anyhow::Result<Self> {
        let url = optional("DATABASE_URL")
            .map(|url| url.parse::<ConnectOptions>())
            .transpose()
            .context("DATABASE_URL is not a valid PostgreSQL connection string")?;
        let mut connection = match optional("DATABASE_SECRET_ARN") {
            Some(arn) => {
                let secrets = aws_sdk_secretsmanager::Client::new(&crate::aws::from_env().await);
                let mut options = url.unwrap_or_default();
                options.config = connection_from_secret(&secrets, &arn, options.config).await?;
                options
            }
            None => url.context("environment variable DATABASE_URL is not set (nor DATABASE_SECRET_ARN)")?,
        };
        if let Some(mode) = optional("DATABASE_SSLMODE") {
            connection.tls.mode = mode.parse().context("DATABASE_SSLMODE")?;
        }
        if let Some(bundle) = optional("DATABASE_SSLROOTCERT") {
            connection.tls.root_cert = Some(bundle.into());
        }
        let pool_size = optional("DATABASE_POOL_SIZE")
            .map(|size| size.parse().context("DATABASE_POOL_SIZE must be a number"))
            .transpose()?
            .unwrap_or(4);
        Ok(Self { connection, pool_size })
    }
}

/// A database secret in the shape RDS writes: credentials, and optionally where to connect.
#[derive(Deserialize)]
struct DatabaseSecret {
    username: String,
    password: String,
    host: Option<String>,
    port: Option<SecretPort>,
    dbname: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SecretPort {
    Number(u16),
    Text(String),
}

/// The text of the `what` secret at `arn`. Errors name the secret, never its content.
async fn secret_text(secrets: &aws_sdk_secretsmanager::Client, arn: &str, what: &str) -> anyhow::Result<String> {
    secrets
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(aws_sdk_secretsmanager::Error::from)
        .with_context(|| format!("reading the {what} secret {arn} from Secrets Manager"))?
        .secret_string
        .with_context(|| format!("the {what} secret {arn} holds no text"))
}

/// `base` with the credentials of the secret at `arn`, and its host, port and database name
/// where it has them. Errors name the secret, never its content.
pub async fn connection_from_secret(
    secrets: &aws_sdk_secretsmanager::Client,
    arn: &str,
    mut base: tokio_postgres::Config,
) -> anyhow::Result<tokio_postgres::Config> {
    let text = secret_text(secrets, arn, "database").await?;
    let secret: DatabaseSecret = serde_json::from_str(&text)
        .map_err(|_| anyhow!("the database secret {arn} is not a JSON object with string `username` and `password`"))?;
    base.user(&secret.username).password(secret.password);
    if let Some(host) = &secret.host {
        base.host(host);
    }
    if let Some(port) = secret.port {
        let port = match port {
            SecretPort::Number(port) => port,
            SecretPort::Text(text) => {
                text.parse().map_err(|_| anyhow!("the database secret {arn} has an invalid port"))?
            }
        };
        base.port(port);
    }
    if let Some(dbname) = &secret.dbname {
        base.dbname(dbname);
    }
    Ok(base)
}

impl EventsConfig {
    pub fn from_env() -> Self {
        Self { outbox_queue_url: optional("OUTBOX_QUEUE_URL") }
    }
}

impl InboundConfig {
    pub fn from_env() -> Self {
        let defaults = Self::default();
        Self {
            pricing_source: optional("INBOUND_PRICING_SOURCE").unwrap_or(defaults.pricing_source),
            orders_source: optional("INBOUND_ORDERS_SOURCE").unwrap_or(defaults.orders_source),
        }
    }
}

impl NightlyConfig {
    /// Organizations scored at once when `NIGHTLY_ORGANIZATIONS_AT_ONCE` is unset (or the pool's
    /// size if smaller).
    pub const DEFAULT_ORGANIZATIONS_AT_ONCE: usize = 2;

    /// From the environment; at least one organization at once, and no more than the pool's
    /// connections (`pool_size`).
    pub fn from_env(pool_size: usize) -> anyhow::Result<Self> {
        let organizations_at_once = optional("NIGHTLY_ORGANIZATIONS_AT_ONCE")
            .map(|n| n.parse().context("NIGHTLY_ORGANIZATIONS_AT_ONCE must be a number"))
            .transpose()?
            .unwrap_or(pool_size.min(Self::DEFAULT_ORGANIZATIONS_AT_ONCE));
        anyhow::ensure!(
            (1..=pool_size).contains(&organizations_at_once),
            "NIGHTLY_ORGANIZATIONS_AT_ONCE must be between 1 and DATABASE_POOL_SIZE ({pool_size})"
        );
        Ok(Self { organizations_at_once })
    }
}

impl AuthConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let keys = match (optional("JWT_HS256_SECRET"), optional("JWT_JWKS_URL")) {
            (Some(_), Some(_)) => bail!("set only one of JWT_HS256_SECRET and JWT_JWKS_URL"),
            (Some(secret), None) => TokenKeys::Hs256Secret(secret.into()),
            (None, Some(url)) => TokenKeys::JwksUrl(url),
            (None, None) => bail!("no token verification configured: set JWT_HS256_SECRET (local) or JWT_JWKS_URL"),
        };
        Ok(Self {
            keys,
            organization_claim: optional("JWT_ORG_CLAIM").unwrap_or_else(|| "org_id".into()),
            audience: optional("JWT_AUDIENCE"),
            issuer: optional("JWT_ISSUER"),
        })
    }
}

fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debug_form_of_the_auth_settings_hides_the_hs256_secret() {
        let config = AuthConfig {
            keys: TokenKeys::Hs256Secret("s3cret-signing-key".into()),
            organization_claim: "org_id".into(),
            audience: None,
            issuer: None,
        };
        let printed = format!("{config:?} {:#?}", config.keys);
        assert!(!printed.contains("s3cret-signing-key"), "{printed}");
        assert!(printed.contains("Hs256Secret(***)"), "{printed}");
    }
}
