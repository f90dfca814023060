//! Scopes (`global`, a domain, an address) and the levels their rows make.

use std::fmt;

use serde::Serialize;

use super::PolicyError;

/// Where a policy row applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Global,
    /// A lowercase domain.
    Domain(String),
    /// A lowercase address.
    User(String),
}

impl Scope {
    /// `global`, `example.net` (or `@example.net`), `ann@example.net`.
    pub fn parse(s: &str) -> Result<Scope, PolicyError> {
        let s = s.trim().to_ascii_lowercase();
        if s == "global" {
            return Ok(Scope::Global);
        }
        let bad = |m: &str| PolicyError::invalid("scope", format!("{s:?}: {m}"));
        if let Some(d) = s.strip_prefix('@') {
            return domain(d).map(Scope::Domain).map_err(|m| bad(&m));
        }
        match s.split_once('@') {
            None => domain(&s).map(Scope::Domain).map_err(|m| {
                bad(&format!("{m} (a scope is global, a domain such as example.net, or an address)"))
            }),
            Some((local, d)) => {
                if local.is_empty()
                    || local.len() > 64
                    || !local.bytes().all(|b| b.is_ascii_graphic() && !b"@\"<>()[]\\,;:".contains(&b))
                {
                    return Err(bad("not an address (local@domain)"));
                }
                let d = domain(d).map_err(|m| bad(&m))?;
                Ok(Scope::User(format!("{local}@{d}")))
            }
        }
    }

    /// The scope of each level above `global` that applies to `address`
    /// (its domain, itself); `address` is lowercased.
    pub fn of_address(address: &str) -> Result<(Scope, Scope), PolicyError> {
        match Scope::parse(address)? {
            Scope::User(a) => {
                let d = a.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
                Ok((Scope::Domain(d), Scope::User(a)))
            }
            _ => Err(PolicyError::invalid("address", format!("{address:?} is not an address"))),
        }
    }

    /// As stored (and as [`Scope::parse`] reads it back).
    pub fn as_str(&self) -> &str {
        match self {
            Scope::Global => "global",
            Scope::Domain(d) => d,
            Scope::User(a) => a,
        }
    }

    /// The level this scope's rows make.
    pub fn level(&self) -> Level {
        match self {
            Scope::Global => Level::Global,
            Scope::Domain(d) => Level::Domain(d.clone()),
            Scope::User(a) => Level::User(a.clone()),
        }
    }

    /// Whether this scope's rows apply at `other` (global's everywhere, a
    /// domain's at itself and its addresses).
    pub(super) fn contains(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::Global, _) => true,
            (Scope::Domain(d), Scope::Domain(o)) => d == o,
            (Scope::Domain(d), Scope::User(a)) => a.rsplit_once('@').is_some_and(|(_, ad)| ad == d),
            (Scope::User(a), Scope::User(o)) => a == o,
            _ => false,
        }
    }

    /// Whether this scope's rows apply to a recipient in `domain` at `address`.
    pub(super) fn covers(&self, domain: &str, address: &str) -> bool {
        match self {
            Scope::Global => true,
            Scope::Domain(d) => d == domain,
            Scope::User(a) => a == address,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lowercase ASCII domain with at least one dot.
fn domain(d: &str) -> Result<String, String> {
    let d = d.trim_end_matches('.').to_ascii_lowercase();
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if d.len() > 253 || !d.contains('.') || !d.split('.').all(ok_label) {
        return Err("not a domain (ASCII labels of letters, digits and '-', at least one dot)".into());
    }
    Ok(d)
}

/// Where an effective value came from, least specific first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Level {
    /// Built in.
    Default,
    /// The configuration file's `[policy]`.
    Config,
    Global,
    Domain(String),
    User(String),
}

impl Level {
    pub(super) fn rank(&self) -> u8 {
        match self {
            Level::Default => 0,
            Level::Config => 1,
            Level::Global => 2,
            Level::Domain(_) => 3,
            Level::User(_) => 4,
        }
    }

    /// The more specific of two levels (`a` when they rank alike).
    pub(super) fn max<'a>(a: &'a Level, b: &'a Level) -> &'a Level {
        if b.rank() > a.rank() { b } else { a }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::Default => f.write_str("default"),
            Level::Config => f.write_str("config"),
            Level::Global => f.write_str("global"),
            Level::Domain(d) => write!(f, "domain {d}"),
            Level::User(a) => write!(f, "user {a}"),
        }
    }
}

impl Serialize for Level {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(Scope::parse("GLOBAL").unwrap(), Scope::Global);
        assert_eq!(Scope::parse("@Example.NET").unwrap(), Scope::Domain("example.net".into()));
        assert_eq!(Scope::parse("Ann@Example.net").unwrap(), Scope::User("ann@example.net".into()));
        assert!(Scope::parse("localhost").is_err());
        assert!(Scope::parse("a@b@c.d").is_err());
    }
}
