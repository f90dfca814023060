//! The storage traits, implemented by the SQLite backend's parts: each
//! method hands on to the part's own (inherent) method of the same name.

use std::sync::Arc;

use tokio::sync::watch;

use super::{Log, Quarantine};
use crate::directory::{Directory, DkimKey, KeyInfo, Tenant};
use crate::events::{
    Describe, EventLog, EventQuery, EventRow, MessageView, NewEvent, NewMessage, ProviderLink,
    RecipientHistory, TrackTarget,
};
use crate::quarantine::{
    FolderInfo, MessageMeta, MessageRow, NewCopy, Placed, QuarantineStore, ReleaseInfo, Swept,
};
use crate::suppress::{Suppression, Suppressions};
use crate::{BoxFuture, RecordError};

type Res<'a, T> = BoxFuture<'a, Result<T, RecordError>>;

impl QuarantineStore for Quarantine {
    fn add_account<'a>(&'a self, name: &'a str, password: &'a str, domains: &'a [String]) -> Res<'a, ()> {
        Box::pin(Quarantine::add_account(self, name, password, domains))
    }
    fn set_retention<'a>(&'a self, account: &'a str, folder: Option<&'a str>, days: i64) -> Res<'a, ()> {
        Box::pin(Quarantine::set_retention(self, account, folder, days))
    }
    fn changes(&self) -> watch::Receiver<u64> {
        Quarantine::changes(self)
    }
    fn verify_account<'a>(&'a self, name: &'a str, password: &'a str) -> Res<'a, bool> {
        Box::pin(Quarantine::verify_account(self, name, password))
    }
    fn domain_accounts(&self) -> Res<'_, Vec<(String, String)>> {
        Box::pin(Quarantine::domain_accounts(self))
    }
    fn remove_account<'a>(&'a self, name: &'a str) -> Res<'a, Option<Swept>> {
        Box::pin(Quarantine::remove_account(self, name))
    }
    fn accounts(&self) -> Res<'_, Vec<String>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar("SELECT name FROM accounts ORDER BY name").fetch_all(&self.pool).await?)
        })
    }
    fn folders<'a>(&'a self, account: &'a str) -> Res<'a, Vec<FolderInfo>> {
        Box::pin(Quarantine::folders(self, account))
    }
    fn folder<'a>(&'a self, account: &'a str, name: &'a str) -> Res<'a, Option<FolderInfo>> {
        Box::pin(Quarantine::folder(self, account, name))
    }
    fn messages(&self, folder_id: i64) -> Res<'_, Arc<Vec<MessageRow>>> {
        Box::pin(Quarantine::messages(self, folder_id))
    }
    fn read_blob<'a>(&'a self, hash: &'a str) -> Res<'a, Vec<u8>> {
        Box::pin(Quarantine::read_blob(self, hash))
    }
    fn read_blobs(&self, hashes: Vec<String>) -> BoxFuture<'_, Vec<Option<Vec<u8>>>> {
        Box::pin(Quarantine::read_blobs(self, hashes))
    }
    fn store<'a>(
        &'a self,
        account: &'a str,
        folder: &'a str,
        bytes: &'a [u8],
        meta: &'a MessageMeta,
    ) -> Res<'a, Placed> {
        Box::pin(Quarantine::store(self, account, folder, bytes, meta))
    }
    fn store_many(&self, copies: Vec<NewCopy>) -> BoxFuture<'_, Vec<Result<Placed, RecordError>>> {
        Box::pin(Quarantine::store_many(self, copies))
    }
    fn set_flags<'a>(&'a self, folder_id: i64, flags: &'a [(i64, String)]) -> Res<'a, ()> {
        Box::pin(Quarantine::set_flags(self, folder_id, flags))
    }
    fn copy<'a>(&'a self, from: i64, uids: &'a [i64], to: i64) -> Res<'a, (i64, Vec<(i64, i64)>)> {
        Box::pin(Quarantine::copy(self, from, uids, to))
    }
    fn expunge<'a>(&'a self, folder_id: i64, uids: &'a [i64]) -> Res<'a, u64> {
        Box::pin(Quarantine::expunge(self, folder_id, uids))
    }
    fn release_info(&self, folder_id: i64, uid: i64) -> Res<'_, Option<ReleaseInfo>> {
        Box::pin(Quarantine::release_info(self, folder_id, uid))
    }
    fn filed_from<'a>(&'a self, account: &'a str, queue_id: &'a str) -> Res<'a, Option<(String, i64)>> {
        Box::pin(Quarantine::filed_from(self, account, queue_id))
    }
    fn sweep<'a>(&'a self, as_of: i64, retention: &'a crate::quarantine::Retention) -> Res<'a, Swept> {
        Box::pin(Quarantine::sweep(self, as_of, retention))
    }
    fn expired<'a>(
        &'a self,
        as_of: i64,
        retention: &'a crate::quarantine::Retention,
    ) -> Res<'a, Vec<(String, String, u64)>> {
        Box::pin(Quarantine::expired(self, as_of, retention))
    }
}

