//! A PostgreSQL server for the tests: started once per test process by
//! `scripts/pg-test-server` (initdb into a temporary directory; stopped and
//! removed when the process ends), with a fresh database for each caller.
//! No server, no test: it fails loudly, naming the script that installs one.

use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

/// The server's URL (its `sluice` database).
fn server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let me = std::process::id().to_string();
        let dir = format!("/tmp/sluice-pg-test-{me}");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-test-server");
        let out =
            Command::new(script).args(["start", &dir, &me]).output().expect("running scripts/pg-test-server");
        assert!(
            out.status.success(),
            "no PostgreSQL server for the tests (scripts/install-test-deps.sh installs one): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// The URL of a new, empty database on the tests' server.
pub async fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = server();
    let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let mut admin = sqlx::PgConnection::connect(base).await.expect("connecting to the tests' PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("creating a database");
    let (server, _) = base.rsplit_once('/').expect("a URL with a database");
    format!("{server}/{name}")
}

/// A fresh, empty store of each backend, named, with what keeps it alive
/// (SQLite's directory; an empty one for PostgreSQL).
#[allow(dead_code)] // not every test file asks both backends
pub async fn backends() -> Vec<(&'static str, record::Store, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite = record::Store::open(dir.path()).await.expect("a SQLite store");
    let pg =
        record::postgres::Postgres::connect(&fresh_database().await, 4).await.expect("a PostgreSQL store");
    let nothing = tempfile::tempdir().expect("a temporary directory");
    vec![("sqlite", sqlite, dir), ("postgres", pg.into_store(), nothing)]
}
