//! HTTP routes of the `customers` function: parse, call one operation, map.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::addresses::{Address, CreateAddressRequest, PatchAddressRequest};
use super::model::{CreateCustomerRequest, Customer, CustomerStatus, CustomerType, PatchCustomerRequest};
use super::store::ListFilter;
use super::views::{Customer360, CustomerExport, LoyaltyCard};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::openapi::BearerAuth;
use crate::http::{
    etag, function_router, if_match, AppState, Documented, IfMatchHeader, JsonBody, Path, Problem, Query,
};
use crate::loyalty::LoyaltyTier;
use crate::money::Money;
use crate::paging::{Limit, ListResponse, PageRequest};

#[derive(OpenApi)]
#[openapi(
    info(title = "Customer service: customers", version = "1.0.0",
         description = "Customer master: customers, addresses, erasure, 360 view, loyalty tier."),
    modifiers(&BearerAuth),
    components(schemas(Problem))
)]
struct CustomersApi;

/// The `customers` function's router, with its OpenAPI document at `/api/v1/openapi.json`.
pub fn router(state: AppState) -> axum::Router {
    function_router(api(), state)
}

/// The `customers` routes and their OpenAPI document.
pub fn api() -> Documented {
    let routes = OpenApiRouter::new()
        .routes(routes!(list_customers, create_customer))
        .routes(routes!(get_customer, patch_customer, erase_customer))
        .routes(routes!(get_customer_360))
        .routes(routes!(export_customer))
        .routes(routes!(get_loyalty))
        .routes(routes!(list_addresses, add_address))
        .routes(routes!(patch_address, delete_address));
    (CustomersApi::openapi(), routes)
}

fn location(customer_id: Uuid) -> String {
    format!("/api/v1/customers/{customer_id}")
}

/// A JSON body with the row's version as `ETag`.
fn tagged<T: Serialize>(status: StatusCode, version: i32, body: T) -> Response {
    (status, [(header::ETAG, etag(version))], Json(body)).into_response()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListCustomersQuery {
    status: Option<CustomerStatus>,
    customer_type: Option<CustomerType>,
    loyalty_tier: Option<LoyaltyTier>,
    /// Page size, 1 to 200 (default 50).
    #[param(inline)]
    limit: Option<Limit>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List customers in creation order, optionally filtered.
#[utoipa::path(get, path = "/customers", tag = "customers", params(ListCustomersQuery),
    responses((status = 200, body = ListResponse<Customer>), (status = 422, body = Problem)),
    security(("bearer" = ["customers:read"])))]
async fn list_customers(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListCustomersQuery>,
) -> Result<Json<ListResponse<Customer>>, ApiError> {
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let filter =
        ListFilter { status: query.status, customer_type: query.customer_type, loyalty_tier: query.loyalty_tier };
    Ok(Json(super::list(&state.app, &caller, filter, page).await?))
}

/// Create a customer. Email, phone and document are unique within the organization.
#[utoipa::path(post, path = "/customers", tag = "customers", request_body = CreateCustomerRequest,
    responses((status = 201, body = Customer, headers(("Location" = String), ("ETag" = String))),
        (status = 409, body = Problem, description = "duplicate_email, duplicate_phone or duplicate_document"),
        (status = 422, body = Problem)),
    security(("bearer" = ["customers:write"])))]
async fn create_customer(State(state): State<AppState>, caller: Caller, body: JsonBody) -> Result<Response, ApiError> {
    let new = body.parse::<CreateCustomerRequest>()?.validate()?;
    let customer = super::create(&state.app, &caller, new).await?;
    let mut response = tagged(StatusCode::CREATED, customer.version, &customer);
    response
        .headers_mut()
        .insert(header::LOCATION, location(customer.customer_id).parse().expect("a path is a valid header"));
    Ok(response)
}

/// One customer, with its version as `ETag`.
#[utoipa::path(get, path = "/customers/{id}", tag = "customers", params(("id" = Uuid, Path)),
    responses((status = 200, body = Customer, headers(("ETag" = String))), (status = 404, body = Problem)),
    security(("bearer" = ["customers:read"])))]
async fn get_customer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let customer = super::get(&state.app, &caller, id).await?;
    Ok(tagged(StatusCode::OK, customer.version, customer))
}

/// Partial update: absent fields stay, `null` clears. `If-Match` makes it conditional.
#[utoipa::path(patch, path = "/customers/{id}", tag = "customers", params(("id" = Uuid, Path), IfMatchHeader),
    request_body = PatchCustomerRequest,
    responses((status = 200, body = Customer, headers(("ETag" = String))), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["customers:write"])))]
async fn patch_customer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let expected_version = if_match(&headers)?;
    let patch = body.parse::<PatchCustomerRequest>()?.validate()?;
    let customer = super::update(&state.app, &caller, id, expected_version, patch).await?;
    Ok(tagged(StatusCode::OK, customer.version, customer))
}

