//! The HTTP API (`/v1`): send messages, follow each recipient, manage the
//! suppression list. JSON in and out, bearer API keys, every record scoped
//! to the key's tenant, and every refusal a 4xx with
//! `{"error": {"code", "message", "field"}}`.

mod compose;
pub mod dashboard;
mod error;
mod extract;
pub mod health;
mod limit;
pub mod ops;
pub mod policies;
mod read;
mod send;
pub mod stats;
mod track;
mod unsubscribe;
pub mod view;
mod webhooks_in;
pub mod webhooks_out;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use compose::{SendRequest, compose};
pub use error::ApiError;
pub use limit::Limiter;
pub use read::csv;
pub use track::Tracking;
pub use webhooks_in::{Hook, ProviderHooks};

/// The OpenAPI description of this API, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

pub struct Config {
    pub hostname: String,
    /// Largest request body, in bytes (413 beyond).
    pub max_body: usize,
    /// Messages in one batch request.
    pub max_batch: usize,
    /// Requests per second per tenant (429 beyond); 0 for no limit.
    pub rate_per_sec: u32,
    /// A request (body included) must arrive and be answered within this (408).
    pub request_timeout: std::time::Duration,
}

/// What every handler shares: one pointer, so a request's copy (axum's
/// `State` clones it per request) is one count, not one per part.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Clone)]
pub struct Shared {
    /// The record: keys, messages and events, suppressions.
    pub record: record::Store,
    pub outbox: Arc<outbound::Outbox>,
    /// Opens the tokens of one-click unsubscribe links.
    pub verp: Arc<outbound::Verp>,
    pub cfg: Arc<Config>,
    pub limiter: Arc<Limiter>,
    /// The providers whose webhooks are received (`/v1/webhooks/{provider}`).
    pub providers: Arc<ProviderHooks>,
    /// Open and click tracking (`/t/o/…`, `/t/c/…`), when configured.
    pub tracking: Option<Arc<Tracking>>,
    /// Where webhook endpoints may point (`[webhooks] allow_destinations`).
    pub webhooks_out: Arc<webhooks_out::Guard>,
    /// Per-recipient policy below the tenant's rows: built in, and the
    /// configuration's `[policy]` (`GET /v1/policies/{scope}?effective=true`).
    pub policy_defaults: Arc<record::policy::Defaults>,
    /// Metrics and readiness (`/metrics`, `/readyz`), when the server
    /// around the API answers for them.
    pub health: Option<Arc<dyn health::Health>>,
    /// The queue and quarantine release, when the server around the API
    /// runs a spool (`/v1/queue…`, the dashboard's Queue page).
    pub ops: Option<Arc<dyn ops::Operations>>,
    /// Who may read `/metrics` (`[http] metrics_token_file`).
    pub metrics_access: health::MetricsAccess,
    /// The dashboard's login throttle (failed logins per name and address).
    pub dashboard: Arc<dashboard::Throttle>,
}

impl AppState {
    pub fn new(
        record: record::Store,
        outbox: Arc<outbound::Outbox>,
        verp: outbound::Verp,
        cfg: Config,
    ) -> Self {
        let limiter = Arc::new(Limiter::new(cfg.rate_per_sec));
        AppState(Arc::new(Shared {
            record,
            outbox,
            verp: Arc::new(verp),
            cfg: Arc::new(cfg),
            limiter,
            providers: Arc::default(),
            tracking: None,
            webhooks_out: Arc::default(),
            policy_defaults: Arc::default(),
            health: None,
            ops: None,
            metrics_access: health::MetricsAccess::default(),
            dashboard: Arc::default(),
        }))
    }

