//! One-click unsubscribe (RFC 8058): `POST /v1/unsubscribe/{token}` with the
//! signed VERP token of one recipient of one message records `unsubscribed`
//! and suppresses the address for that tenant. No API key: the token's HMAC
//! is the authority, and it names exactly one recipient. `GET` only shows a
//! page with a button, because link scanners follow GETs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use record::events::{EventKind, NewEvent, Suppress, now_ms};

use crate::{ApiError, AppState};

async fn recipient(state: &AppState, token: &str) -> Result<(i64, String, i64, String), ApiError> {
    let (message, idx) = state.verp.open(token).ok_or_else(|| ApiError::not_found("unsubscribe link"))?;
    let message = message.to_string();
    let (tenant, address) = state
        .record
        .events
        .recipient_of(&message, idx as i64)
        .await?
        .ok_or_else(|| ApiError::not_found("unsubscribe link"))?;
    Ok((tenant, message, idx as i64, address))
}

pub async fn page(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, ApiError> {
    let (_, _, _, address) = recipient(&state, &token).await?;
    let address = address.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    Ok(Html(format!(
        "<!doctype html><title>Unsubscribe</title><form method=post>\
         <p>Stop mail to <b>{address}</b>?</p>\
         <input type=hidden name=List-Unsubscribe value=One-Click>\
         <button type=submit>Unsubscribe</button></form>"
    ))
    .into_response())
}

pub async fn one_click(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let (tenant, message, idx, address) = recipient(&state, &token).await?;
    state
        .record
        .events
        .record(NewEvent {
            tenant: Some(tenant),
            message,
            idx: Some(idx),
            address: Some(address.clone()),
            kind: EventKind::Unsubscribed,
            at: now_ms(),
            reason: Some("one-click".into()),
            smtp: None,
            detail: None,
            suppress: Some(Suppress { reason: "unsubscribed (one-click)".into(), expires_at: None }),
            source: None,
            group: Vec::new(),
        })
        .await?;
    tracing::info!(tenant, address = %address, "unsubscribed by one-click link");
    Ok((StatusCode::OK, Html("<!doctype html><title>Unsubscribed</title><p>You are unsubscribed.</p>"))
        .into_response())
}
