//! The Policies page (`/policies`): a tenant's per-recipient policy at one
//! scope (`global`, a domain, an address): the keys set there, and every
//! key's effective value with the level it comes from and what it
//! overrode, as `GET /v1/policies/{scope}?effective=true` and
//! `sluice policy explain ADDRESS` show them; a key set or unset there.
//! Policy rows belong to a tenant, as they do for the API (an API key's
//! tenant's rows): the page is about one tenant the operator was granted,
//! and reads and writes through the API's functions (`crate::policies`:
//! `rows_at`, `effective`, `change`, `unset`).

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use record::policy::{Change, Key, Scope};
use serde::Deserialize;

use super::auth::{check_csrf, failure, who};
use super::forms::{self, Flash, encode};
use super::{Page, Refusal};
use crate::{ApiError, AppState};

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    #[serde(default)]
    tenant: String,
    /// `global`, a domain or an address; `global` when empty.
    #[serde(default)]
    scope: String,
}

/// A key set at the scope.
pub struct SetRow {
    pub key: String,
    pub value: String,
    pub updated: String,
}

/// A key's effective value and its source.
pub struct EffectiveRow {
    pub key: String,
    pub value: String,
    pub from: String,
    pub overriding: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard/policies.html")]
struct PoliciesPage<'a> {
    operator: &'a str,
    csrf: &'a str,
    flash: Option<Flash>,
    tenants: Vec<String>,
    tenant: String,
    scope: String,
    set: Vec<SetRow>,
    effective: Vec<EffectiveRow>,
    keys: Vec<String>,
}

/// `GET /policies`: the scope's keys and the effective policy there.
pub async fn show(State(state): State<AppState>, headers: HeaderMap, Query(p): Query<Params>) -> Page {
    let who = who(&state, &headers).await?;
    let mut flash = forms::flash(&headers);
    let shown = flash.clone();
    let Some(t) = forms::pick(&who, Some(&p.tenant))? else {
        return Err(failure(StatusCode::NOT_FOUND));
    };
    let text = Some(p.scope.trim()).filter(|s| !s.is_empty()).unwrap_or("global");
    let (scope, set, effective) = match read(&state, t.id, text).await {
        Ok(r) => r,
        Err(e) => {
            flash = Some(forms::result(Err(e))?);
            (text.to_string(), Vec::new(), Vec::new())
        }
    };
    let page = PoliciesPage {
        operator: who.name(),
        csrf: who.csrf(),
        flash,
        tenants: forms::names(&who),
        tenant: t.name.clone(),
        scope,
        keys: effective.iter().map(|e| e.key.clone()).collect(),
        set,
        effective,
    };
    forms::page(&page, &shown)
}

/// The keys set at a scope and every key's effective value there.
async fn read(
    state: &AppState,
    tenant: i64,
    scope: &str,
) -> Result<(String, Vec<SetRow>, Vec<EffectiveRow>), ApiError> {
    let scope = Scope::parse(scope)?;
    let rows = crate::policies::rows_at(state, tenant, &scope).await?;
    let e = crate::policies::effective(state, tenant, &scope).await?;
    let set = rows
        .into_iter()
        .map(|r| SetRow {
            key: r.key,
            value: r.value.to_string(),
            updated: vocabulary::time::rfc3339_ms(r.updated_at),
        })
        .collect();
    let effective = e
        .settings
        .iter()
        .map(|(k, s)| EffectiveRow {
            key: k.name(),
            value: s.value.to_string(),
            from: s.level.to_string(),
            overriding: s.overrode.as_ref().map(|(l, v)| format!("{l} {v}")),
        })
        .collect();
    Ok((scope.as_str().to_string(), set, effective))
}

fn link(tenant: &str, scope: &str) -> String {
    format!("/policies?tenant={}&scope={}", encode(tenant), encode(scope))
}

#[derive(Debug, Deserialize)]
pub struct KeyForm {
    csrf: Option<String>,
    tenant: String,
    scope: String,
    key: String,
    /// The value as `sluice policy set` takes it; unused by unset.
    #[serde(default)]
    value: String,
}

/// The operator's tenant the form names, once its CSRF token is checked.
async fn tenant(
    state: &AppState,
    headers: &HeaderMap,
    f: &KeyForm,
) -> Result<record::directory::Tenant, Refusal> {
    let who = who(state, headers).await?;
    check_csrf(&who, f.csrf.as_deref())?;
    forms::granted(&who, &f.tenant).cloned()
}

/// `POST /policies/set`: one key set at the scope (checked against every
/// scope of the tenant, as the API's PUT is).
pub async fn set(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<KeyForm>) -> Page {
    let t = tenant(&state, &headers, &f).await?;
    let done = async {
        let scope = Scope::parse(&f.scope)?;
        let k = Key::parse(&f.key)?;
        let v = k.value_from_text(f.value.trim())?;
        let change = Change { set: vec![(k.clone(), Some(v.clone()))], unset_all: false };
        crate::policies::change(&state, t.id, &scope, &change).await?;
        tracing::info!(tenant = %t.name, %scope, key = %k, value = %v, "policy set (dashboard)");
        Ok::<_, ApiError>(format!("{k} set to {v} at {scope}."))
    }
    .await;
    forms::see_other(&link(&t.name, f.scope.trim()), &forms::result(done)?)
}

/// `POST /policies/unset`: one key unset at the scope.
pub async fn unset(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<KeyForm>) -> Page {
    let t = tenant(&state, &headers, &f).await?;
    let done = async {
        let scope = Scope::parse(&f.scope)?;
        crate::policies::unset(&state, t.id, &scope, Some(&f.key)).await?;
        tracing::info!(tenant = %t.name, %scope, key = %f.key, "policy unset (dashboard)");
        Ok::<_, ApiError>(format!("{} unset at {scope}.", f.key.trim()))
    }
    .await;
    forms::see_other(&link(&t.name, f.scope.trim()), &forms::result(done)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_link_keeps_an_address_encoded() {
        assert_eq!(link("acme", "ann@dest.test"), "/policies?tenant=acme&scope=ann%40dest.test");
    }
}
