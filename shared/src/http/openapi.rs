//! OpenAPI pieces every HTTP function shares: the bearer scheme and the error answers.

use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, ToSchema};

use crate::credit::model::ChangeAccountRequest;

/// Declares the `bearer` JWT security scheme the operations refer to.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut OpenApi) {
        api.components.get_or_insert_with(Default::default).add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// Completes a document once its routes are collected: the error answers, and the bodies that
/// must name at least one field.
pub fn complete(api: &mut OpenApi) {
    document_errors(api);
    require_a_property::<ChangeAccountRequest>(api);
}

/// States `minProperties: 1` on `T`'s schema, when the document has it: utoipa 5.5 writes the
/// derive's `min_properties` as `maxProperties`.
fn require_a_property<T: ToSchema>(api: &mut OpenApi) {
    let schema = api.components.as_mut().and_then(|components| components.schemas.get_mut(T::name().as_ref()));
    if let Some(RefOr::T(Schema::Object(object))) = schema {
        object.min_properties = Some(1);
    }
}

/// Completes every operation's error answers, so the document says what the service answers:
/// problem bodies are `application/problem+json`, and the answers every route can give are
/// listed where they apply (400 malformed request or id, 401 and 403 with a token's scopes,
/// 404 with a path id, 422 with a body or query, 503 when the database is unavailable).
fn document_errors(api: &mut OpenApi) {
    for (path, item) in api.paths.paths.iter_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.patch, &mut item.put, &mut item.delete];
        for operation in operations.into_iter().flatten() {
            let has_query =
                operation.parameters.iter().flatten().any(|parameter| parameter.parameter_in == ParameterIn::Query);
            let has_body = operation.request_body.is_some();
            let secured = operation.security.as_ref().is_some_and(|requirements| !requirements.is_empty());
            let responses = &mut operation.responses.responses;
            for response in responses.values_mut() {
                if let RefOr::T(response) = response {
                    if let Some(content) = response.content.shift_remove("application/json") {
                        let media = if is_problem(&content) { "application/problem+json" } else { "application/json" };
                        response.content.insert(media.to_string(), content);
                    }
                }
            }
            let standard = [
                (
                    "400",
                    has_body || path.contains('{'),
                    "malformed_request: the body is not JSON or an id is not a UUID",
                ),
                ("401", secured, "unauthorized: no valid bearer token"),
                ("403", secured, "forbidden: the token lacks the operation's scope"),
                ("404", path.contains('{'), "not_found: no such resource in this organization"),
                ("422", has_body || has_query, "validation_failed, with `errors` naming each field"),
                ("503", true, "service_unavailable: retry after `Retry-After` seconds"),
            ];
            for (status, applies, description) in standard {
                if applies {
                    responses.entry(status.to_string()).or_insert_with(|| RefOr::T(problem_response(description)));
                }
            }
        }
    }
}

fn is_problem(content: &Content) -> bool {
    matches!(&content.schema, Some(RefOr::Ref(reference)) if reference.ref_location.ends_with("/Problem"))
}

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", Content::new(Some(Ref::from_schema_name("Problem"))))
        .build()
}
