//! Freemail providers (`data/freemail_domains.txt`, SpamAssassin's list):
//! whether an address is at one, as SpamAssassin's FreeMail plugin decides
//! it. A domain matches exactly, or a pattern (`aol.co*.*`) matches the
//! whole domain, `*` within one label. Role and machine addresses
//! (`abuse@`, `postmaster@`, `bounce-…@`) are never freemail senders.

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::Regex;

const LIST: &str = include_str!("../data/freemail_domains.txt");

struct Freemail {
    domains: HashSet<&'static str>,
    /// The patterns as one anchored expression (`None` if none compile).
    patterns: Option<Regex>,
    /// Local parts that are no person's (SpamAssassin's `$email_welcomelist`).
    roles: Option<Regex>,
}

fn list() -> &'static Freemail {
    static LIST_ONCE: OnceLock<Freemail> = OnceLock::new();
    LIST_ONCE.get_or_init(|| {
        let entries = LIST.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        let (wild, domains): (Vec<&str>, Vec<&str>) = entries.partition(|d| d.contains(['*', '?']));
        let alternatives: Vec<String> = wild
            .iter()
            .map(|d| regex::escape(d).replace(r"\*", "[^.]*").replace(r"\?", "."))
            .collect();
        Freemail {
            domains: domains.into_iter().collect(),
            patterns: Regex::new(&format!("^(?:{})$", alternatives.join("|"))).ok(),
            roles: Regex::new(
                r"(?i)^(?:abuse|support|sales|info|helpdesk|contact|kontakt|(?:post|host|domain)master|undisclosed.*|request-[a-f0-9]{16}|bounced?-.*|[a-f0-9]{8}(?:\.[a-f0-9]{8}|-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})|.+=.+=.+)$",
            )
            .ok(),
        }
    })
}

/// Whether `addr` (local@domain) is a person's address at a freemail provider.
pub fn is_freemail(addr: &str) -> bool {
    let Some((local, domain)) = addr.trim().rsplit_once('@') else { return false };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let f = list();
    if local.is_empty() || f.roles.as_ref().is_some_and(|r| r.is_match(local)) {
        return false;
    }
    f.domains.contains(domain.as_str()) || f.patterns.as_ref().is_some_and(|p| p.is_match(&domain))
}

#[cfg(test)]
mod tests {
    use super::is_freemail;

    #[test]
    fn domains_patterns_and_role_addresses() {
        assert!(is_freemail("ann@yahoo.com"));
        assert!(is_freemail("Ann@Hotmail.COM"));
        // `aol.co*.*`: one label's characters, then one more label.
        assert!(is_freemail("bob@aol.co.uk"));
        assert!(!is_freemail("bob@mail.aol.co.uk.example"));
        assert!(!is_freemail("ann@example.com"));
        assert!(!is_freemail("postmaster@yahoo.com"), "a role address is no person's");
        assert!(!is_freemail("bounce-123@gmail.com"));
        assert!(!is_freemail("no-at-sign"));
    }
}
