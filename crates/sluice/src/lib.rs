//! The server behind the `sluice` binary, as a library: its configuration
//! and `serve`, which composes every stage (listeners, spool, scheduler,
//! routes, store, IMAP, HTTP) and runs it until a shutdown future resolves,
//! so that tests can run the whole server in process.

pub mod config;
pub mod control;
pub mod filter_wiring;
pub mod first_run;
pub mod logbuf;
pub mod metrics_wiring;
pub mod ops_wiring;
pub mod outbound_wiring;
pub mod provider_hooks;
pub mod serve;
pub mod spam_config;
pub mod tls;
