//! HTTP routes of the `credit` function: parse, call one operation, map.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::model::{
    ApproveRequest, ChangeAccountRequest, CheckRequest, CheckResponse, CreditAccount, CreditPayment, CreditUsage,
    OpenAccountRequest, PaymentRequest, StatusChangeRequest, UsageStatus, UseCreditRequest,
};
use super::{Statement, StatusAction, Written};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::openapi::BearerAuth;
use crate::http::IfMatchHeader;
use crate::http::{
    etag, function_router, if_match, AppState, Documented, JsonBody, OptionalJsonBody, Path, Problem, Query,
};
use crate::paging::{Limit, ListResponse, PageRequest};

#[derive(OpenApi)]
#[openapi(
    info(title = "Customer service: credit", version = "1.0.0",
         description = "Store-credit accounts: open, approve, limits and terms, use, release, payments, statement."),
    modifiers(&BearerAuth),
    components(schemas(Problem))
)]
struct CreditApi;

/// The `credit` function's router, with its OpenAPI document at `/api/v1/openapi.json`.
pub fn router(state: AppState) -> axum::Router {
    function_router(api(), state)
}

/// The `credit` routes and their OpenAPI document.
pub fn api() -> Documented {
    let routes = OpenApiRouter::new()
        .routes(routes!(get_account, open_account, change_account))
        .routes(routes!(approve))
        .routes(routes!(suspend))
        .routes(routes!(reactivate))
        .routes(routes!(cancel))
        .routes(routes!(check))
        .routes(routes!(list_usages, use_credit))
        .routes(routes!(release))
        .routes(routes!(list_payments, record_payment))
        .routes(routes!(statement));
    (CreditApi::openapi(), routes)
}

fn account_response(status: StatusCode, account: CreditAccount) -> Response {
    (status, [(header::ETAG, etag(account.version))], Json(account)).into_response()
}

fn written<T: serde::Serialize>(result: Written<T>) -> Response {
    match result {
        Written::Created(body) => (StatusCode::CREATED, Json(body)).into_response(),
        Written::Replayed(body) => (StatusCode::OK, Json(body)).into_response(),
    }
}

/// The customer's credit account.
#[utoipa::path(get, path = "/customers/{id}/credit", tag = "credit", params(("id" = Uuid, Path)),
    responses((status = 200, body = CreditAccount), (status = 404, body = Problem)),
    security(("bearer" = ["credit:read"])))]
async fn get_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let account = super::get_account(&state.app, &caller, id).await?;
    Ok(account_response(StatusCode::OK, account))
}

/// Open a credit account; it starts `pending` until approved.
#[utoipa::path(post, path = "/customers/{id}/credit", tag = "credit", params(("id" = Uuid, Path)),
    request_body = OpenAccountRequest,
    responses((status = 201, body = CreditAccount), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "credit_account_exists or customer_erased"),
        (status = 422, body = Problem)),
    security(("bearer" = ["credit:write"])))]
async fn open_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let new = body.parse::<OpenAccountRequest>()?.validate()?;
    let account = super::open(&state.app, &caller, id, new).await?;
    Ok(account_response(StatusCode::CREATED, account))
}

/// Change the limit (needs `credit:approve`; never below `credit_used`) or the payment term.
#[utoipa::path(patch, path = "/customers/{id}/credit", tag = "credit",
    params(("id" = Uuid, Path), IfMatchHeader),
    request_body = ChangeAccountRequest,
    responses((status = 200, body = CreditAccount), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "credit_cancelled"), (status = 412, body = Problem),
        (status = 422, body = Problem, description = "limit_below_used or validation_failed")),
    security(("bearer" = ["credit:write", "credit:approve"])))]
async fn change_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let expected_version = if_match(&headers)?;
    let change = body.parse::<ChangeAccountRequest>()?.validate()?;
    let account = super::change_terms(&state.app, &caller, id, expected_version, change).await?;
    Ok(account_response(StatusCode::OK, account))
}

/// Approve a pending account; records the caller as `approved_by`. State the limit you approve
/// (`{"credit_limit": "5000.00"}`): if the proposal is another limit, nothing is approved.
#[utoipa::path(post, path = "/customers/{id}/credit/approve", tag = "credit", params(("id" = Uuid, Path)),
    request_body(content = Option<ApproveRequest>, description = "Optional; without it the proposed limit is approved."),
    responses((status = 200, body = CreditAccount), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "approval_limit_mismatch or invalid_status_transition")),
    security(("bearer" = ["credit:approve"])))]
async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    body: OptionalJsonBody,
) -> Result<Response, ApiError> {
    let stated_limit = body.parse::<ApproveRequest>()?.map(|request| request.credit_limit);
    let account = super::approve(&state.app, &caller, id, stated_limit).await?;
    Ok(account_response(StatusCode::OK, account))
}

async fn status_change(
    state: AppState,
    caller: Caller,
    id: Uuid,
    body: JsonBody,
    action: StatusAction,
) -> Result<Response, ApiError> {
    let reason = body.parse::<StatusChangeRequest>()?.validate()?;
    let account = super::change_status(&state.app, &caller, id, action, Some(&reason)).await?;
    Ok(account_response(StatusCode::OK, account))
}

/// Suspend an approved account; no credit can be used until it is reactivated.
#[utoipa::path(post, path = "/customers/{id}/credit/suspend", tag = "credit", params(("id" = Uuid, Path)),
    request_body = StatusChangeRequest,
    responses((status = 200, body = CreditAccount), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = ["credit:write"])))]
