//! Every function's HTTP routes behind one router, for the container server (`:8007`).

use crate::http::{combined_router, AppState};

/// The customers, credit and search routes with one OpenAPI document at `/api/v1/openapi.json`.
pub fn all(state: AppState) -> axum::Router {
    combined_router(
        [crate::customers::routes::api(), crate::credit::routes::api(), crate::search::routes::api()],
        state,
    )
}
