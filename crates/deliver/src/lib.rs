//! Outbound: the SMTP client that relays queued mail (a pool per destination,
//! PIPELINING, BDAT, opportunistic STARTTLS), the DSN builder, and the
//! quarantine writer that files classified copies in the store.

pub mod dsn;
pub mod quarantine;
pub mod smtp;
mod tls;
pub mod wire;