async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    status_change(state, caller, id, body, StatusAction::Suspend).await
}

/// Reactivate a suspended account.
#[utoipa::path(post, path = "/customers/{id}/credit/reactivate", tag = "credit", params(("id" = Uuid, Path)),
    request_body = StatusChangeRequest,
    responses((status = 200, body = CreditAccount), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = ["credit:approve"])))]
async fn reactivate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    status_change(state, caller, id, body, StatusAction::Reactivate).await
}

/// Cancel an account for good; what is owed can still be paid.
#[utoipa::path(post, path = "/customers/{id}/credit/cancel", tag = "credit", params(("id" = Uuid, Path)),
    request_body = StatusChangeRequest,
    responses((status = 200, body = CreditAccount), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = ["credit:approve"])))]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    status_change(state, caller, id, body, StatusAction::Cancel).await
}

/// Whether an amount could be used now (reserves nothing).
#[utoipa::path(post, path = "/customers/{id}/credit/check", tag = "credit", params(("id" = Uuid, Path)),
    request_body = CheckRequest,
    responses((status = 200, body = CheckResponse), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["credit:read"])))]
async fn check(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    body: JsonBody,
) -> Result<Json<CheckResponse>, ApiError> {
    let amount = body.parse::<CheckRequest>()?.amount;
    Ok(Json(super::check(&state.app, &caller, id, amount).await?))
}

/// Charge an order to the customer's credit. The same order and amount again answers the
/// first usage with 200; another amount is 409.
#[utoipa::path(post, path = "/customers/{id}/credit/usages", tag = "credit", params(("id" = Uuid, Path)),
    request_body = UseCreditRequest,
    responses((status = 201, body = CreditUsage), (status = 200, body = CreditUsage, description = "identical replay"),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "order_amount_mismatch"),
        (status = 422, body = Problem, description = "insufficient_credit (with credit_available), credit_not_approved (with account_status)")),
    security(("bearer" = ["credit:write"])))]
async fn use_credit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let request = body.parse::<UseCreditRequest>()?;
    let result = super::use_credit(&state.app, &caller, id, request.order_id, request.amount).await?;
    Ok(written(result))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UsagesQuery {
    status: Option<UsageStatus>,
    #[param(inline)]
    limit: Option<Limit>,
    cursor: Option<String>,
}

/// The account's usages, oldest first.
#[utoipa::path(get, path = "/customers/{id}/credit/usages", tag = "credit", params(("id" = Uuid, Path), UsagesQuery),
    responses((status = 200, body = ListResponse<CreditUsage>), (status = 404, body = Problem)),
    security(("bearer" = ["credit:read"])))]
async fn list_usages(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(query): Query<UsagesQuery>,
) -> Result<Json<ListResponse<CreditUsage>>, ApiError> {
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    Ok(Json(super::list_usages(&state.app, &caller, id, query.status, page).await?))
}

/// Release an order's usage; releasing again is a no-op answering the released usage.
#[utoipa::path(post, path = "/customers/{id}/credit/usages/{order_id}/release", tag = "credit",
    params(("id" = Uuid, Path), ("order_id" = Uuid, Path)),
    responses((status = 200, body = CreditUsage), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "usage_already_paid")),
    security(("bearer" = ["credit:write"])))]
async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, order_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<CreditUsage>, ApiError> {
    Ok(Json(super::release(&state.app, &caller, id, order_id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    #[param(inline)]
    limit: Option<Limit>,
    cursor: Option<String>,
}

/// Record a payment: settles the oldest open usages first. Idempotent by `payment_id` or the
/// `Idempotency-Key` header.
#[utoipa::path(post, path = "/customers/{id}/credit/payments", tag = "credit",
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, max_length = 255, pattern = "^[ -~]*[!-~][ -~]*$",
        description = "Visible ASCII; the same key and payment again answer the first payment")),
    request_body = PaymentRequest,
    responses((status = 201, body = CreditPayment), (status = 200, body = CreditPayment, description = "identical replay"),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "idempotency_conflict"),
        (status = 422, body = Problem, description = "payment_exceeds_balance or validation_failed")),
    security(("bearer" = ["credit:write"])))]
async fn record_payment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let key = headers
        .get("idempotency-key")
        .map(|value| value.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?;
    let payment = body.parse::<PaymentRequest>()?.validate(key)?;
    Ok(written(super::record_payment(&state.app, &caller, id, payment).await?))
}

/// The account's payments, oldest first.
#[utoipa::path(get, path = "/customers/{id}/credit/payments", tag = "credit", params(("id" = Uuid, Path), PageQuery),
    responses((status = 200, body = ListResponse<CreditPayment>), (status = 404, body = Problem)),
    security(("bearer" = ["credit:read"])))]
async fn list_payments(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(query): Query<PageQuery>,
) -> Result<Json<ListResponse<CreditPayment>>, ApiError> {
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    Ok(Json(super::list_payments(&state.app, &caller, id, page).await?))
}

/// Every movement of the account in order, with `credit_used` replayed.
#[utoipa::path(get, path = "/customers/{id}/credit/statement", tag = "credit", params(("id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Statement), (status = 404, body = Problem)),
    security(("bearer" = ["credit:read"])))]
async fn statement(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Statement>, ApiError> {
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    Ok(Json(super::statement(&state.app, &caller, id, page).await?))
}
