//! The quarantine store as a caller sees it: the accounts of its tenants
//! with their folders and counts, a folder's copies by UID (keyset
//! pages), one copy with its header fields, and release (through
//! [`super::Operations`], the path `sluice quarantine release` takes) and
//! delete. Another tenant's account is a 404.

use serde::Serialize;

use super::headers::{self, Header};
use super::{OpsError, Owners, Scope, operations};
use crate::AppState;

/// A folder and how many copies it holds.
#[derive(Debug, Clone, Serialize)]
pub struct FolderView {
    pub name: String,
    pub messages: usize,
}

/// A store account (`openapi.json`'s `QuarantineAccount`).
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub name: String,
    pub tenant: Option<String>,
    pub folders: Vec<FolderView>,
}

/// One stored copy (`openapi.json`'s `QuarantinedCopy`): its row and what
/// its header says; `headers` only when one copy is asked for.
#[derive(Debug, Clone, Serialize)]
pub struct CopyView {
    pub account: String,
    pub folder: String,
    pub uid: i64,
    pub size: i64,
    /// Unix seconds.
    pub received_at: i64,
    pub received_at_rfc3339: String,
    pub flags: String,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<Header>>,
}

/// The account if it is in `scope` (a 404 otherwise, unknown or not).
async fn account_in_scope(state: &AppState, scope: &Scope, account: &str) -> Result<(), OpsError> {
    let owners = Owners::read(&state.record).await?;
    let known = state.record.quarantine.accounts().await?.iter().any(|a| a == account);
    match known && scope.sees(owners.account(account)) {
        true => Ok(()),
        false => Err(OpsError::NotFound("account")),
    }
}

/// Every account in `scope`, by name, with its folders' counts.
pub async fn accounts(state: &AppState, scope: &Scope) -> Result<Vec<AccountView>, OpsError> {
    let owners = Owners::read(&state.record).await?;
    let q = &state.record.quarantine;
    let mut out = Vec::new();
    for name in q.accounts().await? {
        let tenant = owners.account(&name).map(str::to_string);
        if !scope.sees(tenant.as_deref()) {
            continue;
        }
        let mut folders = Vec::new();
        for f in q.folders(&name).await? {
            let messages = q.messages(f.id).await?.len();
            folders.push(FolderView { name: f.name, messages });
        }
        out.push(AccountView { name, tenant, folders });
    }
    Ok(out)
}

/// A page of a folder's copies by UID after `cursor`, at most `limit`,
/// and the next page's cursor (the last UID shown).
pub async fn copies(
    state: &AppState,
    scope: &Scope,
    at: (&str, &str),
    cursor: Option<i64>,
    limit: usize,
) -> Result<(Vec<CopyView>, Option<i64>), OpsError> {
    page_of(state, scope, at, cursor, limit, false).await
}

/// The page, each copy with its whole header when `with_headers`.
async fn page_of(
    state: &AppState,
    scope: &Scope,
    (account, folder): (&str, &str),
    cursor: Option<i64>,
    limit: usize,
    with_headers: bool,
) -> Result<(Vec<CopyView>, Option<i64>), OpsError> {
    account_in_scope(state, scope, account).await?;
    let q = &state.record.quarantine;
    let f = q.folder(account, folder).await?.ok_or(OpsError::NotFound("folder"))?;
    let rows = q.messages(f.id).await?;
    let after = cursor.unwrap_or(0);
    let page: Vec<_> = rows.iter().filter(|r| r.uid > after).take(limit + 1).cloned().collect();
    let more = page.len() > limit;
    let page = &page[..page.len().min(limit)];
    let blobs = q.read_blobs(page.iter().map(|r| r.blob.to_string()).collect()).await;
    let out: Vec<CopyView> = page
        .iter()
        .zip(blobs)
        .map(|(r, bytes)| {
            let h = bytes.map(|b| headers::parse(&b)).unwrap_or_default();
            let get = |n: &str| headers::field(&h, n).map(str::to_string);
            CopyView {
                account: account.to_string(),
                folder: f.name.clone(),
                uid: r.uid,
                size: r.size,
                received_at: r.received_at,
                received_at_rfc3339: vocabulary::time::rfc3339_secs(r.received_at),
                flags: r.flags.clone(),
                from: get("From"),
                subject: get("Subject"),
                message_id: get("Message-ID"),
                headers: with_headers.then_some(h),
            }
        })
        .collect();
    let next = if more { out.last().map(|c| c.uid) } else { None };
    Ok((out, next))
}

/// One copy with its header fields.
pub async fn copy(
    state: &AppState,
    scope: &Scope,
    account: &str,
    folder: &str,
    uid: i64,
) -> Result<CopyView, OpsError> {
    let (page, _) = page_of(state, scope, (account, folder), Some(uid - 1), 1, true).await?;
    page.into_iter().find(|c| c.uid == uid).ok_or(OpsError::NotFound("message"))
}

/// Re-injects a copy in `scope` to its original recipients (a new queued
/// message, relayed as any other): the release's words.
pub async fn release(
    state: &AppState,
    scope: &Scope,
    account: &str,
    folder: &str,
    uid: i64,
) -> Result<String, OpsError> {
    copy(state, scope, account, folder, uid).await?;
    operations(state)?.release_copy(account, folder, uid).await.map_err(OpsError::Invalid)
}

/// Deletes a copy in `scope` for good.
pub async fn delete(
    state: &AppState,
    scope: &Scope,
    account: &str,
    folder: &str,
    uid: i64,
) -> Result<String, OpsError> {
    account_in_scope(state, scope, account).await?;
    let q = &state.record.quarantine;
    let f = q.folder(account, folder).await?.ok_or(OpsError::NotFound("folder"))?;
    match q.expunge(f.id, &[uid]).await? {
        0 => Err(OpsError::NotFound("message")),
        _ => {
            tracing::info!(account, folder, uid, "quarantined copy deleted");
            Ok(format!("deleted UID {uid} from {account}/{folder}"))
        }
    }
}

/// Where a message's copies were filed: (account, folder, UID) of each
/// `filed` event's detail.
pub fn filed(m: &crate::view::Message) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for e in m.recipients.iter().flat_map(|r| &r.events) {
        if e.kind != record::events::EventKind::Filed {
            continue;
        }
        let Some(d) = e.detail.as_deref().and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        else {
            continue;
        };
        if let (Some(a), Some(f), Some(u)) = (d["account"].as_str(), d["folder"].as_str(), d["uid"].as_i64())
        {
            out.push((a.to_string(), f.to_string(), u));
        }
    }
    out
}
