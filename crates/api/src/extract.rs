//! Request extractors: the tenant behind a bearer key, and JSON bodies
//! whose every failure is a clear 4xx (axum's own rejections are text).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use record::directory::Tenant;
use serde::de::DeserializeOwned;

use crate::{ApiError, AppState};

/// The tenant of the request's `Authorization: Bearer KEY`.
pub struct Authed(pub Tenant);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let key = header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing Authorization: Bearer API key",
                )
            })?;
        let tenant = state.record.directory.authenticate(key).await?.ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown or revoked API key")
        })?;
        if !state.limiter.allow(tenant.id) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; slow down",
            ));
        }
        Ok(Authed(tenant))
    }
}

/// A JSON body; malformed JSON is 400, a wrong shape 422, a wrong content
/// type 415, a body over the limit 413.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

pub fn json_rejection(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::JsonDataError(e) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", e.body_text())
        }
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request(format!("malformed JSON: {}", e.body_text()))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) => too_large_or_bad(e.status(), e.body_text()),
        e => ApiError::bad_request(e.body_text()),
    }
}

pub fn too_large_or_bad(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "request body too large")
    } else {
        ApiError::bad_request(text)
    }
}

/// The request body as bytes; over the limit is 413 with the JSON error.
pub struct RawBody(pub axum::body::Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| too_large_or_bad(e.status(), e.body_text()))
    }
}

/// Query parameters; a value of the wrong type is a 422 naming the problem.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Q(v))
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", e.body_text()))
    }
}
