//! `POST /v1/messages`, `/v1/messages/raw` and `/v1/messages/batch`: each
//! message goes through the outbox (validation, suppression, the record,
//! the queue) and the answer is 202 with every recipient's fate. An
//! `Idempotency-Key` makes a retried request return the first answer.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use outbound::{Draft, SendError, Sent};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::compose::{SendRequest, check_tags, compose};
use crate::extract::{Authed, Q, RawBody};
use crate::{ApiError, AppState};

fn json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"))
}

/// Parses a JSON body: 415 without a JSON content type, 400 for broken
/// JSON, 422 for the wrong shape.
fn parse<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    if !json_content_type(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", e.to_string())
        }
        _ => ApiError::bad_request(format!("malformed JSON: {e}")),
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let k = v.to_str().map_err(|_| ApiError::invalid("Idempotency-Key", "must be printable ASCII"))?.trim();
    if k.is_empty() || k.len() > 255 {
        return Err(ApiError::invalid("Idempotency-Key", "must be 1-255 characters"));
    }
    Ok(Some(k.to_string()))
}

fn accepted(body: String, replayed: bool) -> Response {
    let mut r = (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if replayed {
        r.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r
}

/// The stored answer for a key already used with the same request; 422
/// when the key came with a different request.
async fn replay(state: &AppState, tenant: i64, key: &str, hash: &[u8]) -> Result<Option<String>, ApiError> {
    match state.record.events.idempotent(tenant, key).await? {
        Some((h, response)) if h == hash => Ok(Some(response)),
        Some(_) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_mismatch",
            "this Idempotency-Key was used with a different request",
        )),
        None => Ok(None),
    }
}

fn request_hash(path: &str, query: &str, body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(path.as_bytes());
    h.update([0]);
    h.update(query.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().to_vec()
}

async fn submit(state: &AppState, tenant: i64, draft: Draft) -> Result<Sent, ApiError> {
    state.outbox.send(tenant, draft).await.map_err(|e| match e {
        SendError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
        SendError::Unavailable(m) => ApiError::unavailable(m),
        SendError::StorageFull(m) => ApiError::storage_full(m),
    })
}

fn draft_of(req: &SendRequest, state: &AppState) -> Result<Draft, ApiError> {
    let c = compose(req, &state.cfg.hostname)?;
    let from = match &req.from {
        crate::compose::AddressIn::Plain(e) | crate::compose::AddressIn::Named { email: e, .. } => {
            e.trim().to_string()
        }
    };
    let track = outbound::tracking::Track { opens: req.track_opens, clicks: req.track_clicks };
    for (field, asked) in [("track_opens", track.opens), ("track_clicks", track.clicks)] {
        if asked == Some(true) && state.tracking.is_none() {
            return Err(ApiError::invalid(
                field,
                "tracking is not set up on this server ([tracking] base_url)",
            ));
        }
    }
    Ok(Draft {
        from,
        recipients: c.recipients,
        content: c.content,
        message_id: Some(c.message_id),
        subject: req.subject.clone(),
        stream: req.stream.clone(),
        tags: req.tags.clone(),
        metadata: serde_json::Value::Object(req.metadata.clone()),
        list_unsubscribe: req.list_unsubscribe,
        track,
        ..Default::default()
    })
}

pub async fn single(
    State(state): State<AppState>,
    Authed(t): Authed,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let req: SendRequest = parse(&headers, &body)?;
    let key = idempotency_key(&headers)?;
    let hash = request_hash("/v1/messages", "", &body);
    if let Some(k) = &key
        && let Some(stored) = replay(&state, t.id, k, &hash).await?
    {
        return Ok(accepted(stored, true));
    }
    let mut draft = draft_of(&req, &state)?;
    draft.idempotency = key.map(|k| (k, hash));
    let sent = submit(&state, t.id, draft).await?;
    Ok(accepted(serde_json::to_string(&sent).unwrap_or_default(), false))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    messages: Vec<SendRequest>,
}

pub async fn batch(
    State(state): State<AppState>,
    Authed(t): Authed,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let b: Batch = parse(&headers, &body)?;
    if b.messages.is_empty() || b.messages.len() > state.cfg.max_batch {
        return Err(ApiError::invalid(
            "messages",
            format!("1 to {} messages per batch", state.cfg.max_batch),
        ));
    }
    let key = idempotency_key(&headers)?;
    let hash = request_hash("/v1/messages/batch", "", &body);
    // Each message is its own send: one bad message is reported in its
    // place and does not stop the others. With a key, message i uses
    // `KEY#i`, so a retried batch sends none twice.
    let sends = b.messages.iter().enumerate().map(|(i, req)| {
        let (state, key, hash) = (&state, &key, &hash);
        async move {
            let item_key = key.as_ref().map(|k| format!("{k}#{i}"));
            if let Some(k) = &item_key
                && let Some(stored) = replay(state, t.id, k, hash).await?
            {
                return serde_json::from_str::<serde_json::Value>(&stored).map_err(ApiError::unavailable);
            }
            let mut draft = draft_of(req, state).map_err(|e| prefix_field(e, i))?;
            draft.idempotency = item_key.map(|k| (k, hash.clone()));
            let sent = submit(state, t.id, draft).await?;
            Ok(serde_json::to_value(&sent).unwrap_or_default())
        }
    });
    // Joined so their writes share the record's and the spool's group commits.
    let results: Vec<serde_json::Value> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(v) => v,
            Err(e) => serde_json::json!({"error": {"code": e.code, "message": e.message, "field": e.field, "status": e.status.as_u16()}}),
        })
        .collect();
    Ok(accepted(serde_json::json!({ "results": results }).to_string(), false))
}

