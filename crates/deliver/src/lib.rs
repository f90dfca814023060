//! Outbound: the SMTP client that relays queued mail (a pool per destination,
//! PIPELINING, BDAT, STARTTLS opportunistic or required, implicit TLS, AUTH),
//! MX resolution, DKIM signing, a per-destination rate limit and the DSN
//! builder: protocol clients and formats, no state of sluice's.

pub mod dkim;
pub mod dsn;
pub mod mx;
pub mod rate;
pub mod smtp;
mod tls;
pub mod wire;
