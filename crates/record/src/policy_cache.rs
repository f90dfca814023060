//! Policy rows kept in memory between writes, for a database that lives in
//! one file (SQLite): filter mode reads a recipient's rows for every
//! message, and on SQLite each read is a hand-off to a connection's worker
//! thread and back. The rows only change when `policy set`/`unset` (or the
//! API) writes them, so every such write, after its commit, puts a fresh
//! token in the file beside the database ([`Signal`], `sluice.db-policy`).
//! A reader takes the token *before* it reads the rows and keeps them under
//! it; the rows are used again only while the file still holds that token.
//!
//! This keeps the promise that a change applies to the next message, on
//! every process on the machine (a server, and the CLI that changed it):
//! a write's token lands after its commit, so any message that starts once
//! the write has answered sees a token it has not kept rows under, and
//! reads again. A token that cannot be read (the file is gone, the
//! directory unreadable) keeps nothing: every read goes to the database.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::RecordError;
use crate::policy::PolicyRow;

/// Scopes kept before the cache starts again (a tenant with more users
/// than this still works; it reads more often).
const KEPT_MAX: usize = 50_000;

/// The change token beside a database file.
#[derive(Debug)]
pub(crate) struct Signal {
    path: PathBuf,
}

impl Signal {
    /// The signal of the database in `db` (created with a first token
    /// when missing, so a server caches before the first change).
    pub(crate) fn beside(db: &Path) -> Signal {
        let mut name = db.as_os_str().to_owned();
        name.push("-policy");
        let signal = Signal { path: PathBuf::from(name) };
        if !signal.path.exists()
            && let Err(e) = signal.bump()
        {
            tracing::warn!(path = %signal.path.display(), error = %e, "policy change signal not written: policies are read for every message");
        }
        signal
    }

    /// The current token, if it can be read.
    fn token(&self) -> Option<Vec<u8>> {
        std::fs::read(&self.path).ok().filter(|t| !t.is_empty())
    }

    /// Writes a token no reader has seen (written aside, then renamed in,
    /// so a reader sees the old token or the new one, never half of one).
    fn bump(&self) -> std::io::Result<()> {
        let token = uuid::Uuid::new_v4().to_string();
        let mut aside = self.path.clone().into_os_string();
        aside.push(format!(".{}", token));
        let aside = PathBuf::from(aside);
        let written = std::fs::File::create(&aside).and_then(|mut f| f.write_all(token.as_bytes()));
        let renamed = written.and_then(|()| std::fs::rename(&aside, &self.path));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&aside);
        }
        renamed
    }

    /// Says that the rows changed: a new token, or else no token at all
    /// (readers then read every time). An error only when neither could
    /// be done: a server may then keep the old rows until it restarts.
    pub(crate) fn changed(&self) -> Result<(), RecordError> {
        let Err(e) = self.bump() else { return Ok(()) };
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(gone) if gone.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(_) => Err(RecordError::Unavailable(format!(
                "the policy change is saved, but {} could not be updated ({e}): \
                 running servers keep the old policy until they restart",
                self.path.display()
            ))),
        }
    }
}

/// Rows by tenant and scope, kept under the token they were read with.
#[derive(Default)]
struct Kept {
    token: Vec<u8>,
    rows: HashMap<i64, HashMap<String, Vec<PolicyRow>>>,
    /// Scopes kept, all tenants together.
    scopes: usize,
}

/// The policy rows of a database with a [`Signal`].
pub(crate) struct RowCache {
    signal: Signal,
    kept: Mutex<Kept>,
}

impl RowCache {
    pub(crate) fn new(signal: Signal) -> RowCache {
        RowCache { signal, kept: Mutex::new(Kept::default()) }
    }

    /// The token to read under, if there is one.
    pub(crate) fn token(&self) -> Option<Vec<u8>> {
        self.signal.token()
    }

    /// The rows of `scopes`, if every one is kept under `token`.
    pub(crate) fn get(&self, token: &[u8], tenant: i64, scopes: &[&str]) -> Option<Vec<PolicyRow>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.token != token {
            return None;
        }
        let mine = kept.rows.get(&tenant)?;
        let mut rows = Vec::new();
        for s in scopes {
            rows.extend_from_slice(mine.get(*s)?);
        }
        // In the order the database answers in.
        rows.sort_by(|a, b| (&a.scope, &a.key).cmp(&(&b.scope, &b.key)));
        Some(rows)
    }

    /// Keeps `rows`, read for `scopes` after `token` was taken.
    pub(crate) fn keep(&self, token: Vec<u8>, tenant: i64, scopes: &[&str], rows: &[PolicyRow]) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.token != token || kept.scopes + scopes.len() > KEPT_MAX {
            *kept = Kept { token, ..Kept::default() };
        }
        let mine = kept.rows.entry(tenant).or_default();
        let before = mine.len();
        for s in scopes {
            mine.insert(s.to_string(), rows.iter().filter(|r| r.scope == *s).cloned().collect());
        }
        let added = mine.len() - before;
        kept.scopes += added;
    }

    /// After a write has committed.
    pub(crate) fn changed(&self) -> Result<(), RecordError> {
        self.signal.changed()
    }
}
