//! The one event schema: every outcome sluice records or reports, in both
//! directions, under one name each. The record, the API, the CLI, the logs,
//! and later webhooks and metrics use these names verbatim (`as_str`);
//! `docs/events.md` says when each happens and what it carries.

use serde::{Deserialize, Serialize};

/// What happened to a message for one recipient (or, for `received`, to
/// the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    // The front line: mail that reached the MX listener.
    /// Accepted over SMTP and on disk (the 250 went out).
    Received,
    /// The downstream took it (a 2xx to the end of DATA).
    Relayed,
    /// The downstream refused it for good (5xx).
    Refused,
    /// Held in the queue by an operator or a policy.
    Held,
    /// A classified copy was filed in a store account's folder.
    Filed,
    /// A filed copy was released back into the flow.
    Released,
    /// Filter mode decided a recipient's fate (`reason`: `deliver`, `tag`,
    /// `quarantine` or `reject`; `detail`: the score, the class, the
    /// signals and the policy level that decided).
    Filtered,
    /// A delivery status notification went back to the sender.
    DsnSent,
    /// Retried until its queue lifetime ran out.
    Expired,
    // Both directions.
    /// A temporary failure; it will be tried again.
    Deferred,
    // Application mail: the outbound path.
    /// Accepted by the API or submission, on disk, waiting for delivery.
    Queued,
    /// Not sent: the address is on the tenant's suppression list.
    Suppressed,
    /// Not sent: the address is not one.
    Invalid,
    /// Handed to the next hop, which said 2xx.
    Sent,
    /// The recipient's own server said 2xx.
    Delivered,
    /// A report came back: the mail did not reach the recipient.
    Bounced,
    /// The next hop refused it for good (5xx).
    Rejected,
    /// No hop could be reached until it expired, or it could not be sent.
    Failed,
    /// The recipient reported it as spam (an ARF report).
    Complained,
    /// The recipient asked to receive no more (one-click or a report).
    Unsubscribed,
    /// An automatic reply came back (out of office); informational.
    Autoreplied,
    // Engagement and webhooks (not recorded yet).
    /// The tracking pixel was loaded.
    Opened,
    /// A tracked link was followed.
    Clicked,
    /// A webhook endpoint acknowledged an event.
    WebhookDelivered,
}

/// Which flow an event (or a recorded message) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Mail that came to the front line.
    Inbound,
    /// Mail applications send.
    Outbound,
    Both,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        [Direction::Inbound, Direction::Outbound, Direction::Both].into_iter().find(|d| d.as_str() == s)
    }
}

impl EventKind {
    pub const ALL: [EventKind; 24] = [
        EventKind::Received,
        EventKind::Relayed,
        EventKind::Refused,
        EventKind::Held,
        EventKind::Filed,
        EventKind::Released,
        EventKind::Filtered,
        EventKind::DsnSent,
        EventKind::Expired,
        EventKind::Deferred,
        EventKind::Queued,
        EventKind::Suppressed,
        EventKind::Invalid,
        EventKind::Sent,
        EventKind::Delivered,
        EventKind::Bounced,
        EventKind::Rejected,
        EventKind::Failed,
        EventKind::Complained,
        EventKind::Unsubscribed,
        EventKind::Autoreplied,
        EventKind::Opened,
        EventKind::Clicked,
        EventKind::WebhookDelivered,
    ];

    /// The event's one name, everywhere.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Received => "received",
            EventKind::Relayed => "relayed",
            EventKind::Refused => "refused",
            EventKind::Held => "held",
            EventKind::Filed => "filed",
            EventKind::Released => "released",
            EventKind::Filtered => "filtered",
            EventKind::DsnSent => "dsn_sent",
            EventKind::Expired => "expired",
            EventKind::Deferred => "deferred",
            EventKind::Queued => "queued",
            EventKind::Suppressed => "suppressed",
            EventKind::Invalid => "invalid",
            EventKind::Sent => "sent",
            EventKind::Delivered => "delivered",
            EventKind::Bounced => "bounced",
            EventKind::Rejected => "rejected",
            EventKind::Failed => "failed",
            EventKind::Complained => "complained",
            EventKind::Unsubscribed => "unsubscribed",
            EventKind::Autoreplied => "autoreplied",
            EventKind::Opened => "opened",
            EventKind::Clicked => "clicked",
            EventKind::WebhookDelivered => "webhook_delivered",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn direction(self) -> Direction {
        use EventKind::*;
        match self {
            Received | Relayed | Refused | Held | Filed | Released | Filtered | DsnSent | Expired => {
                Direction::Inbound
            }
            Deferred => Direction::Both,
            _ => Direction::Outbound,
        }
    }

    /// Whether this event becomes the recipient's delivery status (what
    /// only informs does not: an auto-reply, engagement, a DSN sent about
    /// it, a release whose delivery is the released message's own).
    pub fn sets_status(self) -> bool {
        !matches!(
            self,
            EventKind::Autoreplied
                | EventKind::Opened
                | EventKind::Clicked
                | EventKind::WebhookDelivered
                | EventKind::DsnSent
                | EventKind::Released
        )
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_has_one_name_and_serde_agrees() {
        let mut names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventKind::ALL.len(), "two events share a name");
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
        assert_eq!(EventKind::parse("bounce"), None);
        assert!(!EventKind::Autoreplied.sets_status() && EventKind::Bounced.sets_status());
    }
}
