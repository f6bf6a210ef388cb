//! OpenAPI pieces every HTTP function shares: the bearer scheme and the document route.

use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa::Modify;

/// Declares the `bearer` JWT security scheme the operations refer to.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut OpenApi) {
        api.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
    }
}

/// Adds `GET /api/v1/openapi.json` serving `api`, and problem+json 404s for unknown routes.
pub fn finish(router: Router, api: OpenApi) -> Router {
    let api = Arc::new(api);
    router
        .route(
            "/api/v1/openapi.json",
            get(move || async move { Json(api.as_ref().clone()) }),
        )
        .fallback(|| async { crate::error::ApiError::NotFound })
}
