//! Submission users with argon2id password hashes. Verification runs on the
//! blocking pool: argon2 is deliberately slow and must not stall sessions.

use sqlx::SqlitePool;

use crate::{RecordError, password};

#[derive(Clone)]
pub struct Users {
    pool: SqlitePool,
}

impl Users {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        Users { pool }
    }

    /// Adds a user or replaces their password.
    pub async fn set(&self, name: &str, password: &str) -> Result<(), RecordError> {
        password::check_name(name)?;
        let hash = password::hash(password).await?;
        sqlx::query(
            "INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, strftime('%s','now'))
             ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
        )
        .bind(name)
        .bind(hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// True when `name` exists and `password` matches. Unknown users cost the
    /// same time as known ones, so timing does not reveal which names exist.
    pub async fn verify(&self, name: &str, password: &str) -> Result<bool, RecordError> {
        let stored: Option<String> = sqlx::query_scalar("SELECT password_hash FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        password::verify(stored, password).await
    }

    pub async fn list(&self) -> Result<Vec<String>, RecordError> {
        Ok(sqlx::query_scalar("SELECT name FROM users ORDER BY name").fetch_all(&self.pool).await?)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[tokio::test]
    async fn set_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let users = store.users();
        users.set("alice", "s3cret").await.unwrap();
        assert!(users.verify("alice", "s3cret").await.unwrap());
        assert!(!users.verify("alice", "wrong").await.unwrap());
        assert!(!users.verify("bob", "s3cret").await.unwrap());
        assert!(users.set("a b", "x").await.is_err());
        // Reopening keeps users and does not re-run migrations.
        store.close().await;
        let store = Store::open(dir.path()).await.unwrap();
        assert_eq!(store.users().list().await.unwrap(), vec!["alice".to_string()]);
    }
}