impl EventLog for Log {
    fn accept(&self, msg: NewMessage) -> Res<'_, ()> {
        Box::pin(Log::accept(self, msg))
    }
    fn record(&self, event: NewEvent) -> Res<'_, i64> {
        Box::pin(Log::record(self, event))
    }
    fn note_message(&self, at: i64, describe: Describe) {
        Log::note_message(self, at, describe)
    }
    fn note(&self, event: NewEvent) {
        Log::note(self, event)
    }
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(Log::flush(self))
    }
    fn idempotent<'a>(&'a self, tenant: i64, key: &'a str) -> Res<'a, Option<(Vec<u8>, String)>> {
        Box::pin(Log::idempotent(self, tenant, key))
    }
    fn message<'a>(
        &'a self,
        tenant: &'a Tenant,
        id: &'a str,
        as_of: Option<i64>,
    ) -> Res<'a, Option<MessageView>> {
        Box::pin(Log::message(self, tenant, id, as_of))
    }
    fn recipient<'a>(
        &'a self,
        tenant: &'a Tenant,
        address: &'a str,
        as_of: Option<i64>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Res<'a, RecipientHistory> {
        Box::pin(Log::recipient(self, tenant, address, as_of, cursor, limit))
    }
    fn events<'a>(&'a self, tenant: &'a Tenant, q: &'a EventQuery) -> Res<'a, (Vec<EventRow>, Option<i64>)> {
        Box::pin(Log::events(self, tenant, q))
    }
    fn has_message<'a>(&'a self, id: &'a str) -> Res<'a, bool> {
        Box::pin(Log::has_message(self, id))
    }
    fn known_messages<'a>(&'a self, ids: &'a [String]) -> Res<'a, Vec<String>> {
        Box::pin(crate::sql::known_messages(self.pool(), ids))
    }
    fn find_message<'a>(&'a self, key: &'a str) -> Res<'a, Option<(Tenant, String)>> {
        Box::pin(Log::find_message(self, key))
    }
    fn recipient_of<'a>(&'a self, message: &'a str, idx: i64) -> Res<'a, Option<(i64, String)>> {
        Box::pin(Log::recipient_of(self, message, idx))
    }
    fn recipient_status<'a>(&'a self, message: &'a str, idx: i64) -> Res<'a, Option<String>> {
        Box::pin(Log::recipient_status(self, message, idx))
    }
    fn recorded<'a>(&'a self, source: &'a str) -> Res<'a, bool> {
        Box::pin(Log::recorded(self, source))
    }
    fn by_message_id<'a>(
        &'a self,
        message_id: &'a str,
        address: &'a str,
    ) -> Res<'a, Option<(i64, String, i64)>> {
        Box::pin(Log::by_message_id(self, message_id, address))
    }
    fn record_all(&self, events: Vec<NewEvent>) -> Res<'_, Vec<i64>> {
        Box::pin(Log::record_all(self, events))
    }
    fn recorded_sources<'a>(&'a self, sources: &'a [String]) -> Res<'a, Vec<String>> {
        Box::pin(crate::sql::recorded_sources(self.pool(), sources))
    }
    fn claim_nonce<'a>(
        &'a self,
        provider: &'a str,
        nonce: &'a str,
        at: i64,
        forget_before: i64,
    ) -> Res<'a, bool> {
        Box::pin(crate::sql::claim_nonce(self.pool(), provider, nonce, at, forget_before))
    }
    fn release_nonce<'a>(&'a self, provider: &'a str, nonce: &'a str) -> Res<'a, ()> {
        Box::pin(crate::sql::release_nonce(self.pool(), provider, nonce))
    }
    fn keep_links<'a>(&'a self, message: &'a str, urls: &'a [String]) -> Res<'a, ()> {
        Box::pin(crate::sql::keep_links(self.pool(), message, urls))
    }
    fn tracking_target<'a>(
        &'a self,
        message: &'a str,
        idx: i64,
        link: Option<i64>,
    ) -> Res<'a, Option<TrackTarget>> {
        Box::pin(crate::sql::tracking_target(self.pool(), message, idx, link))
    }
    fn provider_message<'a>(&'a self, provider: &'a str, id: &'a str) -> Res<'a, Option<(i64, String)>> {
        Box::pin(crate::sql::provider_message(self.pool(), provider, id))
    }
    fn link_provider_id<'a>(&'a self, link: &'a ProviderLink) -> Res<'a, ()> {
        Box::pin(crate::sql::link_provider_id(self.pool(), link))
    }
    fn forget_months_before(&self, month: i64) -> Res<'_, u64> {
        Box::pin(Log::forget_months_before(self, month))
    }
    fn stats<'a>(
        &'a self,
        tenant: &'a Tenant,
        q: &'a crate::stats::StatsQuery,
    ) -> Res<'a, crate::stats::Stats> {
        Box::pin(crate::stats_sql::stats(self.pool(), crate::stats_sql::Dialect::SQLITE, tenant, q))
    }
}

