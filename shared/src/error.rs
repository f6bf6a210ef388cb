//! The one error type of the operations, whatever the transport: a stable code, a detail
//! fit for the caller, and the fields at fault. Each transport maps it in one place
//! (`http::problem` for problem+json).

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
    pub fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Document => "document",
        }
    }
}

/// Everything an operation can fail with.
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

    /// The stable code callers branch on (`not_found`, `insufficient_credit`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Malformed(_) => "malformed_request",
            Self::Validation(_) => "validation_failed",
            Self::Duplicate(DuplicateField::Email) => "duplicate_email",
            Self::Duplicate(DuplicateField::Phone) => "duplicate_phone",
            Self::Duplicate(DuplicateField::Document) => "duplicate_document",
            Self::VersionMismatch => "version_mismatch",
            Self::Conflict { code, .. } | Self::Rejected { code, .. } => code,
            Self::Unavailable(_) => "service_unavailable",
            Self::Unexpected(_) => "internal_error",
        }
    }

    /// What happened and what to do, for the caller; never a submitted value.
    pub fn detail(&self) -> String {
        match self {
            Self::Unauthorized(why) => format!("A valid bearer token is required: {why}."),
            Self::Forbidden(scope) => format!("The token lacks the scope `{scope}`."),
            Self::NotFound => "No such resource in this organization.".into(),
            Self::MethodNotAllowed => "This route does not accept that method.".into(),
            Self::Malformed(detail) => detail.clone(),
            Self::Validation(_) => "One or more fields are invalid; see `errors`.".into(),
            Self::Duplicate(field) => format!("Another customer of this organization has the same {}.", field.name()),
            Self::VersionMismatch => {
                "The resource changed since it was read; fetch it again and retry with its ETag.".into()
            }
            Self::Conflict { detail, .. } => (*detail).into(),
            Self::Rejected { detail, .. } => detail.clone(),
            Self::Unavailable(_) => {
                "The service is briefly unable to reach its database or timed out; retry after the \
                 `Retry-After` seconds. A retried write with the same order id, payment id or \
                 `Idempotency-Key` is applied once."
                    .into()
            }
            Self::Unexpected(_) => "The request could not be completed; retry later.".into(),
        }
    }

    /// Logs the error as every transport does: the cause of a failure, the code of a refusal.
    pub fn log(&self) {
        match self {
            Self::Unexpected(cause) => tracing::error!(error = %loggable(cause), "request failed"),
            Self::Unavailable(cause) => tracing::warn!(error = %loggable(cause), "database unavailable"),
            other => tracing::info!(code = other.code(), error = %other, "request rejected"),
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
