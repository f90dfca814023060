//! Outbound: the SMTP client that relays queued mail (a pool per destination,
//! PIPELINING, BDAT, opportunistic STARTTLS) and the DSN builder.

pub mod dsn;
pub mod smtp;
mod tls;
pub mod wire;
