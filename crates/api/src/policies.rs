//! `/v1/policies/{scope}`: the key's tenant's per-recipient policy at one
//! scope (`global`, a domain such as `example.net`, or an address), as
//! `record::policy` defines it. GET shows the keys set there (and, with
//! `?effective=true`, every key's effective value and the level that set
//! it); PUT sets keys (`null` unsets one); DELETE unsets every key, or
//! `?key=K`. Every change is checked against the tenant's every scope
//! (the unsure band may not rise above the spam threshold anywhere) and
//! applies to the next message on every node.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use record::policy::{self, Change, Key, PolicyError, PolicyRow, Scope};
use serde::Deserialize;
use serde_json::{Map, Value as JsonValue, json};

use crate::extract::{Authed, JsonBody, Q};
use crate::{ApiError, AppState};

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::Invalid { field, message } => ApiError::invalid(field, message),
            PolicyError::Record(e) => e.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct GetParams {
    effective: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct DeleteParams {
    key: Option<String>,
}

/// The rows of a scope as the API shows them: `{"scope", "values":
/// {KEY: VALUE}, "updated_at": {KEY: ms}}`.
fn view(scope: &Scope, rows: &[PolicyRow]) -> JsonValue {
    let values: Map<String, JsonValue> = rows.iter().map(|r| (r.key.clone(), r.value.clone())).collect();
    let updated: Map<String, JsonValue> = rows.iter().map(|r| (r.key.clone(), json!(r.updated_at))).collect();
    let updated_rfc3339: Map<String, JsonValue> =
        rows.iter().map(|r| (r.key.clone(), json!(vocabulary::time::rfc3339_ms(r.updated_at)))).collect();
    json!({"scope": scope.as_str(), "values": values, "updated_at": updated, "updated_at_rfc3339": updated_rfc3339})
}

pub async fn get(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path(scope): Path<String>,
    Q(p): Q<GetParams>,
) -> Result<Response, ApiError> {
    let scope = Scope::parse(&scope)?;
    let p_store = &*state.record.policies;
    let rows = p_store.list_policy(t.id, Some(scope.as_str())).await?;
    let mut body = view(&scope, &rows);
    if p.effective.unwrap_or(false) {
        let e = policy::effective_at(p_store, t.id, &state.policy_defaults, &scope).await?;
        body["effective"] = e.to_json();
        body["explain"] = json!(policy::explain(&e));
    }
    Ok(Json(body).into_response())
}

pub async fn put(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path(scope): Path<String>,
    JsonBody(body): JsonBody<JsonValue>,
) -> Result<Response, ApiError> {
    let scope = Scope::parse(&scope)?;
    let JsonValue::Object(fields) = body else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "expected an object of keys and values, e.g. {\"spam_threshold\": 6.0}",
        ));
    };
    if fields.is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "no keys to set"));
    }
    let mut change = Change::default();
    for (name, v) in &fields {
        let k = Key::parse(name)?;
        let v = match v {
            JsonValue::Null => None,
            v => Some(k.value_from_json(v)?),
        };
        change.set.push((k, v));
    }
    let p_store = &*state.record.policies;
    policy::apply(p_store, t.id, &state.policy_defaults, &scope, &change).await?;
    let rows = p_store.list_policy(t.id, Some(scope.as_str())).await?;
    Ok(Json(view(&scope, &rows)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path(scope): Path<String>,
    Q(p): Q<DeleteParams>,
) -> Result<Response, ApiError> {
    let scope = Scope::parse(&scope)?;
    let p_store = &*state.record.policies;
    let change = match p.key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
        None => Change { set: Vec::new(), unset_all: true },
        Some(k) => {
            let k = Key::parse(k)?;
            let set = p_store.list_policy(t.id, Some(scope.as_str())).await?;
            if !set.iter().any(|r| r.key == k.name()) {
                return Err(ApiError::not_found("policy key at this scope"));
            }
            Change { set: vec![(k, None)], unset_all: false }
        }
    };
    policy::apply(p_store, t.id, &state.policy_defaults, &scope, &change).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
