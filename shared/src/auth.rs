//! Bearer tokens: verification (HS256 locally, RS256 via JWKS when deployed) and the caller
//! they identify. The organization comes from the verified token and nowhere else.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

use crate::config::{AuthConfig, TokenKeys};
use crate::error::ApiError;

/// Operations a token may be allowed, by its `scope` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    CustomersRead,
    CustomersWrite,
    CustomersAdmin,
    CreditRead,
    CreditWrite,
    CreditApprove,
    SegmentsRead,
    SegmentsWrite,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Self::CustomersRead,
        Self::CustomersWrite,
        Self::CustomersAdmin,
        Self::CreditRead,
        Self::CreditWrite,
        Self::CreditApprove,
        Self::SegmentsRead,
        Self::SegmentsWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomersRead => "customers:read",
            Self::CustomersWrite => "customers:write",
            Self::CustomersAdmin => "customers:admin",
            Self::CreditRead => "credit:read",
            Self::CreditWrite => "credit:write",
            Self::CreditApprove => "credit:approve",
            Self::SegmentsRead => "segments:read",
            Self::SegmentsWrite => "segments:write",
        }
    }
}

/// Who is calling: the verified organization, subject and scopes of the token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub organization_id: Uuid,
    pub subject: String,
    scopes: HashSet<String>,
}

impl Caller {
    /// A caller of `organization_id` allowed `scopes`, for callers verified some other way.
    pub fn with_scopes(organization_id: Uuid, subject: &str, scopes: &[Scope]) -> Self {
        Self {
            organization_id,
            subject: subject.to_string(),
            scopes: scopes.iter().map(|scope| scope.as_str().to_string()).collect(),
        }
    }

    /// A caller for internal jobs (seeding, event consumers) acting with every scope.
    pub fn service(organization_id: Uuid, subject: &str) -> Self {
        Self::with_scopes(organization_id, subject, &Scope::ALL)
    }

    /// 403 unless the token carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(scope.as_str()) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(scope.as_str()))
        }
    }
}

/// Verifies bearer tokens; built once at cold start.
pub struct TokenVerifier {
    keys: KeySource,
    validation: Validation,
    organization_claim: String,
}

enum KeySource {
    Static(DecodingKey),
    Jwks(JwksCache),
}

/// Keys of a JWKS document by `kid`, fetched on first use and again for an unknown `kid`. At
/// most one fetch a minute, failed or not, so forged kids or a provider outage cannot make us
/// hammer the provider; and none at start, so a cold start does not depend on it.
struct JwksCache {
    url: String,
    client: reqwest::Client,
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// When the last fetch began; held while a fetch runs, so concurrent misses wait for it.
    last_fetch: Mutex<Option<Instant>>,
}

/// The shortest time between two JWKS fetches.
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Seconds a token's `exp` and `nbf` may be off, for clocks that differ.
const LEEWAY_SECONDS: u64 = 30;

impl TokenVerifier {
    /// With a JWKS URL nothing is fetched yet: the keys come with the first token.
    pub async fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let (keys, algorithm) = match &config.keys {
            TokenKeys::Hs256Secret(secret) => {
                (KeySource::Static(DecodingKey::from_secret(secret.expose().as_bytes())), Algorithm::HS256)
            }
            TokenKeys::JwksUrl(url) => {
                let cache = JwksCache {
                    url: url.clone(),
                    client: reqwest::Client::builder()
                        .timeout(Duration::from_secs(5))
                        .build()
                        .context("building the JWKS client")?,
                    keys: RwLock::new(HashMap::new()),
                    last_fetch: Mutex::new(None),
                };
                (KeySource::Jwks(cache), Algorithm::RS256)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &config.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
        }
        Ok(Self { keys, validation, organization_claim: config.organization_claim.clone() })
    }

    /// The caller an `Authorization` value (`Bearer <token>`, from an HTTP header or gRPC
    /// metadata) speaks for, or 401.
    pub async fn verify_authorization(&self, authorization: Option<&[u8]>) -> Result<Caller, ApiError> {
        let value = authorization.ok_or(ApiError::Unauthorized("the Authorization header is missing"))?;
        let token = std::str::from_utf8(value)
            .ok()
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized("expected `Authorization: Bearer <token>`"))?;
        self.verify(token).await
    }

    /// The caller a token speaks for, or 401.
    pub async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let claims = match &self.keys {
            KeySource::Static(key) => self.decode(token, key)?,
            KeySource::Jwks(cache) => {
                let header =
                    jsonwebtoken::decode_header(token).map_err(|_| ApiError::Unauthorized("the token is malformed"))?;
                let kid = header.kid.ok_or(ApiError::Unauthorized("the token has no key id"))?;
                let key = cache.key(&kid).await?;
                self.decode(token, &key)?
            }
        };
        self.caller(claims)
    }

    fn decode(&self, token: &str, key: &DecodingKey) -> Result<Map<String, Value>, ApiError> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation).map(|data| data.claims).map_err(
            |error| match error.kind() {
                ErrorKind::ExpiredSignature => ApiError::Unauthorized("the token has expired"),
                ErrorKind::InvalidSignature => ApiError::Unauthorized("the signature is invalid"),
                ErrorKind::ImmatureSignature => ApiError::Unauthorized("the token is not valid yet"),
                _ => ApiError::Unauthorized("the token is invalid"),
            },
        )
    }

    fn caller(&self, claims: Map<String, Value>) -> Result<Caller, ApiError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|sub| !sub.is_empty())
            .ok_or(ApiError::Unauthorized("the token has no subject"))?;
        let organization_id = claims
            .get(&self.organization_claim)
            .and_then(Value::as_str)
            .and_then(|org| Uuid::parse_str(org).ok())
            .ok_or(ApiError::Unauthorized("the token has no valid organization claim"))?;
        let scopes = claims
            .get("scope")
            .and_then(Value::as_str)
            .map(|scope| scope.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(Caller { organization_id, subject: subject.to_owned(), scopes })
    }
}

impl JwksCache {
    async fn key(&self, kid: &str) -> Result<DecodingKey, ApiError> {
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        {
            let mut last_fetch = self.last_fetch.lock().await;
            if last_fetch.is_none_or(|started| started.elapsed() >= JWKS_REFRESH_INTERVAL) {
                *last_fetch = Some(Instant::now());
                match self.fetch().await {
                    Ok(keys) => *self.keys.write().await = keys,
                    Err(error) => tracing::warn!(error = %crate::error::loggable(&error), "JWKS fetch failed"),
                }
            }
        }
        self.keys.read().await.get(kid).cloned().ok_or(ApiError::Unauthorized("the token's key is unknown"))
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, DecodingKey>> {
        let set: JwkSet = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("fetching the JWKS document")?
            .json()
            .await
            .context("reading the JWKS document")?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect())
    }
}

/// Signs an HS256 token for local development and tests (the deployed mode only verifies).
pub fn issue_hs256_token(
    secret: &str,
    organization_id: Uuid,
    subject: &str,
    scopes: &[&str],
    lifetime: Duration,
) -> anyhow::Result<String> {
    let expires_at = chrono::Utc::now() + lifetime;
    let claims = serde_json::json!({
        "sub": subject,
        "org_id": organization_id,
        "scope": scopes.join(" "),
        "iat": chrono::Utc::now().timestamp(),
        "exp": expires_at.timestamp(),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("signing the token")
}
