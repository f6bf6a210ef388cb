//! Settings read once at cold start from the environment.

use anyhow::{bail, Context};

/// How bearer tokens are verified.
#[derive(Debug, Clone)]
pub enum TokenKeys {
    /// Local and test mode: HS256 with a shared secret.
    Hs256Secret(String),
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
    /// Connection string of the runtime role (`customer_app`), never the owner.
    pub url: String,
    pub pool_size: usize,
}

/// Settings of an HTTP function.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self { database: DatabaseConfig::from_env()?, auth: AuthConfig::from_env()? })
    }
}

impl DatabaseConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            url: required("DATABASE_URL")?,
            pool_size: optional("DATABASE_POOL_SIZE")
                .map(|size| size.parse().context("DATABASE_POOL_SIZE must be a number"))
                .transpose()?
                .unwrap_or(4),
        })
    }
}

impl AuthConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let keys = match (optional("JWT_HS256_SECRET"), optional("JWT_JWKS_URL")) {
            (Some(_), Some(_)) => bail!("set only one of JWT_HS256_SECRET and JWT_JWKS_URL"),
            (Some(secret), None) => TokenKeys::Hs256Secret(secret),
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

fn required(name: &str) -> anyhow::Result<String> {
    optional(name).with_context(|| format!("environment variable {name} is not set"))
}