    /// The shared parts, to set one while the state is being built.
    fn parts(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.0)
    }

    /// Serves open and click tracking.
    pub fn with_tracking(mut self, tracking: Tracking) -> Self {
        self.parts().tracking = Some(Arc::new(tracking));
        self
    }

    /// Receives these providers' webhooks.
    pub fn with_providers(mut self, providers: ProviderHooks) -> Self {
        self.parts().providers = Arc::new(providers);
        self
    }

    /// Webhook endpoints may point where `guard` allows.
    pub fn with_webhooks_out(mut self, guard: Arc<webhooks_out::Guard>) -> Self {
        self.parts().webhooks_out = guard;
        self
    }

    /// Policy defaults from the configuration's `[policy]`.
    pub fn with_policy_defaults(mut self, defaults: record::policy::Defaults) -> Self {
        self.parts().policy_defaults = Arc::new(defaults);
        self
    }

    /// Serves the queue and quarantine release (`ops`) from the server's spool.
    pub fn with_operations(mut self, ops: Arc<dyn ops::Operations>) -> Self {
        self.parts().ops = Some(ops);
        self
    }

    /// Serves `/metrics` and `/readyz` from `health`; `/metrics` only to
    /// `access`.
    pub fn with_health(mut self, health: Arc<dyn health::Health>, access: health::MetricsAccess) -> Self {
        let parts = self.parts();
        parts.health = Some(health);
        parts.metrics_access = access;
        self
    }
}

pub fn router(state: AppState) -> Router {
    let max_body = state.cfg.max_body;
    let timeout = state.cfg.request_timeout;
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/messages", post(send::single))
        .route("/v1/messages/raw", post(send::raw))
        .route("/v1/messages/batch", post(send::batch))
        .route("/v1/messages/{id}", get(read::message))
        .route("/v1/recipients/{address}", get(read::recipient))
        .route("/v1/events", get(read::events))
        .route("/v1/stats", get(stats::stats))
        .route("/v1/policies/{scope}", get(policies::get).put(policies::put).delete(policies::delete))
        .route("/v1/suppressions", get(read::suppressions).post(read::add_suppression))
        .route("/v1/suppressions/export", get(read::export_suppressions))
        .route("/v1/suppressions/{address}", get(read::suppression).delete(read::remove_suppression))
        .route("/v1/unsubscribe/{token}", get(unsubscribe::page).post(unsubscribe::one_click))
        .route("/v1/webhooks/{provider}", post(webhooks_in::receive))
        .route("/v1/webhook-endpoints", get(webhooks_out::routes::list).post(webhooks_out::routes::create))
        .route(
            "/v1/webhook-endpoints/{id}",
            get(webhooks_out::routes::get).delete(webhooks_out::routes::delete),
        )
        .route("/v1/webhook-endpoints/{id}/rotate", post(webhooks_out::routes::rotate))
        .route("/v1/webhook-endpoints/{id}/enable", post(webhooks_out::routes::enable))
        .route("/v1/webhook-endpoints/{id}/deliveries", get(webhooks_out::routes::deliveries))
        .route("/v1/webhook-endpoints/{id}/replay", post(webhooks_out::routes::replay))
        .route("/t/o/{token}", get(track::open))
        .route("/t/c/{token}", get(track::click))
        // The queue and the quarantine store (ops/).
        .route("/v1/queue", get(ops::routes::summary))
        .route("/v1/queue/messages", get(ops::routes::list))
        .route("/v1/queue/flush", post(ops::routes::flush))
        .route("/v1/queue/{id}", get(ops::routes::show).delete(ops::routes::delete))
        .route("/v1/queue/{id}/hold", post(ops::routes::hold))
        .route("/v1/queue/{id}/release", post(ops::routes::release))
        .route("/v1/quarantine", get(ops::routes::accounts))
        .route("/v1/quarantine/{account}/{folder}", get(ops::routes::copies))
        .route(
            "/v1/quarantine/{account}/{folder}/{uid}",
            get(ops::routes::copy).delete(ops::routes::delete_copy),
        )
        .route("/v1/quarantine/{account}/{folder}/{uid}/release", post(ops::routes::release_copy))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        // The web dashboard (`/`, `/login`, `/messages/{id}`): dashboard/.
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::not_found("endpoint") })
        // A known path asked with another method: the JSON error too (the
        // `Allow` header still lists the methods it takes).
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        // A client that trickles its request is cut off (408), so it cannot
        // hold a connection and its memory for ever.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}

async fn openapi() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Serves the API until `stop` turns true; requests in flight finish.
pub async fn serve(listener: TcpListener, state: AppState, mut stop: watch::Receiver<bool>) {
    let app = router(state);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    // The peer's address reaches handlers (tracking records it).
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!(error = %e, "http api stopped");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_names_every_event_as_the_schema_does() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("openapi.json parses");
        let listed: Vec<&str> = doc["components"]["schemas"]["EventType"]["enum"]
            .as_array()
            .expect("an EventType enum")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let schema: Vec<&str> = record::events::EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(listed, schema);
    }
}
