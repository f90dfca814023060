//! The event log and the quarantine store, implemented on PostgreSQL:
//! each method hands on to the backend's own (in `log/`, `quarantine.rs`).

use std::sync::Arc;

use tokio::sync::watch;

use super::Postgres;
use super::log::Note;
use crate::directory::Tenant;
use crate::events::{
    Describe, EventLog, EventQuery, EventRow, MessageView, NewEvent, NewMessage, ProviderLink,
    RecipientHistory, TrackTarget,
};
use crate::quarantine::{
    FolderInfo, MessageMeta, MessageRow, NewCopy, Placed, QuarantineStore, ReleaseInfo, Swept,
};
use crate::{BoxFuture, RecordError};

type Res<'a, T> = BoxFuture<'a, Result<T, RecordError>>;

impl EventLog for Postgres {
    fn accept(&self, msg: NewMessage) -> Res<'_, ()> {
        Box::pin(self.accept_message(msg))
    }
    fn record(&self, event: NewEvent) -> Res<'_, i64> {
        Box::pin(self.record_event(event))
    }
    fn note_message(&self, _at: i64, describe: Describe) {
        self.send_note(Note::Message(describe))
    }
    fn note(&self, event: NewEvent) {
        self.send_note(Note::Event(Box::new(event)))
    }
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.flush_notes())
    }
    fn idempotent<'a>(&'a self, tenant: i64, key: &'a str) -> Res<'a, Option<(Vec<u8>, String)>> {
        Box::pin(self.idempotent_response(tenant, key))
    }
    fn message<'a>(
        &'a self,
        tenant: &'a Tenant,
        id: &'a str,
        as_of: Option<i64>,
    ) -> Res<'a, Option<MessageView>> {
        Box::pin(self.message_view(tenant, id, as_of))
    }
    fn recipient<'a>(
        &'a self,
        tenant: &'a Tenant,
        address: &'a str,
        as_of: Option<i64>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Res<'a, RecipientHistory> {
        Box::pin(self.history(tenant, address, as_of, cursor, limit))
    }
    fn events<'a>(&'a self, tenant: &'a Tenant, q: &'a EventQuery) -> Res<'a, (Vec<EventRow>, Option<i64>)> {
        Box::pin(self.event_page(tenant, q))
    }
    fn has_message<'a>(&'a self, id: &'a str) -> Res<'a, bool> {
        Box::pin(self.has(id))
    }
    fn known_messages<'a>(&'a self, ids: &'a [String]) -> Res<'a, Vec<String>> {
        Box::pin(crate::sql::known_messages(&self.pool, ids))
    }
    fn find_message<'a>(&'a self, key: &'a str) -> Res<'a, Option<(Tenant, String)>> {
        Box::pin(self.find(key))
    }
    fn recipient_of<'a>(&'a self, message: &'a str, idx: i64) -> Res<'a, Option<(i64, String)>> {
        Box::pin(self.recipient_at(message, idx))
    }
    fn recipient_status<'a>(&'a self, message: &'a str, idx: i64) -> Res<'a, Option<String>> {
        Box::pin(self.status_of(message, idx))
    }
    fn recorded<'a>(&'a self, source: &'a str) -> Res<'a, bool> {
        Box::pin(self.has_source(source))
    }
    fn by_message_id<'a>(
        &'a self,
        message_id: &'a str,
        address: &'a str,
    ) -> Res<'a, Option<(i64, String, i64)>> {
        Box::pin(self.sent_with(message_id, address))
    }
    fn record_all(&self, events: Vec<NewEvent>) -> Res<'_, Vec<i64>> {
        Box::pin(self.record_events(events))
    }
    fn recorded_sources<'a>(&'a self, sources: &'a [String]) -> Res<'a, Vec<String>> {
        Box::pin(crate::sql::recorded_sources(&self.pool, sources))
    }
    fn claim_nonce<'a>(
        &'a self,
        provider: &'a str,
        nonce: &'a str,
        at: i64,
        forget_before: i64,
    ) -> Res<'a, bool> {
        Box::pin(crate::sql::claim_nonce(&self.pool, provider, nonce, at, forget_before))
    }
    fn release_nonce<'a>(&'a self, provider: &'a str, nonce: &'a str) -> Res<'a, ()> {
        Box::pin(crate::sql::release_nonce(&self.pool, provider, nonce))
    }
    fn keep_links<'a>(&'a self, message: &'a str, urls: &'a [String]) -> Res<'a, ()> {
        Box::pin(crate::sql::keep_links(&self.pool, message, urls))
    }
    fn tracking_target<'a>(
        &'a self,
        message: &'a str,
        idx: i64,
        link: Option<i64>,
    ) -> Res<'a, Option<TrackTarget>> {
        Box::pin(crate::sql::tracking_target(&self.pool, message, idx, link))
    }
    fn provider_message<'a>(&'a self, provider: &'a str, id: &'a str) -> Res<'a, Option<(i64, String)>> {
        Box::pin(crate::sql::provider_message(&self.pool, provider, id))
    }
    fn link_provider_id<'a>(&'a self, link: &'a ProviderLink) -> Res<'a, ()> {
        Box::pin(crate::sql::link_provider_id(&self.pool, link))
    }
    fn forget_months_before(&self, month: i64) -> Res<'_, u64> {
        Box::pin(self.drop_months_before(month))
    }
    fn stats<'a>(
        &'a self,
        tenant: &'a Tenant,
        q: &'a crate::stats::StatsQuery,
    ) -> Res<'a, crate::stats::Stats> {
        Box::pin(crate::stats_sql::stats(&self.pool, crate::stats_sql::Dialect::POSTGRES, tenant, q))
    }
}

