//! The one mapping of [`ApiError`] to gRPC: a status code, the detail as message, and the
//! JSON API's stable code in the `error-code` metadata.

use shared::error::ApiError;
use tonic::{Code, Status};

/// The status code for an error of the operations.
pub fn code_of(error: &ApiError) -> Code {
    match error {
        ApiError::Unauthorized(_) => Code::Unauthenticated,
        ApiError::Forbidden(_) => Code::PermissionDenied,
        ApiError::NotFound => Code::NotFound,
        ApiError::MethodNotAllowed => Code::Unimplemented,
        ApiError::Malformed(_) | ApiError::Validation(_) => Code::InvalidArgument,
        ApiError::Duplicate(_) => Code::AlreadyExists,
        ApiError::VersionMismatch => Code::Aborted,
        ApiError::Conflict { code, .. } => match *code {
            "credit_account_exists" => Code::AlreadyExists,
            "order_amount_mismatch" | "idempotency_conflict" | "payment_in_progress" => Code::Aborted,
            _ => Code::FailedPrecondition,
        },
        ApiError::Rejected { .. } => Code::FailedPrecondition,
        ApiError::Unavailable(_) => Code::Unavailable,
        ApiError::Unexpected(_) => Code::Internal,
    }
}

/// The status a failed call answers with; logged as the HTTP API logs its errors.
pub fn status_of(error: ApiError) -> Status {
    error.log();
    let mut message = error.detail();
    if let ApiError::Validation(fields) = &error {
        let named: Vec<String> = fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect();
        message = format!("{message} {}", named.join("; "));
    }
    if let ApiError::Rejected { extra: serde_json::Value::Object(extra), .. } = &error {
        let facts: Vec<String> = extra.iter().map(|(key, value)| format!("{key} = {value}")).collect();
        message = format!("{message} ({})", facts.join(", "));
    }
    let mut status = Status::new(code_of(&error), message);
    status.metadata_mut().insert("error-code", error.code().parse().expect("codes are ASCII"));
    status
}
