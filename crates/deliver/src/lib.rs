//! Outbound: the SMTP client that relays queued mail (a pool per destination,
//! PIPELINING, BDAT, STARTTLS opportunistic or required, implicit TLS, AUTH),
//! MX resolution, DKIM signing, a per-destination rate limit, the DSN
//! builder, and the quarantine writer that files classified copies in the
//! store.

pub mod dkim;
pub mod dsn;
pub mod mx;
pub mod quarantine;
pub mod rate;
pub mod smtp;
mod tls;
pub mod wire;
