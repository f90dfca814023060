//! The event log trait, implemented on PostgreSQL: each method hands on to
//! the backend's own (in `log/`).

use super::Postgres;
use super::log::Note;
use crate::directory::Tenant;
use crate::events::{
    Describe, EventLog, EventQuery, EventRow, MessageView, NewEvent, NewMessage, RecipientHistory,
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
}