impl QuarantineStore for Postgres {
    fn add_account<'a>(&'a self, name: &'a str, password: &'a str, domains: &'a [String]) -> Res<'a, ()> {
        Box::pin(self.add_store_account(name, password, domains))
    }
    fn set_retention<'a>(&'a self, account: &'a str, folder: Option<&'a str>, days: i64) -> Res<'a, ()> {
        Box::pin(self.retention(account, folder, days))
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
    fn verify_account<'a>(&'a self, name: &'a str, password: &'a str) -> Res<'a, bool> {
        Box::pin(self.account_password(name, password))
    }
    fn remove_account<'a>(&'a self, name: &'a str) -> Res<'a, Option<Swept>> {
        Box::pin(self.remove_account(name))
    }

    fn accounts(&self) -> Res<'_, Vec<String>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar("SELECT name FROM accounts ORDER BY name").fetch_all(&self.pool).await?)
        })
    }

    fn domain_accounts(&self) -> Res<'_, Vec<(String, String)>> {
        Box::pin(async move {
            let sql = "SELECT d.domain, a.name FROM account_domains d JOIN accounts a ON a.id = d.account_id";
            Ok(sqlx::query_as(sql).fetch_all(&self.pool).await?)
        })
    }
    fn folders<'a>(&'a self, account: &'a str) -> Res<'a, Vec<FolderInfo>> {
        Box::pin(self.account_folders(account))
    }
    fn folder<'a>(&'a self, account: &'a str, name: &'a str) -> Res<'a, Option<FolderInfo>> {
        Box::pin(self.account_folder(account, name))
    }
    fn messages(&self, folder_id: i64) -> Res<'_, Arc<Vec<MessageRow>>> {
        Box::pin(self.folder_messages(folder_id))
    }
    fn read_blob<'a>(&'a self, hash: &'a str) -> Res<'a, Vec<u8>> {
        Box::pin(self.blob(hash))
    }
    fn read_blobs(&self, hashes: Vec<String>) -> BoxFuture<'_, Vec<Option<Vec<u8>>>> {
        Box::pin(self.blobs(hashes))
    }
    fn store<'a>(
        &'a self,
        account: &'a str,
        folder: &'a str,
        bytes: &'a [u8],
        meta: &'a MessageMeta,
    ) -> Res<'a, Placed> {
        let copy = NewCopy {
            account: account.into(),
            folder: folder.into(),
            bytes: bytes.to_vec(),
            meta: meta.clone(),
        };
        Box::pin(async move {
            let placed = self.file(vec![copy]).await.pop();
            placed.unwrap_or_else(|| Err(RecordError::Unavailable("not filed".into())))
        })
    }
    fn store_many(&self, copies: Vec<NewCopy>) -> BoxFuture<'_, Vec<Result<Placed, RecordError>>> {
        Box::pin(self.file(copies))
    }
    fn set_flags<'a>(&'a self, folder_id: i64, flags: &'a [(i64, String)]) -> Res<'a, ()> {
        Box::pin(self.flags(folder_id, flags))
    }
    fn copy<'a>(&'a self, from: i64, uids: &'a [i64], to: i64) -> Res<'a, (i64, Vec<(i64, i64)>)> {
        Box::pin(self.copy_messages(from, uids, to))
    }
    fn expunge<'a>(&'a self, folder_id: i64, uids: &'a [i64]) -> Res<'a, u64> {
        Box::pin(self.expunge_messages(folder_id, uids))
    }
    fn release_info(&self, folder_id: i64, uid: i64) -> Res<'_, Option<ReleaseInfo>> {
        Box::pin(self.release(folder_id, uid))
    }
    fn filed_from<'a>(&'a self, account: &'a str, queue_id: &'a str) -> Res<'a, Option<(String, i64)>> {
        Box::pin(self.filed(account, queue_id))
    }
    fn sweep<'a>(&'a self, as_of: i64, retention: &'a crate::quarantine::Retention) -> Res<'a, Swept> {
        Box::pin(self.sweep_expired(as_of, retention))
    }
    fn expired<'a>(
        &'a self,
        as_of: i64,
        retention: &'a crate::quarantine::Retention,
    ) -> Res<'a, Vec<(String, String, u64)>> {
        Box::pin(self.expired(as_of, retention))
    }
}
