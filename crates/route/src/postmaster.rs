//! Role addresses: `postmaster` (RFC 5321 §4.5.1: a host that takes mail must
//! take mail to its postmaster, with or without a domain) and `abuse`
//! (RFC 2142) at this host's name, each accepted domain and the bounce
//! domain. They reach a person: the relay when one is set, else the store
//! account `[server] postmaster` names; never the feedback classifier.

use std::collections::HashSet;

use vocabulary::{Recipient, Route, domain_of, is_role_local};

/// Where role mail goes, decided once at start.
pub struct Roles {
    /// Lower-case domains whose postmaster and abuse are ours.
    domains: HashSet<String>,
    hostname: String,
    target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The downstream takes it, like every relayed original.
    Relay,
    /// Filed in this store account.
    Account(String),
    /// Nowhere yet: it waits in the queue (route relay, no relay set),
    /// listed by `sluice queue list` until a relay or an account is set.
    Waiting,
}

impl Roles {
    pub fn new(
        hostname: &str,
        domains: impl IntoIterator<Item = String>,
        relay: bool,
        account: Option<&str>,
    ) -> Self {
        let hostname = hostname.to_ascii_lowercase();
        let mut domains: HashSet<String> = domains.into_iter().map(|d| d.to_ascii_lowercase()).collect();
        domains.insert(hostname.clone());
        let target = match (relay, account) {
            (true, _) => Target::Relay,
            (false, Some(a)) => Target::Account(a.to_string()),
            (false, None) => {
                tracing::warn!(
                    "mail to postmaster and abuse will wait in the queue: set --relay or [server] postmaster"
                );
                Target::Waiting
            }
        };
        Roles { domains, hostname, target }
    }

    /// Whether `address` is one of our role addresses.
    pub fn is_role(&self, address: &str) -> bool {
        if address.eq_ignore_ascii_case("postmaster") {
            return true;
        }
        let Some((local, _)) = address.rsplit_once('@') else { return false };
        is_role_local(local) && self.domains.contains(&domain_of(address))
    }

    /// Routes a role recipient to its person; returns false (and leaves it
    /// alone) for any other address.
    pub fn route(&self, r: &mut Recipient) -> bool {
        if !self.is_role(&r.address) {
            return false;
        }
        match &self.target {
            Target::Relay | Target::Waiting => {
                r.route = Route::Relay;
                if r.address.eq_ignore_ascii_case("postmaster") {
                    // A downstream may not take a bare `postmaster`: name the host.
                    r.address = format!("postmaster@{}", self.hostname);
                }
            }
            // A store copy's recipient is the account it is filed for.
            Target::Account(account) => {
                *r = Recipient::routed(account.clone(), Route::Quarantine { account: account.clone() })
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(relay: bool, account: Option<&str>) -> Roles {
        Roles::new(
            "MX.example.net",
            ["bounces.example.com".to_string(), "example.com".into()],
            relay,
            account,
        )
    }

    #[test]
    fn postmaster_and_abuse_of_every_domain_of_ours_are_roles() {
        let r = roles(true, None);
        for a in [
            "postmaster",
            "Postmaster@mx.example.net",
            "abuse@MX.example.net",
            "postmaster@bounces.example.com",
            "abuse@example.com",
        ] {
            assert!(r.is_role(a), "{a}");
        }
        for a in [
            "postmaster@elsewhere.test",
            "abuse-team@example.com",
            "user@example.com",
            "bounce+x@bounces.example.com",
        ] {
            assert!(!r.is_role(a), "{a}");
        }
    }

    #[test]
    fn role_mail_goes_to_the_relay_else_the_account_never_feedback() {
        let mut rcpt = Recipient::routed("postmaster@bounces.example.com", Route::Feedback);
        assert!(roles(true, Some("ops")).route(&mut rcpt));
        assert_eq!(rcpt.route, Route::Relay);
        assert_eq!(rcpt.address, "postmaster@bounces.example.com");

        let mut bare = Recipient::new("postmaster");
        assert!(roles(true, None).route(&mut bare));
        assert_eq!(bare.address, "postmaster@mx.example.net");

        let mut abuse = Recipient::routed("abuse@bounces.example.com", Route::Feedback);
        assert!(roles(false, Some("ops")).route(&mut abuse));
        assert_eq!(abuse.route, Route::Quarantine { account: "ops".into() });

        let mut waiting = Recipient::routed("abuse@example.com", Route::Feedback);
        assert!(roles(false, None).route(&mut waiting));
        assert_eq!(waiting.route, Route::Relay);

        let mut other = Recipient::routed("bounce+x@bounces.example.com", Route::Feedback);
        assert!(!roles(true, None).route(&mut other));
        assert_eq!(other.route, Route::Feedback);
    }
}
