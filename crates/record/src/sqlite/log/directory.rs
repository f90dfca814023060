//! Tenants, API keys, submission users and accounts' tenants on SQLite.

use super::Log;
use crate::directory::{KEY_PREFIX_LEN, KeyInfo, KeyRef, Tenant, key_hash, new_api_key, tenant_name};
use crate::events::now_ms;
use crate::{RecordError, password};

impl Log {
    /// The tenant called `name`, created if new.
    pub async fn tenant(&self, name: &str) -> Result<Tenant, RecordError> {
        let name = tenant_name(name)?;
        sqlx::query("INSERT INTO tenants (name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING")
            .bind(name)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM tenants WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(Tenant { id, name: name.to_string() })
    }

    /// A new API key for `tenant` (created if new). Only its SHA-256 is
    /// kept: the key itself is shown once, to the caller.
    pub async fn create_api_key(&self, tenant: &str) -> Result<String, RecordError> {
        let tenant = self.tenant(tenant).await?;
        let key = new_api_key();
        sqlx::query("INSERT INTO api_keys (tenant_id, prefix, key_hash, created_at) VALUES (?, ?, ?, ?)")
            .bind(tenant.id)
            .bind(&key[..KEY_PREFIX_LEN])
            .bind(key_hash(&key))
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(key)
    }

