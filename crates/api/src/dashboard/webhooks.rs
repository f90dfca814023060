//! The Webhooks page (`/webhooks`): one tenant's endpoints for webhooks
//! out, made (with a filter of event types; the secret shown once, as the
//! API shows it), deleted, enabled again; and each endpoint's delivery log
//! (`/webhooks/{id}`) with a replay. Every call is the API's
//! (`webhooks_out::routes`): `create_endpoint` with its checks, the
//! record's `list`/`delete`/`enable`/`attempts`, `replay_what` and
//! `replay_on`; endpoints are shown through the API's `View`, the log
//! through the record's `Attempt` the API serializes.

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use record::directory::Tenant;
use record::events::{EventKind, now_ms};
use record::webhooks::Attempt;
use serde::Deserialize;

use super::auth::{check_csrf, failure, unavailable, who};
use super::forms::{self, Flash, encode};
use super::{Page, Refusal};
use crate::AppState;
use crate::webhooks_out::routes::{self, Create, View};

/// Log lines per page.
const PAGE_SIZE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    #[serde(default)]
    tenant: String,
    cursor: Option<i64>,
}

#[derive(Template)]
#[template(path = "dashboard/webhooks.html")]
struct EndpointsPage<'a> {
    operator: &'a str,
    csrf: &'a str,
    flash: Option<Flash>,
    tenants: Vec<String>,
    tenant: String,
    endpoints: Vec<View>,
    kinds: Vec<&'static str>,
}

/// `GET /webhooks`: the tenant's endpoints and the form that makes one.
pub async fn list(State(state): State<AppState>, headers: HeaderMap, Query(p): Query<Params>) -> Page {
    let who = who(&state, &headers).await?;
    let flash = forms::flash(&headers);
    let Some(t) = forms::pick(&who, Some(&p.tenant))? else {
        return Err(failure(StatusCode::NOT_FOUND));
    };
    let all = state.record.webhooks.list(t.id).await.map_err(unavailable)?;
    let page = EndpointsPage {
        operator: who.name(),
        csrf: who.csrf(),
        flash: flash.clone(),
        tenants: forms::names(&who),
        tenant: t.name.clone(),
        endpoints: all.into_iter().map(|e| View::of(e, false)).collect(),
        kinds: EventKind::ALL.iter().map(|k| k.as_str()).collect(),
    };
    forms::page(&page, &flash)
}

#[derive(Template)]
#[template(path = "dashboard/webhook.html")]
struct LogPage<'a> {
    operator: &'a str,
    csrf: &'a str,
    flash: Option<Flash>,
    tenant: String,
    endpoint: View,
    log: Vec<Line>,
    next: Option<String>,
}

/// A line of the delivery log, its time as RFC 3339.
pub struct Line {
    pub a: Attempt,
    pub at: String,
}

/// `GET /webhooks/{id}`: an endpoint and its delivery log, newest first
/// (a page from `cursor`); another tenant's endpoint is a 404.
pub async fn log(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> Page {
    let who = who(&state, &headers).await?;
    let flash = forms::flash(&headers);
    let Some(t) = forms::pick(&who, Some(&p.tenant))? else {
        return Err(failure(StatusCode::NOT_FOUND));
    };
    let store = &state.record.webhooks;
    let e = store.get(t.id, &id).await.map_err(unavailable)?.ok_or(failure(StatusCode::NOT_FOUND))?;
    let page = store.attempts(t.id, &id, p.cursor, PAGE_SIZE).await.map_err(unavailable)?;
    let (log, next) = page.ok_or(failure(StatusCode::NOT_FOUND))?;
    let next = next.map(|c| format!("{}&cursor={c}", endpoint_link(&t.name, &id)));
    let page = LogPage {
        operator: who.name(),
        csrf: who.csrf(),
        flash: flash.clone(),
        tenant: t.name.clone(),
        endpoint: View::of(e, false),
        log: log.into_iter().map(|a| Line { at: vocabulary::time::rfc3339_ms(a.at), a }).collect(),
        next,
    };
    forms::page(&page, &flash)
}

fn list_link(tenant: &str) -> String {
    format!("/webhooks?tenant={}", encode(tenant))
}

fn endpoint_link(tenant: &str, id: &str) -> String {
    format!("/webhooks/{}?tenant={}", encode(id), encode(tenant))
}

/// A form's fields (`events` may come several times).
struct Fields(Vec<(String, String)>);

impl Fields {
    fn one(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str()).trim()
    }
    fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
    /// The session's operator, once the CSRF token is checked, and the
    /// tenant the form names (a 404 unless granted).
    async fn tenant(&self, state: &AppState, headers: &HeaderMap) -> Result<Tenant, Refusal> {
        let who = who(state, headers).await?;
        check_csrf(&who, Some(self.one("csrf")))?;
        forms::granted(&who, self.one("tenant")).cloned()
    }
}

