//! The Suppressions page (`/suppressions`): one tenant's list, searched by
//! address or its beginning, an entry added or removed, the list exported
//! as CSV. Every read and write is the API's: the entry of one address as
//! `GET /v1/suppressions/{address}`, the list in address order from a
//! cursor as `GET /v1/suppressions?cursor=`, an entry added with the
//! checks of `POST /v1/suppressions` (`read::suppress`), removed as
//! `DELETE /v1/suppressions/{address}`, the CSV of
//! `GET /v1/suppressions/export` (`read::export_csv`); entries are shown
//! through the API's `SuppressionView`.

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use record::directory::Tenant;
use record::events::now_ms;
use serde::Deserialize;

use super::Page;
use super::auth::{check_csrf, failure, unavailable, who};
use super::forms::{self, Flash, encode};
use crate::AppState;
use crate::view::SuppressionView;

/// Entries per page.
const PAGE_SIZE: u32 = 100;

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    #[serde(default)]
    tenant: String,
    /// An address, or the beginning of addresses.
    #[serde(default)]
    q: String,
    /// The last address of the page before.
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard/suppressions.html")]
struct SuppressionsPage<'a> {
    operator: &'a str,
    csrf: &'a str,
    flash: Option<Flash>,
    tenants: Vec<String>,
    tenant: String,
    q: String,
    /// The entry of the address searched for, when there is one.
    exact: Option<SuppressionView>,
    rows: Vec<SuppressionView>,
    next: Option<String>,
}

/// `GET /suppressions`: the list (from `q`, or the cursor), and the entry
/// of `q` when it is an address on the list.
pub async fn list(State(state): State<AppState>, headers: HeaderMap, Query(p): Query<Params>) -> Page {
    let who = who(&state, &headers).await?;
    let flash = forms::flash(&headers);
    let Some(t) = forms::pick(&who, Some(&p.tenant))? else {
        return Err(failure(StatusCode::NOT_FOUND));
    };
    let q = p.q.trim().to_lowercase();
    let store = &state.record.suppressions;
    let exact = match q.contains('@') {
        true => store.suppression(t, &q, now_ms()).await.map_err(unavailable)?.map(SuppressionView::from),
        false => None,
    };
    // The API's cursor: entries after it in address order. A search starts
    // at `q` itself, and keeps the addresses that begin with it.
    let cursor = p.cursor.clone().or_else(|| Some(q.clone()).filter(|q| !q.is_empty()));
    let page = store.suppressions(t, cursor.as_deref(), PAGE_SIZE).await.map_err(unavailable)?;
    let full = page.len() as u32 == PAGE_SIZE;
    let rows: Vec<SuppressionView> =
        page.into_iter().take_while(|s| s.address.starts_with(&q)).map(SuppressionView::from).collect();
    let next = (full && rows.len() as u32 == PAGE_SIZE)
        .then(|| rows.last().map(|s| page_link(&t.name, &q, Some(&s.entry.address))))
        .flatten();
    let page = SuppressionsPage {
        operator: who.name(),
        csrf: who.csrf(),
        flash: flash.clone(),
        tenants: forms::names(&who),
        tenant: t.name.clone(),
        q,
        exact,
        rows,
        next,
    };
    forms::page(&page, &flash)
}

/// The page of `tenant`'s list for `q`, from `cursor`.
fn page_link(tenant: &str, q: &str, cursor: Option<&str>) -> String {
    let mut out = format!("/suppressions?tenant={}&q={}", encode(tenant), encode(q));
    if let Some(c) = cursor {
        out.push_str(&format!("&cursor={}", encode(c)));
    }
    out
}

#[derive(Debug, Deserialize)]
pub struct AddForm {
    csrf: Option<String>,
    tenant: String,
    address: String,
    #[serde(default)]
    reason: String,
    /// RFC 3339 or milliseconds; never when empty.
    #[serde(default)]
    expires_at: String,
}

/// `POST /suppressions/add`: an entry by hand, checked as the API checks it.
pub async fn add(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<AddForm>) -> Page {
    let who = who(&state, &headers).await?;
    check_csrf(&who, f.csrf.as_deref())?;
    let t = forms::granted(&who, &f.tenant)?;
    let reason = Some(f.reason.trim().to_string()).filter(|r| !r.is_empty());
    let address = f.address.trim();
    let done = crate::read::suppress(&state, t, address, reason, Some(&f.expires_at))
        .await
        .map(|s| format!("{} suppressed ({}).", s.address, s.reason));
    forms::see_other(&page_link(&t.name, address, None), &forms::result(done)?)
}

#[derive(Debug, Deserialize)]
pub struct RemoveForm {
    csrf: Option<String>,
    tenant: String,
    address: String,
}

/// `POST /suppressions/remove`: the entry removed, as the API's DELETE.
pub async fn remove(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<RemoveForm>) -> Page {
    let who = who(&state, &headers).await?;
    check_csrf(&who, f.csrf.as_deref())?;
    let t = forms::granted(&who, &f.tenant)?;
    let address = f.address.trim();
    let removed = state.record.suppressions.unsuppress(t, address).await.map_err(unavailable)?;
    let flash = match removed {
        true => Flash { ok: true, text: format!("{address} removed from the suppression list.") },
        false => Flash { ok: false, text: format!("{address} is not on the suppression list.") },
    };
    forms::see_other(&page_link(&t.name, "", None), &flash)
}

#[derive(Debug, Default, Deserialize)]
pub struct ExportParams {
    #[serde(default)]
    tenant: String,
}

/// `GET /suppressions/export`: the tenant's list as the API's CSV, as a
/// download.
pub async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<ExportParams>,
) -> Page {
    let who = who(&state, &headers).await?;
    let Some(t) = forms::pick(&who, Some(&p.tenant))? else {
        return Err(failure(StatusCode::NOT_FOUND));
    };
    let csv = crate::read::export_csv(&state, t).await.map_err(|e| unavailable(e.message))?;
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", file_name(t)))
        .map_err(|_| failure(StatusCode::INTERNAL_SERVER_ERROR))?;
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")),
        (header::CONTENT_DISPOSITION, disposition),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    Ok((headers, csv).into_response())
}

/// `suppressions-TENANT.csv`, the name kept to letters, digits, `-` and `_`.
fn file_name(t: &Tenant) -> String {
    let name: String =
        t.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("suppressions-{name}.csv")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_is_named_after_its_tenant_in_safe_characters() {
        let t = Tenant { id: 1, name: "acme \"corp\"/eu".into() };
        assert_eq!(file_name(&t), "suppressions-acme__corp__eu.csv");
    }

    #[test]
    fn a_page_link_keeps_the_search_and_the_cursor_encoded() {
        assert_eq!(
            page_link("acme", "bo b", Some("bob@x.test")),
            "/suppressions?tenant=acme&q=bo%20b&cursor=bob%40x.test"
        );
        assert_eq!(page_link("a&b", "", None), "/suppressions?tenant=a%26b&q=");
    }
}
