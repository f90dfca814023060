//! The Quarantine page (`/quarantine`): the store accounts of the tenants
//! the operator sees, their folders and counts; a folder's copies by UID
//! (`/quarantine/{account}/{folder}`, keyset pages), each with Release
//! (re-injected to its original recipients, as `sluice quarantine
//! release` does) and Delete (confirmed by a checkbox). It calls
//! `crate::ops::quarantine`, as `/v1/quarantine…` does. Also what the
//! message page shows of a message's copies and its header fields.

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;

use super::auth::{check_csrf, who};
use super::queue::{outcome, read, scope, with_note};
use super::{Page, flash, html};
use crate::AppState;
use crate::ops::headers::Header;
use crate::ops::quarantine::{self, AccountView, CopyView};
use crate::ops::{OpsError, Scope};

/// Copies per page.
const PAGE_SIZE: usize = 50;

#[derive(Template)]
#[template(path = "dashboard/quarantine.html")]
struct AccountsPage<'a> {
    operator: &'a str,
    csrf: &'a str,
    note: Option<String>,
    accounts: Vec<AccountView>,
}

/// `GET /quarantine`.
pub async fn accounts(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let who = who(&state, &headers).await?;
    let note = flash::take(&headers);
    let had_note = note.is_some();
    let accounts = read(quarantine::accounts(&state, &scope(&who)).await)?;
    with_note(html(&AccountsPage { operator: who.name(), csrf: who.csrf(), note, accounts }), had_note)
}

#[derive(Template)]
#[template(path = "dashboard/quarantine_folder.html")]
struct FolderPage<'a> {
    operator: &'a str,
    csrf: &'a str,
    note: Option<String>,
    account: &'a str,
    folder: &'a str,
    here: String,
    copies: Vec<CopyView>,
    next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FolderQuery {
    cursor: Option<i64>,
}

/// The folder page's path.
fn folder_path(account: &str, folder: &str) -> String {
    format!("/quarantine/{}/{}", super::pages::encode(account), super::pages::encode(folder))
}

/// `GET /quarantine/{account}/{folder}`.
pub async fn folder(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((account, folder)): Path<(String, String)>,
    Query(q): Query<FolderQuery>,
) -> Page {
    let who = who(&state, &headers).await?;
    let note = flash::take(&headers);
    let had_note = note.is_some();
    let (copies, next) =
        read(quarantine::copies(&state, &scope(&who), (&account, &folder), q.cursor, PAGE_SIZE).await)?;
    let here = folder_path(&account, &folder);
    let next = next.map(|c| format!("{here}?cursor={c}"));
    let page = FolderPage {
        operator: who.name(),
        csrf: who.csrf(),
        note,
        account: &account,
        folder: &folder,
        here,
        copies,
        next,
    };
    with_note(html(&page), had_note)
}

#[derive(Debug, Deserialize)]
pub struct CopyForm {
    csrf: Option<String>,
    /// The delete checkbox.
    confirm: Option<String>,
    /// The page to go back to (a local path; the folder's by default).
    back: Option<String>,
}

fn back_to(f: &CopyForm, account: &str, folder: &str) -> String {
    f.back.clone().filter(|b| flash::local(b)).unwrap_or_else(|| folder_path(account, folder))
}

/// `POST /quarantine/{account}/{folder}/{uid}/release`.
pub async fn release(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((account, folder, uid)): Path<(String, String, i64)>,
    Form(f): Form<CopyForm>,
) -> Page {
    let who = who(&state, &headers).await?;
    check_csrf(&who, f.csrf.as_deref())?;
    let to = back_to(&f, &account, &folder);
    outcome(&to, quarantine::release(&state, &scope(&who), &account, &folder, uid).await)
}

/// `POST /quarantine/{account}/{folder}/{uid}/delete`: only with the
/// confirm box ticked.
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((account, folder, uid)): Path<(String, String, i64)>,
    Form(f): Form<CopyForm>,
) -> Page {
    let who = who(&state, &headers).await?;
    check_csrf(&who, f.csrf.as_deref())?;
    let to = back_to(&f, &account, &folder);
    if f.confirm.as_deref() != Some("yes") {
        return Ok(flash::back(&to, "not deleted: tick \"confirm\" to delete a copy"));
    }
    outcome(&to, quarantine::delete(&state, &scope(&who), &account, &folder, uid).await)
}

/// What the message page shows beyond the record: its quarantined copies
/// still kept, and its header fields with where they were read from.
#[derive(Default)]
pub struct Extra {
    pub copies: Vec<CopyView>,
    /// Copies filed once and since released, deleted or swept.
    pub gone: Vec<(String, String, i64)>,
    pub headers: Vec<Header>,
    /// Where the headers were read (`None`: nowhere any more).
    pub headers_from: Option<String>,
    pub note: Option<String>,
}

/// The message's copies (those of accounts the operator sees) and
/// headers: from a kept copy, else from the spool while it is queued.
pub async fn extra(state: &AppState, scope: &Scope, m: &crate::view::Message) -> Extra {
    let mut x = Extra::default();
    for (account, folder, uid) in quarantine::filed(m) {
        match quarantine::copy(state, scope, &account, &folder, uid).await {
            Ok(c) => x.copies.push(c),
            Err(OpsError::NotFound(_)) => x.gone.push((account, folder, uid)),
            Err(e) => tracing::warn!(error = ?e, "dashboard: a copy could not be read"),
        }
    }
    if let Some(c) = x.copies.iter().find(|c| c.headers.is_some()) {
        x.headers = c.headers.clone().unwrap_or_default();
        x.headers_from = Some(format!("the quarantined copy {}/{} UID {}", c.account, c.folder, c.uid));
    } else if let Ok(ops) = crate::ops::operations(state)
        && let Some(bytes) = ops.content(&m.id).await
    {
        x.headers = crate::ops::headers::parse(&bytes);
        x.headers_from = Some("the queue (the message is still queued)".into());
    }
    x
}
