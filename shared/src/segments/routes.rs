//! HTTP routes of the `segments` function: parse, call one operation, map.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::model::{CustomerSegment, RecalculateRequest, SegmentMember, SegmentRun, SegmentsOverview};
use super::SegmentCode;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::openapi::BearerAuth;
use crate::http::{function_router, AppState, Documented, OptionalJsonBody, Path, Problem, Query};
use crate::paging::{Limit, ListResponse, PageRequest};

#[derive(OpenApi)]
#[openapi(
    info(title = "Customer service: segments", version = "1.0.0",
         description = "RFM segments: a customer's scores, segment and why; segment summaries and members; \
                        recalculation of one customer or the whole organization."),
    modifiers(&BearerAuth),
    components(schemas(Problem))
)]
struct SegmentsApi;

/// The `segments` function's router, with its OpenAPI document at `/api/v1/openapi.json`.
pub fn router(state: AppState) -> axum::Router {
    function_router(api(), state)
}

/// The `segments` routes and their OpenAPI document.
pub fn api() -> Documented {
    let routes = OpenApiRouter::new()
        .routes(routes!(get_customer_segment))
        .routes(routes!(recalculate_customer))
        .routes(routes!(overview))
        .routes(routes!(members))
        .routes(routes!(recalculate_organization));
    (SegmentsApi::openapi(), routes)
}

/// The customer's RFM scores, segment and metrics, and why: the run (window, as-of date,
/// breakpoints, rules version) and the rule that matched.
#[utoipa::path(get, path = "/customers/{id}/segment", tag = "segments", params(("id" = Uuid, Path)),
    responses((status = 200, body = CustomerSegment), (status = 404, body = Problem)),
    security(("bearer" = ["segments:read"])))]
async fn get_customer_segment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<CustomerSegment>, ApiError> {
    Ok(Json(super::get_customer_segment(&state.app, &caller, id).await?))
}

/// Rescore one customer now against the last run's breakpoints (the nightly rule and SQL).
#[utoipa::path(post, path = "/customers/{id}/segment/recalculate", tag = "segments", params(("id" = Uuid, Path)),
    responses((status = 200, body = CustomerSegment), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "segments_not_calculated: no run yet")),
    security(("bearer" = ["segments:write"])))]
async fn recalculate_customer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<CustomerSegment>, ApiError> {
    Ok(Json(super::recalculate_customer(&state.app, &caller, id).await?))
}

/// Customers, share and average lifetime value per segment, and the last run.
#[utoipa::path(get, path = "/segments", tag = "segments",
    responses((status = 200, body = SegmentsOverview)),
    security(("bearer" = ["segments:read"])))]
async fn overview(State(state): State<AppState>, caller: Caller) -> Result<Json<SegmentsOverview>, ApiError> {
    Ok(Json(super::overview(&state.app, &caller).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Page size, 1 to 200 (default 50).
    #[param(inline)]
    limit: Option<Limit>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The customers of a segment, in id order.
///
/// A page reads a bounded number of the organization's customers, so a rare segment may answer
/// a short or empty page with a `next_cursor`: the list ends where `next_cursor` is null.
#[utoipa::path(get, path = "/segments/{segment_code}/customers", tag = "segments",
    params(("segment_code" = SegmentCode, Path), PageQuery),
    responses((status = 200, body = ListResponse<SegmentMember>), (status = 422, body = Problem)),
    security(("bearer" = ["segments:read"])))]
async fn members(
    State(state): State<AppState>,
    caller: Caller,
    Path(segment): Path<SegmentCode>,
    Query(query): Query<PageQuery>,
) -> Result<Json<ListResponse<SegmentMember>>, ApiError> {
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    Ok(Json(super::members(&state.app, &caller, segment, page).await?))
}

/// Score the whole organization now (e.g. after importing orders). Optional body:
/// `window_days`, `as_of`, `from_scratch`.
#[utoipa::path(post, path = "/segments/recalculate", tag = "segments",
    request_body(content = Option<RecalculateRequest>, description = "Optional; defaults: 365 days, today."),
    responses((status = 200, body = SegmentRun), (status = 422, body = Problem)),
    security(("bearer" = ["segments:write"])))]
async fn recalculate_organization(
    State(state): State<AppState>,
    caller: Caller,
    body: OptionalJsonBody,
) -> Result<Json<SegmentRun>, ApiError> {
    let request = body.parse::<RecalculateRequest>()?.unwrap_or_default();
    Ok(Json(super::recalculate_organization(&state.app, &caller, request).await?))
}
