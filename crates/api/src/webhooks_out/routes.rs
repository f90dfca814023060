//! `/v1/webhook-endpoints`: a tenant's endpoints for webhooks out. The
//! secret is shown when an endpoint is made and when it is rotated, never
//! again; another tenant's endpoint is a 404, as every record is.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use outbound::standard_webhooks::Secret;
use record::events::{EventKind, now_ms};
use record::webhooks::{Batch, Endpoint, NewEndpoint, Replay};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::extract::{Authed, JsonBody, Q};
use crate::{ApiError, AppState};

/// Endpoints a tenant may have.
const MAX_ENDPOINTS: usize = 100;

/// How long the secret before a rotation keeps signing beside the new one.
const ROTATION_OVERLAP_MS: i64 = 24 * 3600 * 1000;

/// An endpoint as the API shows it (and the dashboard).
#[derive(Debug, Serialize)]
pub(crate) struct View {
    pub(crate) id: String,
    pub(crate) url: String,
    pub(crate) description: Option<String>,
    /// The event types it receives; empty for all.
    pub(crate) events: Vec<&'static str>,
    /// `enabled` or `disabled`.
    pub(crate) status: &'static str,
    pub(crate) disabled_reason: Option<String>,
    pub(crate) disabled_at: Option<i64>,
    pub(crate) disabled_at_rfc3339: Option<String>,
    pub(crate) batch: Option<Batch>,
    pub(crate) created_at: i64,
    pub(crate) created_at_rfc3339: String,
    /// Only when it is made and when it is rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secret: Option<String>,
}

impl View {
    pub(crate) fn of(e: Endpoint, show_secret: bool) -> View {
        View {
            secret: show_secret.then(|| e.secret.clone()),
            id: e.id,
            url: e.url,
            description: e.description,
            events: e.events.iter().map(|k| k.as_str()).collect(),
            status: e.status.as_str(),
            disabled_reason: e.disabled_reason,
            disabled_at: e.disabled_at,
            disabled_at_rfc3339: e.disabled_at.map(vocabulary::time::rfc3339_ms),
            batch: e.batch,
            created_at: e.created_at,
            created_at_rfc3339: vocabulary::time::rfc3339_ms(e.created_at),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    pub(crate) url: String,
    #[serde(default)]
    pub(crate) events: Vec<String>,
    pub(crate) description: Option<String>,
    pub(crate) batch: Option<BatchIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchIn {
    max_events: u32,
    max_wait_ms: u32,
}

/// The event types asked for, each one the schema has.
fn kinds(names: &[String]) -> Result<Vec<EventKind>, ApiError> {
    let mut out: Vec<EventKind> = Vec::new();
    for n in names {
        let k = EventKind::parse(n.trim()).ok_or_else(|| {
            let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            ApiError::invalid("events", format!("{n:?} is not an event type; one of {}", all.join(", ")))
        })?;
        if !out.contains(&k) {
            out.push(k);
        }
    }
    Ok(out)
}

pub async fn create(
    State(state): State<AppState>,
    Authed(t): Authed,
    JsonBody(req): JsonBody<Create>,
) -> Result<Response, ApiError> {
    let made = create_endpoint(&state, &t, req).await?;
    Ok((StatusCode::CREATED, Json(View::of(made, true))).into_response())
}

/// Checks and stores a new endpoint (the API's POST and the dashboard's
/// form); the caller shows its secret, once.
pub(crate) async fn create_endpoint(
    state: &AppState,
    t: &record::directory::Tenant,
    req: Create,
) -> Result<Endpoint, ApiError> {
    let url = req.url.trim();
    if url.len() > 2000 {
        return Err(ApiError::invalid("url", "at most 2000 characters"));
    }
    let parsed = state
        .webhooks_out
        .check_destination(url)
        .await
        .map_err(|e| ApiError::invalid("url", e.to_string()))?;
    let events = kinds(&req.events)?;
    if let Some(d) = &req.description
        && (d.chars().count() > 500 || d.chars().any(char::is_control))
    {
        return Err(ApiError::invalid("description", "at most 500 printable characters"));
    }
    let batch = match req.batch {
        Some(b) if !(1..=100).contains(&b.max_events) => {
            return Err(ApiError::invalid("batch.max_events", "1 to 100"));
        }
        Some(b) if b.max_wait_ms > 60_000 => {
            return Err(ApiError::invalid("batch.max_wait_ms", "0 to 60000"));
        }
        Some(b) => Some(Batch { max_events: b.max_events, max_wait_ms: b.max_wait_ms }),
        None => None,
    };
    let store = &state.record.webhooks;
    if store.list(t.id).await?.len() >= MAX_ENDPOINTS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_endpoints",
            format!("a tenant has at most {MAX_ENDPOINTS} webhook endpoints"),
        ));
    }
    let secret = Secret::generate().map_err(ApiError::unavailable)?.to_whsec();
    let endpoint = NewEndpoint {
        id: format!("ep_{}", uuid::Uuid::new_v4().simple()),
        tenant: t.id,
        url: parsed.to_string(),
        description: req.description,
        events,
        secret,
        batch,
        at: now_ms(),
    };
    let made = store.create(endpoint).await?;
    let url = super::guard::for_log(&made.url);
    tracing::info!(tenant = %t.name, endpoint = %made.id, %url, "webhook endpoint created");
    Ok(made)
}

