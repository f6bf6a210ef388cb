//! The one error type of the HTTP boundary and its RFC 9457 problem+json mapping.

use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use serde::Serialize;

/// One invalid input field, named by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Which unique value of a customer already exists in the organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateField {
    Email,
    Phone,
    Document,
}

impl DuplicateField {
    fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Document => "document",
        }
    }
}

/// Everything a request can fail with. Mapped to HTTP in exactly one place, `into_response`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("forbidden: missing scope {0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("duplicate {}", .0.name())]
    Duplicate(DuplicateField),
    #[error("version mismatch")]
    VersionMismatch,
    #[error("conflict: {code}")]
    Conflict { code: &'static str, detail: &'static str },
    /// A well-formed request the rules refuse (422), with fields that help the caller decide.
    #[error("rejected: {code}")]
    Rejected { code: &'static str, detail: String, extra: serde_json::Value },
    /// The database is unreachable, restarting or too busy (a timeout fired): retry shortly.
    #[error("service unavailable")]
    Unavailable(anyhow::Error),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

/// Seconds a client should wait before retrying an `Unavailable` answer.
pub const RETRY_AFTER_SECONDS: u32 = 1;

impl From<anyhow::Error> for ApiError {
    /// A failure the caller can retry (see [`crate::db::is_transient`]) is `Unavailable`; any
    /// other is `Unexpected`.
    fn from(error: anyhow::Error) -> Self {
        if crate::db::is_transient(&error) {
            Self::Unavailable(error)
        } else {
            Self::Unexpected(error)
        }
    }
}

impl ApiError {
    /// A 422 for a single field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        match self {
            Self::Unauthorized(why) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                format!("A valid bearer token is required: {why}."),
            ),
            Self::Forbidden(scope) => {
                (StatusCode::FORBIDDEN, "forbidden", "Forbidden", format!("The token lacks the scope `{scope}`."))
            }
            Self::NotFound => {
                (StatusCode::NOT_FOUND, "not_found", "Not Found", "No such resource in this organization.".into())
            }
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method Not Allowed",
                "This route does not accept that method.".into(),
            ),
            Self::Malformed(detail) => {
                (StatusCode::BAD_REQUEST, "malformed_request", "Malformed Request", detail.clone())
            }
            Self::Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation Failed",
                "One or more fields are invalid; see `errors`.".into(),
            ),
            Self::Duplicate(field) => (
                StatusCode::CONFLICT,
                match field {
                    DuplicateField::Email => "duplicate_email",
                    DuplicateField::Phone => "duplicate_phone",
                    DuplicateField::Document => "duplicate_document",
                },
                "Duplicate Customer",
                format!("Another customer of this organization has the same {}.", field.name()),
            ),
            Self::VersionMismatch => (
                StatusCode::PRECONDITION_FAILED,
                "version_mismatch",
                "Version Mismatch",
                "The resource changed since it was read; fetch it again and retry with its ETag.".into(),
            ),
            Self::Conflict { code, detail } => (StatusCode::CONFLICT, code, "Conflict", (*detail).into()),
            Self::Rejected { code, detail, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code, "Rejected", detail.clone()),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Service Unavailable",
                "The service is briefly unable to reach its database or timed out; retry after the \
                 `Retry-After` seconds. A retried write with the same order id, payment id or \
                 `Idempotency-Key` is applied once."
                    .into(),
            ),
            Self::Unexpected(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal Server Error",
                "The request could not be completed; retry later.".into(),
            ),
        }
    }
}

/// The cause chain of an error, without PostgreSQL's DETAIL and WHERE lines, which can
/// carry row values (personal data).
pub fn loggable(error: &anyhow::Error) -> String {
    error
        .chain()
        .map(|cause| match cause.downcast_ref::<tokio_postgres::Error>().and_then(|e| e.as_db_error()) {
            Some(db) => {
                format!("{} {} (constraint {})", db.code().code(), db.message(), db.constraint().unwrap_or("-"))
            }
            None => match cause.downcast_ref::<tokio_postgres::error::DbError>() {
                Some(db) => format!("{} {}", db.code().code(), db.message()),
                None => cause.to_string(),
            },
        })
        .collect::<Vec<_>>()
        .join(": ")
}

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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title, detail) = self.parts();
        match &self {
            Self::Unexpected(cause) => tracing::error!(error = %loggable(cause), "request failed"),
            Self::Unavailable(cause) => tracing::warn!(error = %loggable(cause), "database unavailable"),
            other => tracing::info!(code, error = %other, "request rejected"),
        }
        let (errors, extra) = match self {
            Self::Validation(errors) => (Some(errors), None),
            Self::Rejected { extra: serde_json::Value::Object(extra), .. } => (None, Some(extra)),
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
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Collects field errors so one response names every invalid field.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    /// Keeps the value, or records the error under `field` and yields `None`.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        parsed.map_err(|message| self.errors.push(FieldError::new(field, message))).ok()
    }

    /// Like `check` for an optional input: absent stays absent.
    pub fn check_opt<T, I>(
        &mut self,
        field: &str,
        input: Option<I>,
        parse: impl FnOnce(I) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match input {
            None => Some(None),
            Some(raw) => self.check(field, parse(raw)).map(Some),
        }
    }

    pub fn reject(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// The 422 for what was recorded; used where a required value came back `None`.
    pub fn into_error(self) -> ApiError {
        ApiError::Validation(self.errors)
    }

    /// `Err` with every recorded error, or `Ok` when there were none.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}
