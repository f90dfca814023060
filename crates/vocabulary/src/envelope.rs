//! Envelopes apart from content: a message's bytes are stored once, and each
//! recipient carries its own delivery state (the OpenSMTPD msgid/evpid split).

use crate::Reply;
use crate::event::EventKind;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A queue identifier: a UUIDv7, so identifiers sort by arrival time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueId(pub u128);

impl QueueId {
    pub fn generate() -> Self {
        QueueId(uuid::Uuid::now_v7().as_u128())
    }

    /// Milliseconds since the Unix epoch at which this id was generated.
    pub fn timestamp_ms(&self) -> u64 {
        (self.0 >> 80) as u64
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl FromStr for QueueId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 {
            return Err(format!("not a queue id: {s}"));
        }
        u128::from_str_radix(&hex, 16).map(QueueId).map_err(|_| format!("not a queue id: {s}"))
    }
}

/// Where one recipient stands. A message is done when every recipient is
/// terminal (`Delivered`, `Failed` or `Expired`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RcptStatus {
    /// Waiting for (another) attempt.
    Scheduled,
    /// The last attempt failed temporarily; retried later.
    TempFail {
        reply: Reply,
    },
    Delivered {
        reply: Reply,
    },
    /// Permanent failure: a DSN goes to the sender.
    Failed {
        reply: Reply,
    },
    /// Gave up after the expiry time: a DSN goes to the sender.
    Expired {
        reply: Reply,
    },
    /// A dead letter: refused for good where nobody can be told (the sender
    /// is `<>`, or it is a store copy), so it is kept, held, with the
    /// refusal, until an operator releases it (`sluice queue release`) or
    /// its hold retention runs out.
    Held {
        reply: Reply,
    },
}

impl RcptStatus {
    pub fn is_terminal(&self) -> bool {
        matches!(self, RcptStatus::Delivered { .. } | RcptStatus::Failed { .. } | RcptStatus::Expired { .. })
    }

    /// The last reply that led to this state (none before any attempt).
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            RcptStatus::Scheduled => None,
            RcptStatus::TempFail { reply }
            | RcptStatus::Delivered { reply }
            | RcptStatus::Failed { reply }
            | RcptStatus::Expired { reply }
            | RcptStatus::Held { reply } => Some(reply),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            RcptStatus::Scheduled => "scheduled",
            RcptStatus::TempFail { .. } => "deferred",
            RcptStatus::Delivered { .. } => "delivered",
            RcptStatus::Failed { .. } => "failed",
            RcptStatus::Expired { .. } => "expired",
            RcptStatus::Held { .. } => "held",
        }
    }
}

/// Where a recipient's copy goes. One message can have recipients on several
/// routes (tee: the original to the relay, a copy to the quarantine store);
/// each route is attempted on its own, so one never holds up another.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// The downstream system (`--relay`).
    #[default]
    Relay,
    /// A classified copy into the quarantine store of this account.
    Quarantine { account: String },
    /// Filter mode: the recipient's copy filed as received into this
    /// account's folder (`Spam` for a quarantined recipient, `Archive`
    /// for a recipient who keeps everything); the recipient's address is
    /// the recipient's. The quarantine store's transport runs it.
    Folder { account: String, folder: String },
    /// Mail sent by an application (API or authenticated submission of a
    /// tenant's user): delivered to each recipient's MX or the smart host,
    /// with a VERP return path, and recorded per recipient in the
    /// record of this tenant.
    Outbound {
        tenant: i64,
        /// Add per-recipient `List-Unsubscribe` headers (RFC 2369/8058).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unsubscribe: bool,
        /// A tracking pixel in each HTML part, per recipient.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        opens: bool,
        /// The HTML parts' links point at the click tracker, per recipient.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        clicks: bool,
    },
    /// Feedback addressed to the bounce domain (bounces, complaints,
    /// auto-replies): classified and attached to the outbound record.
    Feedback,
}

/// A route without its data: what a route's handling is configured by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    Relay,
    Quarantine,
    Outbound,
    Feedback,
}

impl RouteKind {
    /// Its name in metrics (`relay`, `quarantine`, `outbound`, `feedback`).
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Relay => "relay",
            RouteKind::Quarantine => "quarantine",
            RouteKind::Outbound => "outbound",
            RouteKind::Feedback => "feedback",
        }
    }
}

impl Route {
    pub fn kind(&self) -> RouteKind {
        match self {
            Route::Relay => RouteKind::Relay,
            Route::Quarantine { .. } | Route::Folder { .. } => RouteKind::Quarantine,
            Route::Outbound { .. } => RouteKind::Outbound,
            Route::Feedback => RouteKind::Feedback,
        }
    }
}

/// One recipient of a message and its delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    /// DSN ORCPT parameter (the address, xtext decoded), kept for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
    /// DSN NOTIFY parameter (RFC 3461); `None` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<crate::dsn::Notify>,
    pub status: RcptStatus,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "is_relay")]
    pub route: Route,
    /// A delay DSN (NOTIFY=DELAY) was sent for this recipient: one is enough.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delay_reported: bool,
}