    /// A tenant's keys: (prefix, created_at, revoked_at), oldest first.
    pub async fn api_keys(&self, tenant: &str) -> Result<Vec<KeyInfo>, RecordError> {
        Ok(sqlx::query_as(
            "SELECT k.prefix, k.created_at, k.revoked_at FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE t.name = ? ORDER BY k.id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes a tenant's keys that start with `prefix` (as `api_keys`
    /// shows them: at least 8 characters), or the one key given whole. A
    /// running server stops accepting them within `KeyCache::TTL`.
    pub async fn revoke_api_key(&self, tenant: &str, prefix: &str) -> Result<u64, RecordError> {
        // Only the first KEY_PREFIX_LEN characters are kept in clear: a
        // shorter prefix matches their start, a longer one is the whole key.
        let q = match KeyRef::parse(prefix)? {
            KeyRef::Prefix(p) => sqlx::query(
                "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL AND substr(prefix, 1, ?) = ?
                 AND tenant_id = (SELECT id FROM tenants WHERE name = ?)",
            )
            .bind(now_ms())
            .bind(p.len() as i64)
            .bind(p),
            KeyRef::Hash(h) => sqlx::query(
                "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL AND key_hash = ?
                 AND tenant_id = (SELECT id FROM tenants WHERE name = ?)",
            )
            .bind(now_ms())
            .bind(h),
        };
        let done = q.bind(tenant).execute(&self.pool).await?;
        self.keys.clear();
        Ok(done.rows_affected())
    }

    /// The tenant of a (not revoked) API key.
    pub async fn authenticate(&self, key: &str) -> Result<Option<Tenant>, RecordError> {
        let hash = key_hash(key);
        if let Some(t) = self.keys.get(&hash) {
            return Ok(Some(t));
        }
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT t.id, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.key_hash = ? AND k.revoked_at IS NULL",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let tenant = row.map(|(id, name)| Tenant { id, name });
        if let Some(t) = &tenant {
            self.keys.put(hash, t.clone());
        }
        Ok(tenant)
    }

    /// Makes a submission user send on behalf of `tenant`.
    pub async fn set_user_tenant(&self, user: &str, tenant: &str) -> Result<(), RecordError> {
        self.give_to_tenant("UPDATE users SET tenant_id = ? WHERE name = ?", "user", user, tenant).await
    }

    /// Runs `update` (setting the `tenant_id` of the row called `name`)
    /// for `tenant`, created if new; an unknown `name` (a `what`) is the
    /// caller's error.
    async fn give_to_tenant(
        &self,
        update: &'static str,
        what: &str,
        name: &str,
        tenant: &str,
    ) -> Result<(), RecordError> {
        let tenant = self.tenant(tenant).await?;
        let done = sqlx::query(update).bind(tenant.id).bind(name).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(RecordError::Invalid(format!("no such {what}: {name}")));
        }
        Ok(())
    }

    /// The tenant a submission user sends for, if any.
    pub async fn user_tenant(&self, user: &str) -> Result<Option<Tenant>, RecordError> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT t.id, t.name FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE u.name = ?",
        )
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id, name)| Tenant { id, name }))
    }

    /// Every tenant, by name.
    pub async fn tenants(&self) -> Result<Vec<Tenant>, RecordError> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, name FROM tenants ORDER BY name").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|(id, name)| Tenant { id, name }).collect())
    }

    /// The store accounts that belong to a tenant, with its id: their
    /// domains' inbound mail is that tenant's.
    pub async fn account_tenants(&self) -> Result<Vec<(String, i64)>, RecordError> {
        Ok(sqlx::query_as("SELECT name, tenant_id FROM accounts WHERE tenant_id IS NOT NULL")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Makes a store account (and so its domains' inbound mail) a tenant's.
    pub async fn set_account_tenant(&self, account: &str, tenant: &str) -> Result<(), RecordError> {
        self.give_to_tenant("UPDATE accounts SET tenant_id = ? WHERE name = ?", "account", account, tenant)
            .await
    }

    /// Adds a user or replaces their password.
    pub async fn set_user(&self, name: &str, password: &str) -> Result<(), RecordError> {
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
    pub async fn verify_user(&self, name: &str, password: &str) -> Result<bool, RecordError> {
        let sql = "SELECT password_hash FROM users WHERE name = ?";
        super::super::verify_password(&self.pool, sql, name, password).await
    }

    /// The secret called `name`, or `made` stored now when there is none.
    pub async fn secret(&self, name: &str, made: &[u8]) -> Result<Vec<u8>, RecordError> {
        sqlx::query("INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(made)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM secrets WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Moves whenever `directory_changes` does (its triggers count every
    /// change to accounts, their domains, API keys and DKIM keys, from any
    /// process): read every second by a task started on the first call.
    /// A change also empties the key cache, so a key revoked by the CLI
    /// stops working within a second.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes
            .get_or_init(|| {
                let (tx, _) = tokio::sync::watch::channel(0);
                tokio::spawn(watch_changes(self.pool.clone(), self.keys.clone(), tx.clone()));
                tx
            })
            .subscribe()
    }

    pub async fn users(&self) -> Result<Vec<String>, RecordError> {
        Ok(sqlx::query_scalar("SELECT name FROM users ORDER BY name").fetch_all(&self.pool).await?)
    }
}

async fn watch_changes(
    pool: sqlx::SqlitePool,
    keys: std::sync::Arc<crate::directory::KeyCache>,
    changes: tokio::sync::watch::Sender<u64>,
) {
    let mut seen: Option<i64> = None;
    while !pool.is_closed() {
        match sqlx::query_scalar::<_, i64>("SELECT n FROM directory_changes").fetch_one(&pool).await {
            Ok(n) if seen != Some(n) => {
                if seen.is_some() {
                    keys.clear();
                    changes.send_modify(|c| *c = c.wrapping_add(1));
                }
                seen = Some(n);
            }
            Ok(_) => {}
            Err(e) if !pool.is_closed() => tracing::debug!(error = %e, "cannot read directory_changes"),
            Err(_) => {}
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[tokio::test]
    async fn reopening_keeps_users_and_runs_no_migration_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store.directory.set_user("alice", "s3cret").await.unwrap();
        store.close().await;
        let store = Store::open(dir.path()).await.unwrap();
        assert_eq!(store.directory.users().await.unwrap(), vec!["alice".to_string()]);
        assert!(store.directory.verify_user("alice", "s3cret").await.unwrap());
    }
}
