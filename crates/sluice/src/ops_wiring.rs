//! The API's queue and quarantine operations (`api::ops::Operations`):
//! the control socket's own handler (`control::handle`), run in process
//! on this server's spool and reinjector, so `/v1/queue…`, the
//! dashboard's Queue and Quarantine pages and `sluice queue …` do the same
//! thing. Which tenant may see what is decided in the api crate.

use std::sync::Arc;

use api::ops::{Operations, QueueEntry, QueueRcpt};
/// `futures::future::BoxFuture`, which the trait names.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;
use route::release::Reinjector;
use vocabulary::QueueId;

use crate::control::{self, EntryView, Request, Response};

/// The operations over a running server's spool.
pub struct Ops(pub Arc<Reinjector>);

impl Ops {
    async fn ask(&self, req: Request) -> Response {
        let r = &self.0;
        control::handle(&r.spool, r.waker.as_ref(), r, req).await
    }

    async fn done(&self, req: Request) -> Result<String, String> {
        match self.ask(req).await {
            Response::Done(said) => Ok(said),
            Response::Error(e) => Err(e),
            other => Err(format!("unexpected answer: {other:?}")),
        }
    }
}

pub(crate) fn entry(e: &EntryView) -> QueueEntry {
    QueueEntry {
        id: e.id.clone(),
        tenant: None,
        from: e.from.clone(),
        received_at: e.received_at,
        size: e.size,
        held: e.held,
        dead_letter: e.dead_letter,
        held_at: e.held_at,
        next_attempt: e.next_attempt,
        expires_at: e.expires_at,
        peer: e.peer.clone(),
        recipients: e
            .recipients
            .iter()
            .map(|r| QueueRcpt {
                address: r.address.clone(),
                route: r.route.clone(),
                status: r.status.clone(),
                attempts: r.attempts,
                last_reply: r.last_reply.clone(),
            })
            .collect(),
    }
}

impl Operations for Ops {
    fn queue(&self) -> BoxFuture<'_, Result<Vec<QueueEntry>, String>> {
        Box::pin(async move {
            match self.ask(Request::List).await {
                Response::Entries(list) => Ok(list.iter().map(entry).collect()),
                Response::Error(e) => Err(e),
                other => Err(format!("unexpected answer: {other:?}")),
            }
        })
    }

    fn hold<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(self.done(Request::Hold { id: id.to_string() }))
    }

    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(self.done(Request::Release { id: id.to_string() }))
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(self.done(Request::Delete { id: id.to_string() }))
    }

    fn flush(&self, ids: Option<Vec<String>>) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let Some(ids) = ids else { return self.done(Request::Flush).await };
            // A tenant's flush: its own waiting messages made due one by
            // one (held ones wait for a release, as with `queue flush`).
            let Some(waker) = &self.0.waker else {
                return Ok("no delivery is running".into());
            };
            let spool = &self.0.spool;
            let waiting = |id: &QueueId| spool.get(*id).is_some_and(|e| !e.held && !e.in_flight);
            let ids: Vec<QueueId> = ids.iter().filter_map(|id| id.parse().ok()).filter(waiting).collect();
            for id in &ids {
                spool.make_due(*id);
                waker.now(*id);
            }
            Ok(format!("flushing {} message(s)", ids.len()))
        })
    }

    fn release_copy<'a>(
        &'a self,
        account: &'a str,
        folder: &'a str,
        uid: i64,
    ) -> BoxFuture<'a, Result<String, String>> {
        let req =
            Request::QuarantineRelease { account: account.to_string(), folder: folder.to_string(), uid };
        Box::pin(self.done(req))
    }

    fn content<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let id: QueueId = id.trim().parse().ok()?;
            let spool = self.0.spool.clone();
            // A read of the segment (usually the page cache): off the runtime.
            let read = tokio::task::spawn_blocking(move || {
                let e = spool.get(id)?;
                spool.content(e.content).ok()
            });
            read.await.ok().flatten()
        })
    }
}
