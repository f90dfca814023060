//! The queue as a caller sees it: its own entries (each given its tenant,
//! `tenant_of`), the backlog per route they make, and hold, release,
//! delete and flush on them through [`super::Operations`].

use serde::Serialize;

use super::{OpsError, Owners, QueueEntry, Scope, operations};
use crate::AppState;

/// What one route has pending (`sluice queue summary`): the messages and
/// recipients waiting for it, how many of those messages are held, and
/// when the oldest arrived (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RouteBacklog {
    pub route: String,
    pub messages: usize,
    pub recipients: usize,
    pub held: usize,
    pub oldest_received_at: i64,
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "delivered" | "failed" | "expired")
}

/// The tenant the record files a queued message under: the outbound
/// route's, else that of the first store account taking a copy that
/// belongs to a tenant, else `default`; `None` for a message only for the
/// feedback route (not attributed until it is read).
pub(crate) fn tenant_of(e: &QueueEntry, owners: &Owners) -> Option<String> {
    let routes = || e.recipients.iter().map(|r| r.route.as_str());
    if let Some(id) = routes().find_map(|r| r.strip_prefix("outbound:")) {
        return id.parse::<i64>().ok().and_then(|id| owners.by_id.get(&id).cloned());
    }
    if let Some(t) = routes().filter_map(account_of).find_map(|a| owners.accounts.get(a)) {
        return Some(t.clone());
    }
    if routes().all(|r| r == "feedback") {
        return None;
    }
    owners.default.clone()
}

/// The store account a route files into, if any.
fn account_of(route: &str) -> Option<&str> {
    route.strip_prefix("quarantine:").or_else(|| route.strip_prefix("folder:")?.split('/').next())
}

/// The backlog per route, in route order, of the recipients not yet
/// delivered, failed or expired.
pub fn backlog(entries: &[QueueEntry]) -> Vec<RouteBacklog> {
    let mut routes: std::collections::BTreeMap<&str, RouteBacklog> = Default::default();
    for e in entries {
        let mut counted: Vec<&str> = Vec::new();
        for r in e.recipients.iter().filter(|r| !is_terminal(&r.status)) {
            let b = routes.entry(&r.route).or_insert_with(|| RouteBacklog {
                route: r.route.clone(),
                messages: 0,
                recipients: 0,
                held: 0,
                oldest_received_at: e.received_at,
            });
            b.recipients += 1;
            if !counted.contains(&r.route.as_str()) {
                counted.push(&r.route);
                b.messages += 1;
                b.held += usize::from(e.held);
                b.oldest_received_at = b.oldest_received_at.min(e.received_at);
            }
        }
    }
    routes.into_values().collect()
}

/// Every queued message in `scope`, oldest first, each with its tenant.
pub async fn entries(state: &AppState, scope: &Scope) -> Result<Vec<QueueEntry>, OpsError> {
    let ops = operations(state)?;
    let all = ops.queue().await.map_err(OpsError::Unavailable)?;
    let owners = Owners::read(&state.record).await?;
    Ok(all
        .into_iter()
        .map(|mut e| {
            e.tenant = tenant_of(&e, &owners);
            e
        })
        .filter(|e| scope.sees(e.tenant.as_deref()))
        .collect())
}

/// A page of queued messages in `scope` (held ones only when `held`),
/// by id after `cursor`, at most `limit`; and the cursor of the next page.
pub async fn list(
    state: &AppState,
    scope: &Scope,
    held: bool,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<QueueEntry>, Option<String>), OpsError> {
    let mut all = entries(state, scope).await?;
    all.retain(|e| !held || e.held);
    all.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(c) = cursor {
        all.retain(|e| e.id.as_str() > c);
    }
    let more = all.len() > limit;
    all.truncate(limit);
    let next = if more { all.last().map(|e| e.id.clone()) } else { None };
    Ok((all, next))
}

/// The per-route backlog of the messages in `scope`.
pub async fn summary(state: &AppState, scope: &Scope) -> Result<Vec<RouteBacklog>, OpsError> {
    Ok(backlog(&entries(state, scope).await?))
}

