//! The web dashboard (issue 21, first slice): server-rendered pages on the
//! API's listener, askama templates (`templates/dashboard/`, escaping on),
//! no JavaScript. Operators log in (`auth.rs`, throttled by
//! `throttle.rs`); the search and message pages (`pages.rs`) read the
//! record through the same calls the API's `GET /v1/events` and
//! `GET /v1/messages/{id}` make, once per tenant the operator sees, and
//! show the API's own view types, so the two cannot disagree.

pub mod auth;
mod flash;
mod forms;
mod overview;
mod pages;
mod policies;
mod quarantine;
mod queue;
mod suppressions;
mod svg;
pub mod throttle;
mod webhooks;

use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

pub use throttle::Throttle;

use crate::AppState;

/// A page, or what replaces it.
pub type Page = Result<Response, Refusal>;

/// What a page is refused with: a 303 to `/login` (no session), or a
/// bare status (403 without the CSRF token, 404, 503), saying nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ToLogin,
    Status(StatusCode),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::ToLogin => redirect("/login"),
            Refusal::Status(status) => {
                let text = status.canonical_reason().unwrap_or("error").to_string();
                (status, [(header::CACHE_CONTROL, "no-store")], text).into_response()
            }
        }
    }
}

/// The dashboard's routes, to merge into the API's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::search))
        .route("/messages/{id}", get(pages::message))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        // Queue and Quarantine (queue.rs, quarantine.rs, flash.rs).
        .route("/queue", get(queue::page))
        .route("/queue/flush", post(queue::flush))
        .route("/queue/{id}/hold", post(queue::hold))
        .route("/queue/{id}/release", post(queue::release))
        .route("/queue/{id}/delete", post(queue::delete))
        .route("/quarantine", get(quarantine::accounts))
        .route("/quarantine/{account}/{folder}", get(quarantine::folder))
        .route("/quarantine/{account}/{folder}/{uid}/release", post(quarantine::release))
        .route("/quarantine/{account}/{folder}/{uid}/delete", post(quarantine::delete))
        // Overview, Suppressions, Webhooks, Policies (forms.rs, svg.rs).
        .route("/overview", get(overview::overview))
        .route("/suppressions", get(suppressions::list))
        .route("/suppressions/add", post(suppressions::add))
        .route("/suppressions/remove", post(suppressions::remove))
        .route("/suppressions/export", get(suppressions::export))
        .route("/webhooks", get(webhooks::list))
        .route("/webhooks/create", post(webhooks::create))
        .route("/webhooks/{id}", get(webhooks::log))
        .route("/webhooks/{id}/delete", post(webhooks::delete))
        .route("/webhooks/{id}/enable", post(webhooks::enable))
        .route("/webhooks/{id}/replay", post(webhooks::replay))
        .route("/policies", get(policies::show))
        .route("/policies/set", post(policies::set))
        .route("/policies/unset", post(policies::unset))
}

/// What every page's answer carries: no caching, no framing, no script,
/// forms only to this origin, no referrer (ids stay here).
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A rendered template as a page.
pub fn html(t: &impl Template) -> Page {
    let body = t.render().map_err(|e| {
        tracing::error!(error = %e, "dashboard: template");
        auth::failure(StatusCode::INTERNAL_SERVER_ERROR)
    })?;
    let mut res = Html(body).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(res)
}

/// A 303 See Other to `to`.
pub fn redirect(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to), (header::CACHE_CONTROL, "no-store")]).into_response()
}
