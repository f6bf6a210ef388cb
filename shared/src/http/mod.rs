//! What every HTTP function shares: state, extractors that answer problem+json, keyset
//! pagination and ETags.

mod extract;
pub mod openapi;
mod pagination;

use std::sync::Arc;

use axum::extract::FromRef;
use http::{HeaderMap, HeaderValue};

pub use extract::{JsonBody, Path, Query};
pub use pagination::{Cursor, ListResponse, PageRequest};

use crate::auth::TokenVerifier;
use crate::config::Config;
use crate::db::Db;
use crate::error::ApiError;

/// Built once per cold start and shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub verifier: Arc<TokenVerifier>,
}

impl AppState {
    pub async fn from_config(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            db: Db::connect(&config.database_url, config.database_pool_size)?,
            verifier: Arc::new(TokenVerifier::new(&config.auth).await?),
        })
    }
}

impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// The strong ETag of a row version.
pub fn etag(version: i32) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits and quotes are a valid header")
}

/// The version an `If-Match` header demands, `None` when absent or `*`.
/// A header that names no version of ours can never match: 412.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i32>, ApiError> {
    let Some(value) = headers.get(http::header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::VersionMismatch)?
        .trim();
    if value == "*" {
        return Ok(None);
    }
    value
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| ApiError::VersionMismatch)
}
