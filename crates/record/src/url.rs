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

/// A URL with its password (of the user part, or a `password=`
/// parameter) replaced by `***`.
struct Redacted<'a>(&'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        if let Some((scheme, rest)) = self.0.split_once("://") {
            let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            if let Some((user, host)) = authority.rsplit_once('@')
                && let Some((name, _)) = user.split_once(':')
            {
                shown = format!("{scheme}://{name}:***@{host}{tail}");
            }
        }
        if let Some(i) = shown.find("password=") {
            let value = i + "password=".len();
            let end = shown[value..].find('&').map_or(shown.len(), |e| value + e);
            shown.replace_range(value..end, "***");
        }
        f.write_str(&shown)
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
        let param =
            DatabaseUrl::parse("postgres://db/sluice?user=s&password=hunter2&sslmode=require").unwrap();
        assert_eq!(param.to_string(), "postgres://db/sluice?user=s&password=***&sslmode=require");
        let wrong = DatabaseUrl::parse("mysql://root:hunter2@db/x").unwrap_err().to_string();
        assert!(wrong.contains("mysql://root:***@db/x") && !wrong.contains("hunter2"), "{wrong}");
    }
}