impl Directory for Log {
    fn tenant<'a>(&'a self, name: &'a str) -> Res<'a, Tenant> {
        Box::pin(Log::tenant(self, name))
    }
    fn tenants(&self) -> Res<'_, Vec<Tenant>> {
        Box::pin(Log::tenants(self))
    }
    fn create_api_key<'a>(&'a self, tenant: &'a str) -> Res<'a, String> {
        Box::pin(Log::create_api_key(self, tenant))
    }
    fn api_keys<'a>(&'a self, tenant: &'a str) -> Res<'a, Vec<KeyInfo>> {
        Box::pin(Log::api_keys(self, tenant))
    }
    fn revoke_api_key<'a>(&'a self, tenant: &'a str, key: &'a str) -> Res<'a, u64> {
        Box::pin(Log::revoke_api_key(self, tenant, key))
    }
    fn authenticate<'a>(&'a self, key: &'a str) -> Res<'a, Option<Tenant>> {
        Box::pin(Log::authenticate(self, key))
    }
    fn set_user<'a>(&'a self, name: &'a str, password: &'a str) -> Res<'a, ()> {
        Box::pin(Log::set_user(self, name, password))
    }
    fn verify_user<'a>(&'a self, name: &'a str, password: &'a str) -> Res<'a, bool> {
        Box::pin(Log::verify_user(self, name, password))
    }
    fn users(&self) -> Res<'_, Vec<String>> {
        Box::pin(Log::users(self))
    }
    fn remove_user<'a>(&'a self, name: &'a str) -> Res<'a, bool> {
        Box::pin(async move {
            let done =
                sqlx::query("DELETE FROM users WHERE name = ?").bind(name).execute(self.pool()).await?;
            Ok(done.rows_affected() > 0)
        })
    }
    fn set_user_tenant<'a>(&'a self, user: &'a str, tenant: &'a str) -> Res<'a, ()> {
        Box::pin(Log::set_user_tenant(self, user, tenant))
    }
    fn user_tenant<'a>(&'a self, user: &'a str) -> Res<'a, Option<Tenant>> {
        Box::pin(Log::user_tenant(self, user))
    }
    fn account_tenants(&self) -> Res<'_, Vec<(String, i64)>> {
        Box::pin(Log::account_tenants(self))
    }
    fn set_account_tenant<'a>(&'a self, account: &'a str, tenant: &'a str) -> Res<'a, ()> {
        Box::pin(Log::set_account_tenant(self, account, tenant))
    }
    fn secret<'a>(&'a self, name: &'a str, made: &'a [u8]) -> Res<'a, Vec<u8>> {
        Box::pin(Log::secret(self, name, made))
    }
    fn dkim_keys(&self) -> Res<'_, Vec<DkimKey>> {
        Box::pin(crate::sql::dkim_keys(self.pool()))
    }
    fn add_dkim_key<'a>(&'a self, key: &'a DkimKey) -> Res<'a, bool> {
        Box::pin(crate::sql::add_dkim_key(self.pool(), key))
    }
    fn remove_dkim_key<'a>(&'a self, domain: &'a str, selector: &'a str) -> Res<'a, bool> {
        Box::pin(crate::sql::remove_dkim_key(self.pool(), domain, selector))
    }
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        Log::changes(self)
    }
}

impl Suppressions for Log {
    fn suppressed<'a>(&'a self, tenant: i64, addresses: &'a [String], at: i64) -> Res<'a, Vec<Suppression>> {
        Box::pin(Log::suppressed(self, tenant, addresses, at))
    }
    fn suppression<'a>(
        &'a self,
        tenant: &'a Tenant,
        address: &'a str,
        at: i64,
    ) -> Res<'a, Option<Suppression>> {
        Box::pin(Log::suppression(self, tenant, address, at))
    }
    fn suppressions<'a>(
        &'a self,
        tenant: &'a Tenant,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> Res<'a, Vec<Suppression>> {
        Box::pin(Log::suppressions(self, tenant, cursor, limit))
    }
    fn suppress<'a>(
        &'a self,
        tenant: &'a Tenant,
        address: &'a str,
        reason: &'a str,
        expires_at: Option<i64>,
    ) -> Res<'a, Suppression> {
        Box::pin(Log::suppress(self, tenant, address, reason, expires_at))
    }
    fn unsuppress<'a>(&'a self, tenant: &'a Tenant, address: &'a str) -> Res<'a, bool> {
        Box::pin(Log::unsuppress(self, tenant, address))
    }
}
