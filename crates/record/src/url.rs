//! Where the record is kept: `sqlite://PATH` (a file; by default
//! `sluice.db` in the data directory) or
//! `postgres://USER:PASS@HOST:PORT/DB` (shared by many nodes).

use std::fmt;
use std::path::PathBuf;

use crate::RecordError;

#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite file; `None`: `sluice.db` in the data directory.
    Sqlite(Option<PathBuf>),
    /// A PostgreSQL connection URL, as libpq takes it.
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, RecordError> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            return match path.is_empty() {
                true => Err(RecordError::Invalid(
                    "sqlite:// needs a file: sqlite:///var/lib/sluice/sluice.db".into(),
                )),
                false => Ok(DatabaseUrl::Sqlite(Some(PathBuf::from(path)))),
            };
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        Err(RecordError::Invalid(format!(
            "a database URL is sqlite://PATH or postgres://USER:PASS@HOST:PORT/DB, not {}",
            Redacted(url)
        )))
    }
}

impl fmt::Display for DatabaseUrl {
    /// The URL without its password (what logs and `sluice db check` show).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(None) => f.write_str("sqlite (the data directory's sluice.db)"),
            DatabaseUrl::Sqlite(Some(p)) => write!(f, "sqlite://{}", p.display()),
            DatabaseUrl::Postgres(url) => Redacted(url).fmt(f),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A URL with the password of its user part replaced by `***`.
struct Redacted<'a>(&'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        let Some((scheme, rest)) = url.split_once("://") else { return f.write_str(url) };
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        match authority.rsplit_once('@') {
            Some((user, host)) => match user.split_once(':') {
                Some((name, _)) => write!(f, "{scheme}://{name}:***@{host}{tail}"),
                None => f.write_str(url),
            },
            None => f.write_str(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_a_password() {
        let pg = DatabaseUrl::parse("postgres://sluice:s3cret@db.example:5432/sluice").unwrap();
        assert_eq!(pg.to_string(), "postgres://sluice:***@db.example:5432/sluice");
        assert!(!format!("{pg:?}").contains("s3cret"));
        let bare = DatabaseUrl::parse("postgresql://db/sluice").unwrap();
        assert_eq!(bare.to_string(), "postgresql://db/sluice");
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/s.db").unwrap(),
            DatabaseUrl::Sqlite(Some("/var/lib/s.db".into()))
        );
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        let wrong = DatabaseUrl::parse("mysql://root:hunter2@db/x").unwrap_err().to_string();
        assert!(wrong.contains("mysql://root:***@db/x") && !wrong.contains("hunter2"), "{wrong}");
    }
}
