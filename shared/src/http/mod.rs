//! What every HTTP function shares: state, extractors and errors that answer problem+json,
//! and ETags. Routes parse, call one operation, and map its answer.

mod extract;
pub mod openapi;
pub mod problem;

use std::sync::Arc;

use axum::extract::{FromRef, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use utoipa_axum::router::OpenApiRouter;

use http::{HeaderMap, HeaderValue};
use lambda_http::RequestExt;
use openapi::BearerAuth;
use tracing::Instrument;

pub use extract::{JsonBody, OptionalJsonBody, Path, Query};
pub use problem::Problem;

use crate::app::App;
use crate::auth::TokenVerifier;
use crate::cache::Cache;
use crate::config::Config;
use crate::db::Db;
use crate::error::ApiError;

/// Built once per cold start and shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub app: App,
    pub verifier: Arc<TokenVerifier>,
}

impl AppState {
    pub async fn from_config(config: &Config) -> anyhow::Result<Self> {
        let db = Db::open(&config.database).await?;
        let app = App::with_events(db, &config.events).await.with_cache(Cache::from_config(&config.cache)?);
        Ok(Self { app, verifier: Arc::new(TokenVerifier::new(&config.auth).await?) })
    }
}

impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// A function's API: the head of its OpenAPI document (info, security, shared schemas) and
/// its documented routes.
pub type Documented = (utoipa::openapi::OpenApi, OpenApiRouter<AppState>);

/// A function's router (see `serve_documented`).
pub fn function_router((api, routes): Documented, state: AppState) -> Router {
    serve_documented(api, routes, state)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Customer service", version = "1.0.0",
         description = "Customers, addresses, loyalty, store credit and search: every function's routes in one API."),
    modifiers(&BearerAuth)
)]
struct CombinedApi;

/// Several functions' routes behind one router with one merged OpenAPI document, as the
/// container server serves them.
pub fn combined_router(parts: impl IntoIterator<Item = Documented>, state: AppState) -> Router {
    let (mut api, mut routes) = (<CombinedApi as utoipa::OpenApi>::openapi(), OpenApiRouter::new());
    for (part_api, part_routes) in parts {
        api.merge(part_api);
        routes = routes.merge(part_routes);
    }
    serve_documented(api, routes, state)
}

/// A function's OpenAPI document, as its router serves it at `/api/v1/openapi.json`.
pub fn function_document((api, routes): Documented) -> utoipa::openapi::OpenApi {
    let mut api = OpenApiRouter::with_openapi(api).nest("/api/v1", routes).into_openapi();
    openapi::complete(&mut api);
    api
}

/// `routes` under `/api/v1`, `GET /api/v1/openapi.json` serving `api` completed with them,
/// problem+json for unknown routes and methods, and a span per request carrying the request id.
fn serve_documented(api: utoipa::openapi::OpenApi, routes: OpenApiRouter<AppState>, state: AppState) -> Router {
    let (router, mut api) =
        OpenApiRouter::with_openapi(api).nest("/api/v1", routes).with_state(state).split_for_parts();
    openapi::complete(&mut api);
    let api = Arc::new(api);
    router
        .route("/api/v1/openapi.json", get(move || async move { Json(api.as_ref().clone()) }))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(request_span))
}

async fn request_span(request: Request, next: Next) -> Response {
    let request_id = match request.lambda_context_ref() {
        Some(context) => context.request_id.clone(),
        None => request_id(request.headers().get("x-request-id").map(HeaderValue::as_bytes)),
    };
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

/// A caller's `x-request-id` when it is short visible text, or a new one: what ties a
/// request's log lines together outside Lambda.
pub fn request_id(given: Option<&[u8]>) -> String {
    given
        .and_then(|value| std::str::from_utf8(value).ok())
        .filter(|id| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// The strong ETag of a row version.
pub fn etag(version: i32) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits and quotes are a valid header")
}

/// The `If-Match` header of conditional writes, as documented: what [`if_match`] reads.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// The ETag of the version being changed (`"3"`, weak `W/"3"` alike), or `*` for any.
    #[param(rename = "If-Match", pattern = r#"^(\*|(W/)?"[0-9]{1,9}")$"#)]
    pub if_match: Option<String>,
}

/// The version an `If-Match` header demands, `None` when absent or `*`.
/// A header that names no version of ours can never match: 412.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i32>, ApiError> {
    let Some(value) = headers.get(http::header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::VersionMismatch)?;
    if value == "*" {
        return Ok(None);
    }
    let digits = value.strip_prefix("W/").unwrap_or(value).strip_prefix('"').and_then(|v| v.strip_suffix('"'));
    match digits {
        Some(digits) if (1..=9).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse().map(Some).map_err(|_| ApiError::VersionMismatch)
        }
        _ => Err(ApiError::VersionMismatch),
    }
}