pub async fn list(State(state): State<AppState>, Authed(t): Authed) -> Result<Response, ApiError> {
    let all = state.record.webhooks.list(t.id).await?;
    let views: Vec<View> = all.into_iter().map(|e| View::of(e, false)).collect();
    Ok(Json(json!({ "endpoints": views })).into_response())
}

pub(crate) async fn find(state: &AppState, tenant: i64, id: &str) -> Result<Endpoint, ApiError> {
    state.record.webhooks.get(tenant, id).await?.ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

pub async fn get(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(View::of(find(&state, t.id, &id).await?, false)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if state.record.webhooks.delete(t.id, &id).await? {
        tracing::info!(tenant = %t.name, endpoint = %id, "webhook endpoint deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("webhook endpoint"))
    }
}

pub async fn rotate(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let secret = Secret::generate().map_err(ApiError::unavailable)?.to_whsec();
    let until = now_ms() + ROTATION_OVERLAP_MS;
    let e = state.record.webhooks.rotate(t.id, &id, &secret, until).await?;
    let e = e.ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    tracing::info!(tenant = %t.name, endpoint = %id, "webhook endpoint secret rotated");
    Ok(Json(View::of(e, true)).into_response())
}

pub async fn enable(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let e = state.record.webhooks.enable(t.id, &id, now_ms()).await?;
    let e = e.ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    tracing::info!(tenant = %t.name, endpoint = %id, "webhook endpoint enabled");
    Ok(Json(View::of(e, false)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct Page {
    cursor: Option<i64>,
    limit: Option<u32>,
}

pub async fn deliveries(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path(id): Path<String>,
    Q(q): Q<Page>,
) -> Result<Response, ApiError> {
    let page = state.record.webhooks.attempts(t.id, &id, q.cursor, q.limit.unwrap_or(100)).await?;
    let (log, next) = page.ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    Ok(Json(json!({ "deliveries": log, "next_cursor": next })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    event_id: Option<i64>,
    since: Option<serde_json::Value>,
    until: Option<serde_json::Value>,
}

/// A time given as RFC 3339 or milliseconds since the epoch (a JSON
/// number or string).
fn time(field: &str, v: &serde_json::Value) -> Result<i64, ApiError> {
    let text = match v {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => String::new(),
    };
    crate::read::time(field, Some(&text))?.ok_or_else(|| {
        ApiError::invalid(field, "expected RFC 3339 (2026-11-23T10:00:00Z) or milliseconds since the epoch")
    })
}

pub async fn replay(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ReplayRequest>,
) -> Result<Response, ApiError> {
    let since = req.since.as_ref().map(|v| time("since", v)).transpose()?;
    let until = match since {
        Some(_) => req.until.as_ref().map(|u| time("until", u)).transpose()?,
        None => None,
    };
    let what = replay_what(req.event_id, since, until)?;
    let queued = replay_on(&state, &t, &id, what).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "queued": queued }))).into_response())
}

/// What a replay asks for: one event, or those from `since` until
/// `until` (now when not given); not both (the API's and the dashboard's).
pub(crate) fn replay_what(
    event_id: Option<i64>,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Replay, ApiError> {
    match (event_id, since) {
        (Some(_), Some(_)) => {
            Err(ApiError::invalid("event_id", "give event_id or since (and until), not both"))
        }
        (Some(id), None) => Ok(Replay::Event(id)),
        (None, Some(since)) => {
            let until = until.unwrap_or_else(|| now_ms() + 1);
            if until <= since {
                return Err(ApiError::invalid("until", "must be after since"));
            }
            Ok(Replay::Range { since, until })
        }
        (None, None) => Err(ApiError::invalid("event_id", "give event_id, or since (and until)")),
    }
}

/// Queues events again for one of the tenant's endpoints (the API's
/// replay and the dashboard's): how many; a 404 for an event it does not
/// receive.
pub(crate) async fn replay_on(
    state: &AppState,
    t: &record::directory::Tenant,
    id: &str,
    what: Replay,
) -> Result<usize, ApiError> {
    let endpoint = find(state, t.id, id).await?;
    let queued = state.record.webhooks.replay(&endpoint, what, now_ms(), &super::render).await?;
    if queued == 0 && matches!(what, Replay::Event(_)) {
        return Err(ApiError::not_found("event of a type this endpoint receives"));
    }
    tracing::info!(tenant = %t.name, endpoint = %id, queued, "webhook events replayed");
    Ok(queued)
}