/// `POST /webhooks/create`: an endpoint made with the API's checks; its
/// secret said once.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> Page {
    let f = Fields(f);
    let t = &f.tenant(&state, &headers).await?;
    let name = &t.name;
    let description = Some(f.one("description").to_string()).filter(|d| !d.is_empty());
    let req = Create { url: f.one("url").to_string(), events: f.all("events"), description, batch: None };
    let done = routes::create_endpoint(&state, t, req)
        .await
        .map(|e| format!("Endpoint {} created. Its signing secret, shown only now: {}", e.id, e.secret));
    forms::see_other(&list_link(name), &forms::result(done)?)
}

/// `POST /webhooks/{id}/delete`: the endpoint, its deliveries and log gone.
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Vec<(String, String)>>,
) -> Page {
    let f = Fields(f);
    let t = f.tenant(&state, &headers).await?;
    let (tenant, name) = (t.id, &t.name);
    if !state.record.webhooks.delete(tenant, &id).await.map_err(unavailable)? {
        return Err(failure(StatusCode::NOT_FOUND));
    }
    tracing::info!(tenant = %name, endpoint = %id, "webhook endpoint deleted (dashboard)");
    forms::see_other(&list_link(name), &Flash { ok: true, text: format!("Endpoint {id} deleted.") })
}

/// `POST /webhooks/{id}/enable`: a disabled endpoint enabled again.
pub async fn enable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Vec<(String, String)>>,
) -> Page {
    let f = Fields(f);
    let t = f.tenant(&state, &headers).await?;
    let (tenant, name) = (t.id, &t.name);
    let e = state.record.webhooks.enable(tenant, &id, now_ms()).await.map_err(unavailable)?;
    if e.is_none() {
        return Err(failure(StatusCode::NOT_FOUND));
    }
    tracing::info!(tenant = %name, endpoint = %id, "webhook endpoint enabled (dashboard)");
    forms::see_other(&list_link(name), &Flash { ok: true, text: format!("Endpoint {id} enabled.") })
}

/// `POST /webhooks/{id}/replay`: one event (`event_id`) or those from
/// `since` (until `until`, or now) queued again, as the API's replay.
pub async fn replay(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Vec<(String, String)>>,
) -> Page {
    let f = Fields(f);
    let t = &f.tenant(&state, &headers).await?;
    let name = &t.name;
    let done = async {
        let event_id = match f.one("event_id") {
            "" => None,
            v => Some(v.parse::<i64>().map_err(|_| crate::ApiError::invalid("event_id", "a number"))?),
        };
        let since = crate::read::time("since", Some(f.one("since")))?;
        let until = crate::read::time("until", Some(f.one("until")))?;
        let what = routes::replay_what(event_id, since, until)?;
        let queued = routes::replay_on(&state, t, &id, what).await?;
        Ok(format!("{queued} event(s) queued again."))
    }
    .await;
    forms::see_other(&endpoint_link(name, &id), &forms::result(done)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_fields_are_all_kept_and_a_missing_one_is_empty() {
        let pairs = [("events", "bounced"), ("url", " https://x.test/h "), ("events", "delivered")];
        let f = Fields(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        assert_eq!(f.all("events"), vec!["bounced", "delivered"]);
        assert_eq!(f.one("url"), "https://x.test/h");
        assert_eq!(f.one("description"), "");
    }

    #[test]
    fn links_carry_the_tenant_and_the_id_encoded() {
        assert_eq!(endpoint_link("a b", "ep_1"), "/webhooks/ep_1?tenant=a%20b");
        assert_eq!(list_link("acme"), "/webhooks?tenant=acme");
    }
}
