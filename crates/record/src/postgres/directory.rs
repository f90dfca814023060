//! Tenants, API keys, submission users and accounts' tenants on PostgreSQL.

use super::Postgres;
use crate::directory::{
    Directory, DkimKey, KEY_PREFIX_LEN, KeyInfo, KeyRef, Tenant, key_hash, new_api_key, tenant_name,
};
use crate::events::now_ms;
use crate::{BoxFuture, RecordError, password};

type Res<'a, T> = BoxFuture<'a, Result<T, RecordError>>;

impl Postgres {
    async fn tenant_named(&self, name: &str) -> Result<Tenant, RecordError> {
        let name = tenant_name(name)?;
        // DO UPDATE (a no-op) rather than DO NOTHING: RETURNING then
        // answers for a tenant that exists too, in one round trip.
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tenants (name, created_at) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
        )
        .bind(name)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(Tenant { id, name: name.to_string() })
    }

    /// Runs `update` (setting `$1` as the `tenant_id` of the row called
    /// `$2`) for `tenant`, created if new; an unknown `name` (a `what`)
    /// is the caller's error.
    async fn give_to_tenant(
        &self,
        update: &'static str,
        what: &str,
        name: &str,
        tenant: &str,
    ) -> Result<(), RecordError> {
        let tenant = self.tenant_named(tenant).await?;
        let done = sqlx::query(update).bind(tenant.id).bind(name).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(RecordError::Invalid(format!("no such {what}: {name}")));
        }
        Ok(())
    }

    async fn revoke(&self, tenant: &str, given: &str) -> Result<u64, RecordError> {
        // Only the first KEY_PREFIX_LEN characters are kept in clear: a
        // shorter reference matches their start, a longer one is the key.
        let q = match KeyRef::parse(given)? {
            KeyRef::Prefix(p) => sqlx::query(
                "UPDATE api_keys SET revoked_at = $1 WHERE revoked_at IS NULL AND starts_with(prefix, $2)
                 AND tenant_id = (SELECT id FROM tenants WHERE name = $3)",
            )
            .bind(now_ms())
            .bind(p),
            KeyRef::Hash(h) => sqlx::query(
                "UPDATE api_keys SET revoked_at = $1 WHERE revoked_at IS NULL AND key_hash = $2
                 AND tenant_id = (SELECT id FROM tenants WHERE name = $3)",
            )
            .bind(now_ms())
            .bind(h),
        };
        // Every node forgets the keys it knew when this commits (the
        // table's trigger announces it), this one at once.
        let done = q.bind(tenant).execute(&self.pool).await?;
        self.keys.clear();
        Ok(done.rows_affected())
    }

    async fn authenticated(&self, key: &str) -> Result<Option<Tenant>, RecordError> {
        let hash = key_hash(key);
        if let Some(t) = self.keys.get(&hash) {
            return Ok(Some(t));
        }
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT t.id, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
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

    async fn set_password(&self, name: &str, password: &str) -> Result<(), RecordError> {
        password::check_name(name)?;
        let hash = password::hash(password).await?;
        sqlx::query(
            "INSERT INTO users (name, password_hash, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash",
        )
        .bind(name)
        .bind(hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn tenants(rows: Vec<(i64, String)>) -> Vec<Tenant> {
    rows.into_iter().map(|(id, name)| Tenant { id, name }).collect()
}

impl Directory for Postgres {
    fn tenant<'a>(&'a self, name: &'a str) -> Res<'a, Tenant> {
        Box::pin(self.tenant_named(name))
    }

    fn tenants(&self) -> Res<'_, Vec<Tenant>> {
        Box::pin(async move {
            let sql = "SELECT id, name FROM tenants ORDER BY name";
            Ok(tenants(sqlx::query_as(sql).fetch_all(&self.pool).await?))
        })
    }

    fn create_api_key<'a>(&'a self, tenant: &'a str) -> Res<'a, String> {
        Box::pin(async move {
            let tenant = self.tenant_named(tenant).await?;
            let key = new_api_key();
            sqlx::query(
                "INSERT INTO api_keys (tenant_id, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(tenant.id)
            .bind(&key[..KEY_PREFIX_LEN])
            .bind(key_hash(&key))
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
            Ok(key)
        })
    }

    fn api_keys<'a>(&'a self, tenant: &'a str) -> Res<'a, Vec<KeyInfo>> {
        Box::pin(async move {
            Ok(sqlx::query_as(
                "SELECT k.prefix, k.created_at, k.revoked_at FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
                 WHERE t.name = $1 ORDER BY k.id",
            )
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn revoke_api_key<'a>(&'a self, tenant: &'a str, key: &'a str) -> Res<'a, u64> {
        Box::pin(self.revoke(tenant, key))
    }

    fn authenticate<'a>(&'a self, key: &'a str) -> Res<'a, Option<Tenant>> {
        Box::pin(self.authenticated(key))
    }

    fn set_user<'a>(&'a self, name: &'a str, password: &'a str) -> Res<'a, ()> {
        Box::pin(self.set_password(name, password))
    }

    fn verify_user<'a>(&'a self, name: &'a str, password: &'a str) -> Res<'a, bool> {
        Box::pin(async move {
            let stored: Option<String> =
                sqlx::query_scalar("SELECT password_hash FROM users WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
            password::verify(stored, password).await
        })
    }

    fn users(&self) -> Res<'_, Vec<String>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar("SELECT name FROM users ORDER BY name").fetch_all(&self.pool).await?)
        })
    }

    fn remove_user<'a>(&'a self, name: &'a str) -> Res<'a, bool> {
        Box::pin(async move {
            let done =
                sqlx::query("DELETE FROM users WHERE name = $1").bind(name).execute(&self.pool).await?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn set_user_tenant<'a>(&'a self, user: &'a str, tenant: &'a str) -> Res<'a, ()> {
        Box::pin(self.give_to_tenant("UPDATE users SET tenant_id = $1 WHERE name = $2", "user", user, tenant))
    }

    fn user_tenant<'a>(&'a self, user: &'a str) -> Res<'a, Option<Tenant>> {
        Box::pin(async move {
            let row: Option<(i64, String)> = sqlx::query_as(
                "SELECT t.id, t.name FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE u.name = $1",
            )
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.map(|(id, name)| Tenant { id, name }))
        })
    }

    fn account_tenants(&self) -> Res<'_, Vec<(String, i64)>> {
        Box::pin(async move {
            Ok(sqlx::query_as("SELECT name, tenant_id FROM accounts WHERE tenant_id IS NOT NULL")
                .fetch_all(&self.pool)
                .await?)
        })
    }

    fn set_account_tenant<'a>(&'a self, account: &'a str, tenant: &'a str) -> Res<'a, ()> {
        let update = "UPDATE accounts SET tenant_id = $1 WHERE name = $2";
        Box::pin(self.give_to_tenant(update, "account", account, tenant))
    }

    fn secret<'a>(&'a self, name: &'a str, made: &'a [u8]) -> Res<'a, Vec<u8>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(made)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
            let value = sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool);
            Ok(value.await?)
        })
    }

    fn dkim_keys(&self) -> Res<'_, Vec<DkimKey>> {
        Box::pin(crate::sql::dkim_keys(&self.pool))
    }

    fn add_dkim_key<'a>(&'a self, key: &'a DkimKey) -> Res<'a, bool> {
        Box::pin(crate::sql::add_dkim_key(&self.pool, key))
    }

    fn remove_dkim_key<'a>(&'a self, domain: &'a str, selector: &'a str) -> Res<'a, bool> {
        Box::pin(crate::sql::remove_dkim_key(&self.pool, domain, selector))
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.directory.subscribe()
    }
}