/// Erase the person's data (right to be forgotten). Ids, status history and financial rows stay.
///
/// Erasure anonymizes; it does not delete: afterwards `GET /customers/{id}` still answers 200
/// with the personal fields `null` and `erased_at` set, erasing again answers 204, and a
/// `PATCH` answers 409 `customer_erased`.
#[utoipa::path(delete, path = "/customers/{id}", tag = "customers", params(("id" = Uuid, Path)),
    responses((status = 204, description = "Erased: the customer stays, anonymized"), (status = 404, body = Problem)),
    security(("bearer" = ["customers:admin"])))]
async fn erase_customer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    super::erase(&state.app, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The 360 view: customer, credit, segment, overdue amount and default addresses.
#[utoipa::path(get, path = "/customers/{id}/360", tag = "customers", params(("id" = Uuid, Path)),
    responses((status = 200, body = Customer360), (status = 404, body = Problem)),
    security(("bearer" = ["customers:read"])))]
async fn get_customer_360(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Customer360>, ApiError> {
    Ok(Json(super::customer_360(&state.app, &caller, id).await?))
}

/// Everything held about the person (data portability).
#[utoipa::path(get, path = "/customers/{id}/export", tag = "customers", params(("id" = Uuid, Path)),
    responses((status = 200, body = CustomerExport), (status = 404, body = Problem)),
    security(("bearer" = ["customers:read"])))]
async fn export_customer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<CustomerExport>, ApiError> {
    Ok(Json(super::export(&state.app, &caller, id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LoyaltyQuery {
    /// A purchase amount such as `150.00`: the answer then includes the points it earns.
    #[param(schema_with = crate::money::positive_schema)]
    amount: Option<String>,
}

/// Loyalty tier, its multiplier and benefits; with `amount`, the points that purchase earns.
#[utoipa::path(get, path = "/customers/{id}/loyalty", tag = "loyalty", params(("id" = Uuid, Path), LoyaltyQuery),
    responses((status = 200, body = LoyaltyCard), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["customers:read"])))]
async fn get_loyalty(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(query): Query<LoyaltyQuery>,
) -> Result<Json<LoyaltyCard>, ApiError> {
    let amount = query
        .amount
        .as_deref()
        .map(Money::parse_positive)
        .transpose()
        .map_err(|message| ApiError::invalid("amount", message))?;
    Ok(Json(super::loyalty(&state.app, &caller, id, amount).await?))
}

/// The customer's addresses.
#[utoipa::path(get, path = "/customers/{id}/addresses", tag = "addresses", params(("id" = Uuid, Path)),
    responses((status = 200, body = ListResponse<Address>, description = "Every address, on one page"),
        (status = 404, body = Problem)),
    security(("bearer" = ["customers:read"])))]
async fn list_addresses(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<ListResponse<Address>>, ApiError> {
    let items = super::list_addresses(&state.app, &caller, id).await?;
    Ok(Json(ListResponse { items, next_cursor: None }))
}

/// Add an address. Marking it default unsets the previous default of that kind.
#[utoipa::path(post, path = "/customers/{id}/addresses", tag = "addresses", params(("id" = Uuid, Path)),
    request_body = CreateAddressRequest,
    responses((status = 201, body = Address, headers(("Location" = String), ("ETag" = String))),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "customer_erased"),
        (status = 422, body = Problem)),
    security(("bearer" = ["customers:write"])))]
async fn add_address(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let fields = body.parse::<CreateAddressRequest>()?.validate()?;
    let address = super::add_address(&state.app, &caller, id, fields).await?;
    let mut response = tagged(StatusCode::CREATED, address.version, &address);
    response.headers_mut().insert(
        header::LOCATION,
        format!("{}/addresses/{}", location(id), address.address_id).parse().expect("a path is a valid header"),
    );
    Ok(response)
}

/// Change an address; `If-Match` makes it conditional.
#[utoipa::path(patch, path = "/customers/{id}/addresses/{address_id}", tag = "addresses",
    params(("id" = Uuid, Path), ("address_id" = Uuid, Path), IfMatchHeader),
    request_body = PatchAddressRequest,
    responses((status = 200, body = Address, headers(("ETag" = String))), (status = 404, body = Problem),
        (status = 412, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = ["customers:write"])))]
async fn patch_address(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, address_id)): Path<(Uuid, Uuid)>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let expected_version = if_match(&headers)?;
    let patch = body.parse::<PatchAddressRequest>()?.validate()?;
    let address = super::update_address(&state.app, &caller, id, address_id, expected_version, patch).await?;
    Ok(tagged(StatusCode::OK, address.version, address))
}

/// Remove an address.
#[utoipa::path(delete, path = "/customers/{id}/addresses/{address_id}", tag = "addresses",
    params(("id" = Uuid, Path), ("address_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = ["customers:write"])))]
async fn delete_address(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, address_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    super::delete_address(&state.app, &caller, id, address_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
