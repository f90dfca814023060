//! `/healthz`, `/readyz` and `/metrics`: for load balancers, orchestrators
//! and Prometheus (`docs/metrics.md`). Unauthenticated like the tracking
//! routes, except `/metrics` when a token is configured. What they report
//! comes from the server around the API, through [`Health`].

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::AppState;

/// One readiness check: its name (`spool`, `database`, `listeners`), and
/// why it failed.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Check {
    pub fn ok(name: &'static str) -> Check {
        Check { name, ok: true, error: None }
    }

    pub fn failed(name: &'static str, error: impl std::fmt::Display) -> Check {
        Check { name, ok: false, error: Some(error.to_string()) }
    }
}

/// What the server answers for: its metrics, rendered at scrape time, and
/// whether it can take work.
pub trait Health: Send + Sync + 'static {
    /// Every metric in Prometheus's text exposition format.
    fn metrics(&self) -> String;
    /// Each readiness check, in order.
    fn ready(&self) -> BoxFuture<'_, Vec<Check>>;
}

/// How `/metrics` is guarded: open, or only with this bearer token (its
/// SHA-256, compared as such).
#[derive(Clone, Default)]
pub struct MetricsAccess(Option<[u8; 32]>);

impl MetricsAccess {
    pub fn token(token: &str) -> MetricsAccess {
        MetricsAccess(Some(Sha256::digest(token.as_bytes()).into()))
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(want) = self.0 else { return true };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| <[u8; 32]>::from(Sha256::digest(t.trim().as_bytes())));
        // Digests of the secret, not the secret: a difference in timing
        // says nothing about the token.
        given == Some(want)
    }
}

/// `GET /healthz`: the process serves HTTP.
pub async fn healthz() -> Response {
    json(StatusCode::OK, serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when every check passes, else 503 naming those that
/// failed.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let Some(health) = state.health.clone() else {
        return json(StatusCode::OK, serde_json::json!({ "status": "ok", "checks": [] }));
    };
    let checks = health.ready().await;
    let failing: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
    let (status, word) = if failing.is_empty() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    json(status, serde_json::json!({ "status": word, "failing": failing, "checks": checks }))
}

/// `GET /metrics`: the Prometheus text format.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.metrics_access.allows(&headers) {
        let mut r = json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({ "error": { "code": "unauthorized", "message": "a bearer token is required" } }),
        );
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return r;
    }
    let Some(health) = state.health.clone() else {
        return crate::ApiError::not_found("endpoint").into_response();
    };
    // Rendering reads the spool's index and every metric: off the runtime.
    let text = match tokio::task::spawn_blocking(move || health.metrics()).await {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "rendering metrics failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_need_the_token_only_when_one_is_set() {
        let open = MetricsAccess::default();
        assert!(open.allows(&HeaderMap::new()));
        let guarded = MetricsAccess::token("s3cret");
        assert!(!guarded.allows(&HeaderMap::new()));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, header::HeaderValue::from_static("Bearer wrong"));
        assert!(!guarded.allows(&h));
        h.insert(header::AUTHORIZATION, header::HeaderValue::from_static("Bearer s3cret"));
        assert!(guarded.allows(&h));
    }
}
