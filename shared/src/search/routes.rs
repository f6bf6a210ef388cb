//! HTTP routes of the `search` function.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::query::SearchQuery;
use super::{SearchFilter, SearchHit};
use crate::auth::Caller;
use crate::customers::model::{CustomerStatus, CustomerType};
use crate::error::ApiError;
use crate::http::openapi::BearerAuth;
use crate::http::{function_router, AppState, Documented, Problem, Query};
use crate::loyalty::LoyaltyTier;
use crate::paging::{Limit, ListResponse, PageRequest};
use crate::segments::SegmentCode;

#[derive(OpenApi)]
#[openapi(
    info(title = "Customer service: search", version = "1.0.0",
         description = "Find customers by name, email, phone or document, ranked."),
    modifiers(&BearerAuth),
    components(schemas(Problem, SegmentCode))
)]
struct SearchApi;

/// The `search` function's router, with its OpenAPI document at `/api/v1/openapi.json`.
pub fn router(state: AppState) -> axum::Router {
    function_router(api(), state)
}

/// The `search` route and its OpenAPI document.
pub fn api() -> Documented {
    (SearchApi::openapi(), OpenApiRouter::new().routes(routes!(search)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SearchParams {
    /// Name (any order, partial, accents and typos tolerated), email or a fragment of it, phone
    /// digits in any format, or a document number. At most 200 characters are used.
    #[param(schema_with = super::query::query_schema, required = true)]
    q: String,
    status: Option<CustomerStatus>,
    customer_type: Option<CustomerType>,
    loyalty_tier: Option<LoyaltyTier>,
    segment: Option<SegmentCode>,
    #[param(inline)]
    limit: Option<Limit>,
    cursor: Option<String>,
}

/// Ranked customers matching `q`: exact document first, then phone and email, then names.
#[utoipa::path(get, path = "/customers/search", tag = "search", params(SearchParams),
    responses((status = 200, body = ListResponse<SearchHit>), (status = 422, body = Problem)),
    security(("bearer" = ["customers:read"])))]
async fn search(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<SearchParams>,
) -> Result<Json<ListResponse<SearchHit>>, ApiError> {
    let query = SearchQuery::parse(&params.q).ok_or_else(|| ApiError::invalid("q", "must not be empty"))?;
    let page = PageRequest::parse(params.limit, params.cursor.as_deref())?;
    let filter = SearchFilter {
        status: params.status,
        customer_type: params.customer_type,
        loyalty_tier: params.loyalty_tier,
        segment: params.segment,
    };
    Ok(Json(super::search(&state.app, &caller, &query, &filter, page).await?))
}
