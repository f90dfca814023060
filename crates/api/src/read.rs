//! The read side: a message's recipients and timelines, one address's
//! history, the event log, and the suppression list. Every lookup is by
//! the key's tenant: another tenant's records are a 404, not a 403, so ids
//! cannot be probed.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use record::events::{EventKind, EventQuery};
use serde::Deserialize;
use serde_json::json;

use crate::extract::{Authed, JsonBody, Q};
use crate::{ApiError, AppState};

/// A time as RFC 3339 or milliseconds since the epoch.
pub(crate) fn time(field: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(Some(ms));
    }
    chrono::DateTime::parse_from_rfc3339(v).map(|t| Some(t.timestamp_millis())).map_err(|_| {
        ApiError::invalid(field, "expected RFC 3339 (2026-11-23T10:00:00Z) or milliseconds since the epoch")
    })
}

#[derive(Debug, Deserialize)]
pub struct AsOf {
    as_of: Option<String>,
    cursor: Option<i64>,
    limit: Option<u32>,
}

pub async fn message(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path(id): Path<String>,
    Q(q): Q<AsOf>,
) -> Result<Response, ApiError> {
    let as_of = time("as_of", q.as_of.as_deref())?;
    let m = state
        .record
        .events
        .message(&t, id.trim(), as_of)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(Json(crate::view::Message::from(m)).into_response())
}

pub async fn recipient(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path(address): Path<String>,
    Q(q): Q<AsOf>,
) -> Result<Response, ApiError> {
    let as_of = time("as_of", q.as_of.as_deref())?;
    let h = state.record.events.recipient(&t, &address, as_of, q.cursor, q.limit.unwrap_or(100)).await?;
    if h.events.is_empty() && h.suppression.is_none() && q.cursor.is_none() {
        return Err(ApiError::not_found("recipient"));
    }
    Ok(Json(crate::view::History::from(h)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    recipient: Option<String>,
    tag: Option<String>,
    message: Option<String>,
    /// Only events with this reason (`userunknown`, ...).
    reason: Option<String>,
    /// Only events of messages whose subject or sender contains this.
    q: Option<String>,
    /// `inbound` or `outbound`: only that flow's event types.
    direction: Option<String>,
    /// A provider (`ses`, `sendgrid`, ...): what its webhooks brought in.
    source: Option<String>,
    cursor: Option<i64>,
    limit: Option<u32>,
}

pub async fn events(
    State(state): State<AppState>,
    Authed(t): Authed,
    Q(q): Q<EventsQuery>,
) -> Result<Response, ApiError> {
    let kind = match q.kind.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => Some(EventKind::parse(k).ok_or_else(|| {
            let all: Vec<&str> = EventKind::ALL.iter().map(|t| t.as_str()).collect();
            ApiError::invalid("type", format!("one of {}", all.join(", ")))
        })?),
        None => None,
    };
    let source_prefix = match q.source.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Some(outbound::provider_feed::source_prefix(
            s.parse().map_err(|e: String| ApiError::invalid("source", e))?,
        )),
        None => None,
    };
    let query = EventQuery {
        source_prefix,
        kind,
        since: time("since", q.since.as_deref())?,
        until: time("until", q.until.as_deref())?,
        recipient: q.recipient,
        tag: q.tag,
        message: q.message,
        reason: q.reason.filter(|r| !r.is_empty()),
        text: q.q.filter(|t| !t.trim().is_empty()),
        direction: direction(q.direction.as_deref())?,
        cursor: q.cursor,
        limit: q.limit.unwrap_or(100),
    };
    let (events, next) = state.record.events.events(&t, &query).await?;
    Ok(Json(json!({"events": crate::view::event_list(events), "next_cursor": next})).into_response())
}

/// A `direction` parameter: `inbound`, `outbound`, or none.
pub(crate) fn direction(v: Option<&str>) -> Result<Option<vocabulary::Direction>, ApiError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some("inbound") => Ok(Some(vocabulary::Direction::Inbound)),
        Some("outbound") => Ok(Some(vocabulary::Direction::Outbound)),
        Some(_) => Err(ApiError::invalid("direction", "inbound or outbound")),
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    limit: Option<u32>,
    format: Option<String>,
}

