//! The one mapping of [`ApiError`] to HTTP: RFC 9457 problem+json.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use crate::error::{ApiError, FieldError};

/// Seconds a client should wait before retrying a `service_unavailable` answer.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// The RFC 9457 body every error answers with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// Extension members of the problem, such as `credit_available`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

fn status_and_title(error: &ApiError) -> (StatusCode, &'static str) {
    match error {
        ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
        ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
        ApiError::NotFound => (StatusCode::NOT_FOUND, "Not Found"),
        ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
        ApiError::Malformed(_) => (StatusCode::BAD_REQUEST, "Malformed Request"),
        ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed"),
        ApiError::Duplicate(_) => (StatusCode::CONFLICT, "Duplicate Customer"),
        ApiError::VersionMismatch => (StatusCode::PRECONDITION_FAILED, "Version Mismatch"),
        ApiError::Conflict { .. } => (StatusCode::CONFLICT, "Conflict"),
        ApiError::Rejected { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Rejected"),
        ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        ApiError::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let (status, title) = status_and_title(&self);
        let (code, detail) = (self.code(), self.detail());
        let (errors, extra) = match self {
            ApiError::Validation(errors) => (Some(errors), None),
            ApiError::Rejected { extra: serde_json::Value::Object(extra), .. } => (None, Some(extra)),
            _ => (None, None),
        };
        let problem = Problem {
            problem_type: format!("urn:customer-service:problem:{code}"),
            title,
            status: status.as_u16(),
            detail,
            code,
            errors,
            extra,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
