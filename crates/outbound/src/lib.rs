//! Outbound mail for applications: the one path every send takes (API or
//! authenticated submission), the VERP return path that brings bounces back
//! to the right recipient, the transport that delivers and records each
//! attempt, and the feedback route that attaches what comes back.
//!
//! ```text
//! API / submission ──Outbox::send──► record (queued / suppressed / invalid)
//!                                  └► spool (route Outbound) ──► OutboundTransport ──► MX / smart host
//!                                                                  └► record (sent / delivered / deferred / rejected / failed)
//! bounce domain ──spool (route Feedback)──► FeedbackTransport ──decide──► record (bounced / complained / …)
//! provider webhook body ──providers::parse──► the same events, from SES, SendGrid, Mailgun, Postmark, SparkPost
//! ```

pub mod feedback;
pub mod outbox;
pub mod provider_feed;
pub mod providers;
pub mod standard_webhooks;
pub mod tracking;
pub mod transport;
pub mod verp;

pub use feedback::FeedbackTransport;
pub use outbox::{Draft, Outbox, RecipientOutcome, SendError, Sent};
pub use transport::{NextHop, OutboundTransport, Signer};
pub use verp::Verp;
