//! `/v1/queue…` and `/v1/quarantine…`: the handlers over `queue.rs` and
//! `quarantine.rs`, scoped to the key's tenant (another tenant's entry or
//! copy is a 404). The dashboard's Queue and Quarantine pages call the
//! same functions.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::queue::{self, Action};
use super::{Scope, quarantine};
use crate::extract::{Authed, Q};
use crate::{ApiError, AppState};

type Answer = Result<Response, ApiError>;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    held: bool,
    cursor: Option<String>,
    limit: Option<u32>,
}

fn limit(l: Option<u32>) -> usize {
    l.unwrap_or(100).clamp(1, 1000) as usize
}

/// A UID from the path: a 422 naming it when it is not a number.
fn parse_uid(uid: &str) -> Result<i64, ApiError> {
    uid.trim().parse().map_err(|_| ApiError::invalid("uid", format!("{uid:?} is not a UID")))
}

fn done(message: String) -> Response {
    Json(json!({ "result": message })).into_response()
}

/// `GET /v1/queue`: the backlog per route.
pub async fn summary(State(state): State<AppState>, Authed(t): Authed) -> Answer {
    let routes = queue::summary(&state, &Scope::key(&t)).await?;
    Ok(Json(json!({ "routes": routes })).into_response())
}

/// `GET /v1/queue/messages`: queued messages (`held=true`: held ones).
pub async fn list(State(state): State<AppState>, Authed(t): Authed, Q(q): Q<ListQuery>) -> Answer {
    let (messages, next) =
        queue::list(&state, &Scope::key(&t), q.held, q.cursor.as_deref(), limit(q.limit)).await?;
    Ok(Json(json!({ "messages": messages, "next_cursor": next })).into_response())
}

/// `GET /v1/queue/{id}`: one queued message, with its header fields.
pub async fn show(State(state): State<AppState>, Authed(t): Authed, Path(id): Path<String>) -> Answer {
    let e = queue::entry(&state, &Scope::key(&t), &id).await?;
    let headers = super::operations(&state)?.content(&e.id).await.map(|b| super::headers::parse(&b));
    let mut body = serde_json::to_value(&e).map_err(ApiError::unavailable)?;
    body["headers"] = json!(headers);
    Ok(Json(body).into_response())
}

async fn act(state: AppState, t: record::directory::Tenant, id: String, action: Action) -> Answer {
    Ok(done(queue::act(&state, &Scope::key(&t), &id, action).await?))
}

/// `POST /v1/queue/{id}/hold`.
pub async fn hold(State(state): State<AppState>, Authed(t): Authed, Path(id): Path<String>) -> Answer {
    act(state, t, id, Action::Hold).await
}

/// `POST /v1/queue/{id}/release`: un-held and attempted now.
pub async fn release(State(state): State<AppState>, Authed(t): Authed, Path(id): Path<String>) -> Answer {
    act(state, t, id, Action::Release).await
}

/// `DELETE /v1/queue/{id}`.
pub async fn delete(State(state): State<AppState>, Authed(t): Authed, Path(id): Path<String>) -> Answer {
    act(state, t, id, Action::Delete).await
}

/// `POST /v1/queue/flush`: the tenant's queued messages attempted now.
pub async fn flush(State(state): State<AppState>, Authed(t): Authed) -> Answer {
    Ok(done(queue::flush(&state, &Scope::key(&t)).await?))
}

/// `GET /v1/quarantine`: the tenant's store accounts, folders and counts.
pub async fn accounts(State(state): State<AppState>, Authed(t): Authed) -> Answer {
    let accounts = quarantine::accounts(&state, &Scope::key(&t)).await?;
    Ok(Json(json!({ "accounts": accounts })).into_response())
}

#[derive(Debug, Deserialize)]
pub struct CopiesQuery {
    cursor: Option<i64>,
    limit: Option<u32>,
}

/// `GET /v1/quarantine/{account}/{folder}`: copies by UID.
pub async fn copies(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path((account, folder)): Path<(String, String)>,
    Q(q): Q<CopiesQuery>,
) -> Answer {
    let scope = Scope::key(&t);
    let (messages, next) =
        quarantine::copies(&state, &scope, (&account, &folder), q.cursor, limit(q.limit)).await?;
    Ok(Json(json!({ "messages": messages, "next_cursor": next })).into_response())
}

/// `GET /v1/quarantine/{account}/{folder}/{uid}`: one copy and its header.
pub async fn copy(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path((account, folder, uid)): Path<(String, String, String)>,
) -> Answer {
    let uid = parse_uid(&uid)?;
    Ok(Json(quarantine::copy(&state, &Scope::key(&t), &account, &folder, uid).await?).into_response())
}

/// `POST /v1/quarantine/{account}/{folder}/{uid}/release`.
pub async fn release_copy(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path((account, folder, uid)): Path<(String, String, String)>,
) -> Answer {
    let uid = parse_uid(&uid)?;
    let said = quarantine::release(&state, &Scope::key(&t), &account, &folder, uid).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "result": said }))).into_response())
}

/// `DELETE /v1/quarantine/{account}/{folder}/{uid}`.
pub async fn delete_copy(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path((account, folder, uid)): Path<(String, String, String)>,
) -> Answer {
    let uid = parse_uid(&uid)?;
    Ok(done(quarantine::delete(&state, &Scope::key(&t), &account, &folder, uid).await?))
}
