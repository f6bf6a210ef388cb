//! Every function's HTTP routes behind one router, for the container server (`:8007`).

use crate::http::{combined_router, AppState};

/// The customers, credit, search and segments routes with one OpenAPI document at
/// `/api/v1/openapi.json`.
pub fn all(state: AppState) -> axum::Router {
    let functions = [
        crate::customers::routes::api(),
        crate::credit::routes::api(),
        crate::search::routes::api(),
        crate::segments::routes::api(),
    ];
    combined_router(functions, state)
}