fn prefix_field(mut e: ApiError, i: usize) -> ApiError {
    e.field = Some(match e.field {
        Some(f) => format!("messages[{i}].{f}"),
        None => format!("messages[{i}]"),
    });
    e
}

/// The envelope of a raw message, in the query (`from`, `to` repeated or
/// comma-separated, `tag`, `stream`) or, with a JSON body, beside `raw`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJson {
    from: String,
    to: Vec<String>,
    raw: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
    stream: Option<String>,
}

pub async fn raw(
    State(state): State<AppState>,
    Authed(t): Authed,
    Q(query): Q<Vec<(String, String)>>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let (from, to, content, tags, metadata, stream) = if json_content_type(&headers) {
        let r: RawJson = parse(&headers, &body)?;
        (r.from, r.to, r.raw.into_bytes(), r.tags, r.metadata, r.stream)
    } else {
        let get = |k: &'static str| query.iter().filter(move |(n, _)| n == k).map(|(_, v)| v.clone());
        let from = get("from")
            .next()
            .ok_or_else(|| ApiError::invalid("from", "the envelope sender is required (?from=)"))?;
        let to: Vec<String> = get("to")
            .flat_map(|v| v.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect();
        (from, to, body.to_vec(), get("tag").collect(), Default::default(), get("stream").next())
    };
    if !outbound::outbox::valid_address(from.trim()) {
        return Err(ApiError::invalid("from", format!("not a valid email address: {from:?}")));
    }
    if to.is_empty() {
        return Err(ApiError::invalid("to", "at least one recipient (?to=)"));
    }
    if to.len() > crate::compose::MAX_RECIPIENTS {
        return Err(ApiError::invalid("to", "too many recipients"));
    }
    if to.iter().all(|a| !outbound::outbox::valid_address(a)) {
        return Err(ApiError::invalid("to", "no valid recipient address"));
    }
    check_tags(&tags, stream.as_deref())?;
    let key = idempotency_key(&headers)?;
    let raw_query: String = query.iter().map(|(k, v)| format!("{k}={v}&")).collect();
    let hash = request_hash("/v1/messages/raw", &raw_query, &body);
    if let Some(k) = &key
        && let Some(stored) = replay(&state, t.id, k, &hash).await?
    {
        return Ok(accepted(stored, true));
    }
    let (content, message_id, subject) =
        outbound::outbox::complete_headers(content, &from, &state.cfg.hostname)
            .map_err(|m| ApiError::invalid("raw", m))?;
    let draft = Draft {
        from: from.trim().to_string(),
        recipients: to.into_iter().map(|a| (a, "to")).collect(),
        content,
        message_id: Some(message_id),
        subject,
        stream,
        tags,
        metadata: serde_json::Value::Object(metadata),
        idempotency: key.map(|k| (k, hash)),
        ..Default::default()
    };
    let sent = submit(&state, t.id, draft).await?;
    Ok(accepted(serde_json::to_string(&sent).unwrap_or_default(), false))
}
