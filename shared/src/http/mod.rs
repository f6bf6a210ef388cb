//! What every HTTP function shares: state, extractors that answer problem+json, keyset
//! pagination and ETags.

mod extract;
pub mod openapi;
mod pagination;

use std::sync::Arc;

use axum::extract::{FromRef, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use http::{HeaderMap, HeaderValue};
use lambda_http::RequestExt;
use tracing::Instrument;

pub use extract::{nullable, JsonBody, Path, Query};
pub use pagination::{ListResponse, PageRequest};

use crate::auth::{CallerOrganization, TokenVerifier};
use crate::config::Config;
use crate::db::Db;
use crate::error::ApiError;
use crate::events::Relay;

/// Built once per cold start and shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub verifier: Arc<TokenVerifier>,
    /// Publishes a request's events right after it commits; `None` leaves them to the
    /// scheduled relay.
    pub relay: Option<Arc<Relay>>,
}

impl AppState {
    pub async fn from_config(config: &Config) -> anyhow::Result<Self> {
        let db = Db::open(&config.database).await?;
        let relay = match &config.events.outbox_queue_url {
            Some(queue_url) => {
                let sqs = aws_sdk_sqs::Client::new(&crate::aws::from_env().await);
                Some(Arc::new(Relay::new(db.clone(), sqs, queue_url)))
            }
            None => None,
        };
        Ok(Self { db, verifier: Arc::new(TokenVerifier::new(&config.auth).await?), relay })
    }
}

impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// A function's router: its documented `routes` under `/api/v1`, `GET /api/v1/openapi.json`
/// serving `api` completed with them, problem+json for unknown routes and methods, and a span
/// per request carrying the Lambda request id.
pub fn function_router(
    api: utoipa::openapi::OpenApi,
    routes: utoipa_axum::router::OpenApiRouter<AppState>,
    state: AppState,
) -> Router {
    let relay = state.relay.clone();
    let (router, api) = utoipa_axum::router::OpenApiRouter::with_openapi(api)
        .nest("/api/v1", routes)
        .with_state(state)
        .split_for_parts();
    let api = Arc::new(api);
    router
        .route("/api/v1/openapi.json", get(move || async move { Json(api.as_ref().clone()) }))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(relay, publish_after_writes))
        .layer(middleware::from_fn(request_span))
}

/// After a successful write, publishes the events it wrote (within a short budget), so they
/// leave within the request instead of at the next scheduled relay.
async fn publish_after_writes(State(relay): State<Option<Arc<Relay>>>, mut request: Request, next: Next) -> Response {
    let Some(relay) = relay.filter(|_| !request.method().is_safe()) else {
        return next.run(request).await;
    };
    let caller_organization = CallerOrganization::default();
    request.extensions_mut().insert(caller_organization.clone());
    let (response, groups) = crate::events::recording_groups(next.run(request)).await;
    if let Some(organization_id) = caller_organization.get().filter(|_| response.status().is_success()) {
        relay.publish_after_commit(organization_id, &groups).await;
    }
    response
}

async fn request_span(request: Request, next: Next) -> Response {
    let request_id = request.lambda_context_ref().map(|context| context.request_id.clone()).unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = request.uri().path(),
        request_id
    );
    let response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| tracing::info!(status = response.status().as_u16(), "answered"));
    response
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
    let value = value.to_str().map_err(|_| ApiError::VersionMismatch)?.trim();
    if value == "*" {
        return Ok(None);
    }
    value.trim_start_matches("W/").trim_matches('"').parse().map(Some).map_err(|_| ApiError::VersionMismatch)
}
