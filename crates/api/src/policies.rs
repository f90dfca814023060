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
    let rows = rows_at(&state, t.id, &scope).await?;
    let mut body = view(&scope, &rows);
    if p.effective.unwrap_or(false) {
        let e = effective(&state, t.id, &scope).await?;
        body["effective"] = e.to_json();
        body["explain"] = json!(policy::explain(&e));
    }
    Ok(Json(body).into_response())
}

/// The tenant's keys set at `scope` (the API's GET and the dashboard's).
pub(crate) async fn rows_at(
    state: &AppState,
    tenant: i64,
    scope: &Scope,
) -> Result<Vec<PolicyRow>, ApiError> {
    Ok(state.record.policies.list_policy(tenant, Some(scope.as_str())).await?)
}

/// Every key's effective value at `scope` and the level that set it
/// (`?effective=true`, `sluice policy explain`, the dashboard).
pub(crate) async fn effective(
    state: &AppState,
    tenant: i64,
    scope: &Scope,
) -> Result<policy::Effective, ApiError> {
    Ok(policy::effective_at(&*state.record.policies, tenant, &state.policy_defaults, scope).await?)
}

/// Applies a change at `scope`, checked against the tenant's every scope
/// (the API's PUT and the dashboard's form); the scope's keys after it.
pub(crate) async fn change(
    state: &AppState,
    tenant: i64,
    scope: &Scope,
    change: &Change,
) -> Result<Vec<PolicyRow>, ApiError> {
    policy::apply(&*state.record.policies, tenant, &state.policy_defaults, scope, change).await?;
    rows_at(state, tenant, scope).await
}

/// Unsets one key at `scope` (a 404 when it is not set there), or every key.
pub(crate) async fn unset(
    state: &AppState,
    tenant: i64,
    scope: &Scope,
    key: Option<&str>,
) -> Result<(), ApiError> {
    let p_store = &*state.record.policies;
    let change = match key.map(str::trim).filter(|k| !k.is_empty()) {
        None => Change { set: Vec::new(), unset_all: true },
        Some(k) => {
            let k = Key::parse(k)?;
            let set = p_store.list_policy(tenant, Some(scope.as_str())).await?;
            if !set.iter().any(|r| r.key == k.name()) {
                return Err(ApiError::not_found("policy key at this scope"));
            }
            Change { set: vec![(k, None)], unset_all: false }
        }
    };
    policy::apply(p_store, tenant, &state.policy_defaults, scope, &change).await?;
    Ok(())
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
    let rows = self::change(&state, t.id, &scope, &change).await?;
    Ok(Json(view(&scope, &rows)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Authed(t): Authed,
    Path(scope): Path<String>,
    Q(p): Q<DeleteParams>,
) -> Result<Response, ApiError> {
    let scope = Scope::parse(&scope)?;
    unset(&state, t.id, &scope, p.key.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