fn is_relay(r: &Route) -> bool {
    *r == Route::Relay
}

impl Recipient {
    pub fn new(address: impl Into<String>) -> Self {
        Recipient {
            address: address.into(),
            orcpt: None,
            notify: None,
            status: RcptStatus::Scheduled,
            attempts: 0,
            route: Route::Relay,
            delay_reported: false,
        }
    }

    /// A recipient on another route.
    pub fn routed(address: impl Into<String>, route: Route) -> Self {
        Recipient { route, ..Recipient::new(address) }
    }

    /// Its state in the event schema's words (`docs/events.md`), on its
    /// route: a relayed original is `relayed` or `refused`, a copy
    /// `filed`, an application's mail `delivered` or `rejected` (its
    /// transport, which knows a smart host from an MX, records `sent`
    /// itself). `None` while it waits, and for a feedback message read
    /// (what it says is recorded on the message it reports on).
    pub fn event(&self) -> Option<EventKind> {
        let outbound = matches!(self.route, Route::Outbound { .. });
        Some(match (&self.status, &self.route) {
            (RcptStatus::Scheduled, _) => return None,
            (RcptStatus::TempFail { .. }, _) => EventKind::Deferred,
            (RcptStatus::Held { .. }, _) => EventKind::Held,
            (RcptStatus::Expired { .. }, _) if outbound => EventKind::Failed,
            (RcptStatus::Expired { .. }, _) => EventKind::Expired,
            (RcptStatus::Failed { .. }, _) if outbound => EventKind::Rejected,
            (RcptStatus::Failed { .. }, _) => EventKind::Refused,
            (RcptStatus::Delivered { .. }, Route::Relay) => EventKind::Relayed,
            (RcptStatus::Delivered { .. }, Route::Quarantine { .. } | Route::Folder { .. }) => {
                EventKind::Filed
            }
            (RcptStatus::Delivered { .. }, Route::Outbound { .. }) => EventKind::Delivered,
            (RcptStatus::Delivered { .. }, Route::Feedback) => return None,
        })
    }
}

/// What the client told us around the content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Reverse path; empty for the null sender `<>`.
    pub mail_from: String,
    pub rcpts: Vec<Recipient>,
    /// The client asked for SMTPUTF8.
    #[serde(default)]
    pub smtputf8: bool,
    /// BODY=8BITMIME or BINARYMIME was declared.
    #[serde(default)]
    pub eight_bit: bool,
    /// EHLO/HELO name and peer address, for the trace header and the logs.
    pub helo: String,
    pub peer: String,
    /// Authenticated submission user, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_user: Option<String>,
    /// Arrival time, seconds since the Unix epoch.
    pub received_at: i64,
    /// Bare LF/CR line ends and over-long lines in the content as received
    /// (kept exactly in the spool and the store; normalized on the wire).
    #[serde(default, skip_serializing_if = "crate::LineFaults::is_clean")]
    pub line_faults: crate::LineFaults,
    /// DSN RET and ENVID parameters of MAIL (RFC 3461), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsn_ret: Option<crate::dsn::Ret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsn_envid: Option<String>,
}

impl Envelope {
    pub fn is_null_sender(&self) -> bool {
        self.mail_from.is_empty()
    }
}

/// A role mailbox every host of ours answers: `postmaster` (RFC 5321
/// §4.5.1) and `abuse` (RFC 2142), given the local part.
pub fn is_role_local(local: &str) -> bool {
    local.eq_ignore_ascii_case("postmaster") || local.eq_ignore_ascii_case("abuse")
}

/// The domain part of an address, lower-cased; empty when there is no `@`.
pub fn domain_of(address: &str) -> String {
    address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_id_round_trip_and_order() {
        let a = QueueId::generate();
        let b = QueueId::generate();
        assert!(b >= a);
        assert_eq!(a.to_string().parse::<QueueId>(), Ok(a));
        assert!("xyz".parse::<QueueId>().is_err());
    }

    #[test]
    fn routes_default_to_the_relay_in_old_records() {
        let old: Recipient =
            serde_json::from_str(r#"{"address":"a@b","status":{"state":"scheduled"}}"#).unwrap();
        assert_eq!(old.route, Route::Relay);
        let q = Recipient::routed("a@b", Route::Quarantine { account: "acme".into() });
        let json = serde_json::to_string(&q).unwrap();
        assert!(json.contains(r#""route":{"quarantine":{"account":"acme"}}"#), "{json}");
        assert_eq!(serde_json::from_str::<Recipient>(&json).unwrap(), q);
    }

    #[test]
    fn domains() {
        assert_eq!(domain_of("a@Example.TEST"), "example.test");
        assert_eq!(domain_of("postmaster"), "");
    }
}
