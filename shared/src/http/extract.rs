//! Request extractors whose rejections are our problem+json, naming the field and never
//! echoing the caller's value back.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::auth::{Caller, TokenVerifier};
use crate::error::{ApiError, FieldError};

/// The verified caller of a request, from its bearer token.
impl<S> FromRequestParts<S> for Caller
where
    Arc<TokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let authorization = parts.headers.get(http::header::AUTHORIZATION).map(|value| value.as_bytes());
        Arc::<TokenVerifier>::from_ref(state).verify_authorization(authorization).await
    }
}

/// A JSON body, checked for its content type now and parsed later with `parse`, so the
/// caller's scopes can be checked before the body is judged.
pub struct JsonBody(Bytes);

impl JsonBody {
    /// Malformed JSON is a 400; a JSON value of the wrong shape is a 422 naming the field.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let json: serde_json::Value =
            serde_json::from_slice(&self.0).map_err(|_| ApiError::Malformed("The body is not valid JSON.".into()))?;
        if !json.is_object() {
            return Err(ApiError::invalid("body", "must be a JSON object"));
        }
        serde_path_to_error::deserialize(json).map_err(|error| {
            let path = error.path().to_string();
            data_error(&path, &error.into_inner().to_string())
        })
    }
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::Malformed("Send the body as `Content-Type: application/json`.".into()));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|_| ApiError::Malformed("The body could not be read or is larger than allowed.".into()))?;
        Ok(Self(bytes))
    }
}

/// A JSON body the caller may leave out: an empty body (with any or no content type) or JSON
/// `null` is `None`.
pub struct OptionalJsonBody(Option<JsonBody>);

impl OptionalJsonBody {
    pub fn parse<T: DeserializeOwned>(&self) -> Result<Option<T>, ApiError> {
        self.0.as_ref().map(JsonBody::parse).transpose()
    }
}

impl<S: Send + Sync> FromRequest<S> for OptionalJsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|_| ApiError::Malformed("The body could not be read or is larger than allowed.".into()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
            return Ok(Self(None));
        }
        let body = JsonBody::from_request(Request::from_parts(parts, bytes.into()), state).await?;
        Ok(Self(Some(body)))
    }
}

/// Path parameters; a value of the wrong shape (not a UUID) is a 400.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|_| ApiError::Malformed("A path parameter is not a valid id (UUID).".into()))
    }
}

/// Query parameters; an unknown value or a wrong type is a 422 naming the parameter.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map(Self).map_err(|error| {
            let path = error.path().to_string();
            data_error(&path, &error.into_inner().to_string())
        })
    }
}

/// Turns a serde data error into a field error without the offending value.
fn data_error(path: &str, message: &str) -> ApiError {
    let message = message.split(" at line ").next().unwrap_or(message);
    let path = if path == "." { "" } else { path };
    let quoted = message.split('`').nth(1).unwrap_or_default();
    // A missing field's path is its parent's; an unknown field's path already ends with it.
    let join = |name: &str| match path {
        "" => name.to_string(),
        parent if parent == name || parent.ends_with(&format!(".{name}")) => parent.to_string(),
        parent => format!("{parent}.{name}"),
    };
    let (field, text) = if message.starts_with("missing field") {
        (join(quoted), "is required".to_string())
    } else if message.starts_with("unknown field") {
        (join(quoted), "is not a known field".to_string())
    } else if message.starts_with("UUID parsing failed") {
        (path.to_string(), "must be a UUID".to_string())
    } else if let Some((_, expected)) = message.rsplit_once("expected ") {
        let expected = expected.split(", found").next().unwrap_or(expected);
        (path.to_string(), format!("must be {expected}"))
    } else if message.starts_with("must ") {
        (path.to_string(), message.to_string())
    } else {
        (path.to_string(), "is invalid".to_string())
    };
    let field = if field.is_empty() { "body".to_string() } else { field };
    ApiError::Validation(vec![FieldError::new(field, text)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_error(error: ApiError) -> FieldError {
        match error {
            ApiError::Validation(mut errors) if errors.len() == 1 => errors.remove(0),
            other => panic!("expected one field error, got {other:?}"),
        }
    }

    #[test]
    fn data_errors_name_the_field_and_hide_the_value() {
        let error = only_error(data_error("status", "unknown variant `secret`, expected one of `active`, `inactive`"));
        assert_eq!(error.field, "status");
        assert_eq!(error.message, "must be one of `active`, `inactive`");

        let error = only_error(data_error(".", "missing field `first_name` at line 1 column 2"));
        assert_eq!(error.field, "first_name");
        assert_eq!(error.message, "is required");

        let error = only_error(data_error("email", "invalid type: integer `61234567`, expected a string"));
        assert!(!error.message.contains("61234567"), "{}", error.message);
    }
}