/// One queued message in `scope` (a 404 otherwise).
pub async fn entry(state: &AppState, scope: &Scope, id: &str) -> Result<QueueEntry, OpsError> {
    let id = id.trim();
    entries(state, scope).await?.into_iter().find(|e| e.id == id).ok_or(OpsError::NotFound("queued message"))
}

/// What is done to one queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Hold,
    Release,
    Delete,
}

/// Holds, releases or deletes a queued message in `scope`: the control
/// socket's words on success.
pub async fn act(state: &AppState, scope: &Scope, id: &str, action: Action) -> Result<String, OpsError> {
    let e = entry(state, scope, id).await?;
    let ops = operations(state)?;
    let done = match action {
        Action::Hold => ops.hold(&e.id).await,
        Action::Release => ops.release(&e.id).await,
        Action::Delete => ops.delete(&e.id).await,
    };
    // The entry was there a moment ago: a refusal now is that it finished.
    done.map_err(|m| {
        if m.contains("no such") { OpsError::NotFound("queued message") } else { OpsError::Invalid(m) }
    })
}

/// Attempts every message in `scope` now (every message, for a scope of
/// every tenant; held ones wait for a release).
pub async fn flush(state: &AppState, scope: &Scope) -> Result<String, OpsError> {
    let ids = match scope {
        Scope::All => None,
        Scope::Tenants(_) => Some(entries(state, scope).await?.into_iter().map(|e| e.id).collect()),
    };
    operations(state)?.flush(ids).await.map_err(OpsError::Unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::QueueRcpt;

    fn rcpt(route: &str, status: &str) -> QueueRcpt {
        QueueRcpt {
            address: "x@sluice.test".into(),
            route: route.into(),
            status: status.into(),
            attempts: 1,
            last_reply: None,
        }
    }

    fn entry(received_at: i64, held: bool, recipients: Vec<QueueRcpt>) -> QueueEntry {
        QueueEntry {
            id: String::new(),
            tenant: None,
            from: String::new(),
            received_at,
            size: 1,
            held,
            dead_letter: false,
            held_at: 0,
            next_attempt: 0,
            expires_at: 0,
            peer: String::new(),
            recipients,
        }
    }

    #[test]
    fn the_backlog_counts_pending_recipients_per_route_and_the_oldest_message() {
        let entries = vec![
            entry(200, false, vec![rcpt("relay", "delivered"), rcpt("quarantine:acme", "scheduled")]),
            entry(100, true, vec![rcpt("relay", "deferred"), rcpt("relay", "scheduled")]),
            entry(300, false, vec![rcpt("relay", "failed"), rcpt("quarantine:acme", "deferred")]),
        ];
        let b = |route: &str, messages, recipients, held, oldest_received_at| RouteBacklog {
            route: route.into(),
            messages,
            recipients,
            held,
            oldest_received_at,
        };
        assert_eq!(backlog(&entries), vec![b("quarantine:acme", 2, 2, 0, 200), b("relay", 1, 2, 1, 100)]);
        assert!(backlog(&[]).is_empty());
    }

    #[test]
    fn a_queued_message_is_the_tenant_the_record_files_it_under() {
        let owners = Owners {
            by_id: [(7, "acme".to_string()), (1, "default".to_string())].into(),
            accounts: [("shopbox".to_string(), "shop".to_string())].into(),
            default: Some("default".into()),
        };
        let of = |routes: &[&str]| {
            tenant_of(&entry(0, false, routes.iter().map(|r| rcpt(r, "scheduled")).collect()), &owners)
        };
        assert_eq!(of(&["outbound:7"]).as_deref(), Some("acme"));
        assert_eq!(of(&["outbound:99"]), None, "an unknown tenant id is nobody's");
        assert_eq!(of(&["relay", "quarantine:shopbox"]).as_deref(), Some("shop"));
        assert_eq!(of(&["relay", "folder:shopbox/Spam"]).as_deref(), Some("shop"));
        assert_eq!(of(&["relay", "quarantine:acme"]).as_deref(), Some("default"));
        assert_eq!(of(&["relay"]).as_deref(), Some("default"));
        assert_eq!(of(&["feedback"]), None, "reports are not attributed yet");
    }
}
