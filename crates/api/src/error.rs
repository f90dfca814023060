//! Errors as the API gives them: a status code and
//! `{"error": {"code", "message", "field"}}`. Bad input is never a 500.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), field: None }
    }

    /// A field that does not pass validation (422).
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
    }

    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "api: backend unavailable");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "temporarily unavailable, try again")
    }
}

impl ApiError {
    /// The disk is full (507, RFC 4918): nothing was accepted; the client
    /// may retry once space is freed.
    pub fn storage_full(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "api: refused, the disk is full");
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
            "the server's storage is full; nothing was accepted, try again later",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            tracing::info!(status = self.status.as_u16(), code = self.code, field = ?self.field, message = %self.message, "api: refused");
        }
        let body = json!({"error": {"code": self.code, "message": self.message, "field": self.field}});
        (self.status, Json(body)).into_response()
    }
}

impl From<record::RecordError> for ApiError {
    fn from(e: record::RecordError) -> Self {
        match e {
            record::RecordError::Invalid(m) => ApiError::bad_request(m),
            record::RecordError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            e if e.is_storage_full() => ApiError::storage_full(e),
            e => ApiError::unavailable(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_that_cannot_answer_is_a_503_without_its_internals() {
        // An outage (the record's writer gone): 503, and the body says
        // nothing of the store's inside.
        let e = ApiError::from(record::RecordError::Unavailable("the record writer stopped".into()));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!e.message.contains("writer"), "{}", e.message);
        // Bad input stays the client's error, with its reason.
        let e = ApiError::from(record::RecordError::Invalid("give at least 8 characters of the key".into()));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("8 characters"));
        // A full disk while writing: 507.
        let e = ApiError::from(record::RecordError::Unavailable("database or disk is full".into()));
        assert_eq!(e.status, StatusCode::INSUFFICIENT_STORAGE);
    }
}