pub async fn suppressions(
    State(state): State<AppState>,
    Authed(t): Authed,
    Q(q): Q<ListQuery>,
) -> Result<Response, ApiError> {
    if q.format.as_deref() == Some("csv") {
        return export(&state, &t).await;
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let list = state.record.suppressions.suppressions(&t, q.cursor.as_deref(), limit).await?;
    let next = (list.len() as u32 == limit).then(|| list.last().map(|s| s.address.clone())).flatten();
    let list: Vec<_> = list.into_iter().map(crate::view::SuppressionView::from).collect();
    Ok(Json(json!({"suppressions": list, "next_cursor": next})).into_response())
}

pub async fn export_suppressions(
    State(state): State<AppState>,
    Authed(t): Authed,
) -> Result<Response, ApiError> {
    export(&state, &t).await
}

async fn export(state: &AppState, t: &record::directory::Tenant) -> Result<Response, ApiError> {
    let out = export_csv(state, t).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
}

/// Every entry in force, as CSV (RFC 4180 quoting): the API's export and
/// the dashboard's.
pub(crate) async fn export_csv(state: &AppState, t: &record::directory::Tenant) -> Result<String, ApiError> {
    let mut out = String::from("address,reason,source,created_at,expires_at\r\n");
    let mut cursor: Option<String> = None;
    loop {
        let page = state.record.suppressions.suppressions(t, cursor.as_deref(), 10_000).await?;
        for s in &page {
            let at = vocabulary::time::rfc3339_ms;
            out.push_str(&format!(
                "{},{},{},{},{}\r\n",
                csv(&s.address),
                csv(&s.reason),
                csv(&s.source),
                at(s.created_at),
                s.expires_at.map(at).unwrap_or_default()
            ));
        }
        match page.last() {
            Some(last) if page.len() == 10_000 => cursor = Some(last.address.clone()),
            _ => break,
        }
    }
    Ok(out)
}

/// One CSV field, quoted when it must be (RFC 4180).
pub fn csv(v: &str) -> String {
    if v.contains([',', '"', '\r', '\n']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_string() }
}

pub async fn suppression(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path(address): Path<String>,
) -> Result<Response, ApiError> {
    let s = state
        .record
        .suppressions
        .suppression(&t, &address, record::events::now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found("suppression"))?;
    Ok(Json(crate::view::SuppressionView::from(s)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSuppression {
    address: String,
    reason: Option<String>,
    expires_at: Option<String>,
}

pub async fn add_suppression(
    State(state): State<AppState>,
    Authed(t): Authed,
    JsonBody(s): JsonBody<NewSuppression>,
) -> Result<Response, ApiError> {
    let added = suppress(&state, &t, &s.address, s.reason, s.expires_at.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(crate::view::SuppressionView::from(added))).into_response())
}

/// Adds an entry by hand once its fields are checked (the API's POST and
/// the dashboard's form); `reason` is `manual` unless given.
pub(crate) async fn suppress(
    state: &AppState,
    t: &record::directory::Tenant,
    address: &str,
    reason: Option<String>,
    expires_at: Option<&str>,
) -> Result<record::suppress::Suppression, ApiError> {
    if !outbound::outbox::valid_address(address.trim()) {
        return Err(ApiError::invalid("address", "not a valid email address"));
    }
    let reason = reason.unwrap_or_else(|| "manual".into());
    if reason.len() > 500 || reason.chars().any(char::is_control) {
        return Err(ApiError::invalid("reason", "at most 500 printable characters"));
    }
    let expires = time("expires_at", expires_at)?;
    Ok(state.record.suppressions.suppress(t, address, &reason, expires).await?)
}

pub async fn remove_suppression(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path(address): Path<String>,
) -> Result<Response, ApiError> {
    if state.record.suppressions.unsuppress(&t, &address).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("suppression"))
    }
}
