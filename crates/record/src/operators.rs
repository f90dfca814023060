//! Dashboard operators (issue 21): who may log in to the web dashboard,
//! which tenants each sees (every one, or those granted), and their
//! sessions. Passwords are argon2id hashes (`password.rs`, as submission
//! users'); a session is kept by the SHA-256 of its random token, so the
//! table alone opens no session. One implementation in SQL that SQLite and
//! PostgreSQL read alike (migrations sqlite `0019_operators.sql`, postgres
//! `0013_operators.sql`).

use sha2::{Digest, Sha256};
use sqlx::{Database, Decode, Pool, QueryBuilder, Type};

use crate::events::now_ms;
use crate::sql::Binds;
use crate::{BoxFuture, RecordError};

type Res<'a, T> = BoxFuture<'a, Result<T, RecordError>>;

/// An operator and what it may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    /// Every tenant, present and future.
    pub all_tenants: bool,
    /// The tenants granted (ids), when not `all_tenants`.
    pub tenants: Vec<i64>,
}

impl Operator {
    /// Whether the operator may see tenant `id`'s records.
    pub fn sees(&self, id: i64) -> bool {
        self.all_tenants || self.tenants.contains(&id)
    }
}

/// A live session: its operator and the CSRF secret of its forms.
#[derive(Debug, Clone)]
pub struct Session {
    pub operator: Operator,
    pub csrf: String,
    pub expires_at: i64,
}

/// The operators' store.
pub trait Operators: Send + Sync {
    /// Adds an operator or replaces its password and grants: `None` for
    /// every tenant, else the tenant ids it sees.
    fn set_operator<'a>(
        &'a self,
        name: &'a str,
        password: &'a str,
        tenants: Option<&'a [i64]>,
    ) -> Res<'a, ()>;
    /// Every operator, by name.
    fn operators(&self) -> Res<'_, Vec<Operator>>;
    /// The operator when `password` is its password (an unknown name
    /// costs the same time as a known one).
    fn login<'a>(&'a self, name: &'a str, password: &'a str) -> Res<'a, Option<Operator>>;
    /// Keeps a new session (by its token's hash) until `expires_at` (ms),
    /// and forgets the expired ones.
    fn start_session<'a>(
        &'a self,
        token: &'a str,
        operator: &'a str,
        csrf: &'a str,
        expires_at: i64,
    ) -> Res<'a, ()>;
    /// The session `token` opens, if it has not expired.
    fn session<'a>(&'a self, token: &'a str) -> Res<'a, Option<Session>>;
    /// Ends a session (logout).
    fn end_session<'a>(&'a self, token: &'a str) -> Res<'a, ()>;
}

/// The hex SHA-256 of a session token: what the table keeps.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The operators' store on one pool.
pub(crate) struct SqlOperators<DB: Database> {
    pool: Pool<DB>,
}

impl<DB: Database> SqlOperators<DB> {
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        SqlOperators { pool }
    }
}

type OperatorRow = (String, i64);
type SessionRow = (String, i64, String, i64);

impl<DB> SqlOperators<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    OperatorRow: for<'r> sqlx::FromRow<'r, DB::Row>,
    SessionRow: for<'r> sqlx::FromRow<'r, DB::Row>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    async fn set_(&self, name: &str, password: &str, tenants: Option<&[i64]>) -> Result<(), RecordError> {
        crate::password::check_name(name)?;
        let hash = crate::password::hash(password).await?;
        let mut tx = self.pool.begin().await?;
        let mut sql = QueryBuilder::<DB>::new(
            "INSERT INTO operators (name, password_hash, all_tenants, created_at) VALUES (",
        );
        let mut vals = sql.separated(", ");
        vals.push_bind(name.to_string()).push_bind(hash);
        vals.push_bind(i64::from(tenants.is_none())).push_bind(now_ms());
        sql.push(
            ") ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, \
             all_tenants = excluded.all_tenants",
        );
        sql.build().execute(&mut *tx).await?;
        let mut sql = QueryBuilder::<DB>::new("DELETE FROM operator_tenants WHERE operator = ");
        sql.push_bind(name.to_string()).build().execute(&mut *tx).await?;
        for id in tenants.unwrap_or_default() {
            let mut sql =
                QueryBuilder::<DB>::new("INSERT INTO operator_tenants (operator, tenant_id) VALUES (");
            sql.push_bind(name.to_string()).push(", ").push_bind(*id).push(") ON CONFLICT DO NOTHING");
            sql.build().execute(&mut *tx).await?;
        }
        // New grants (or a new password) end the sessions of the old ones.
        let mut sql = QueryBuilder::<DB>::new("DELETE FROM operator_sessions WHERE operator = ");
        sql.push_bind(name.to_string()).build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn grants(&self, name: &str, all: i64) -> Result<Operator, RecordError> {
        let mut sql = QueryBuilder::<DB>::new("SELECT tenant_id FROM operator_tenants WHERE operator = ");
        sql.push_bind(name.to_string()).push(" ORDER BY tenant_id");
        let ids: Vec<(i64,)> = sql.build_query_as().fetch_all(&self.pool).await?;
        Ok(Operator {
            name: name.to_string(),
            all_tenants: all != 0,
            tenants: ids.into_iter().map(|(id,)| id).collect(),
        })
    }

    async fn list_(&self) -> Result<Vec<Operator>, RecordError> {
        let mut sql = QueryBuilder::<DB>::new("SELECT name, all_tenants FROM operators ORDER BY name");
        let rows: Vec<OperatorRow> = sql.build_query_as().fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (name, all) in rows {
            out.push(self.grants(&name, all).await?);
        }
        Ok(out)
    }

    async fn login_(&self, name: &str, password: &str) -> Result<Option<Operator>, RecordError> {
        let mut sql = QueryBuilder::<DB>::new(
            "SELECT name, all_tenants, password_hash, CAST(0 AS BIGINT) FROM operators WHERE name = ",
        );
        sql.push_bind(name.to_string());
        let row: Option<SessionRow> = sql.build_query_as().fetch_optional(&self.pool).await?;
        let stored = row.as_ref().map(|(_, _, hash, _)| hash.clone());
        if !crate::password::verify(stored, password).await? {
            return Ok(None);
        }
        match row {
            Some((name, all, _, _)) => Ok(Some(self.grants(&name, all).await?)),
            None => Ok(None),
        }
    }

    async fn start_(
        &self,
        token: &str,
        operator: &str,
        csrf: &str,
        expires_at: i64,
    ) -> Result<(), RecordError> {
        let mut sql = QueryBuilder::<DB>::new("DELETE FROM operator_sessions WHERE expires_at < ");
        sql.push_bind(now_ms()).build().execute(&self.pool).await?;
        let mut sql = QueryBuilder::<DB>::new(
            "INSERT INTO operator_sessions (token_hash, operator, csrf, expires_at) VALUES (",
        );
        let mut vals = sql.separated(", ");
        vals.push_bind(token_hash(token)).push_bind(operator.to_string());
        vals.push_bind(csrf.to_string()).push_bind(expires_at);
        sql.push(")");
        sql.build().execute(&self.pool).await?;
        Ok(())
    }

    async fn session_(&self, token: &str) -> Result<Option<Session>, RecordError> {
        let mut sql = QueryBuilder::<DB>::new(
            "SELECT o.name, o.all_tenants, s.csrf, s.expires_at FROM operator_sessions s \
             JOIN operators o ON o.name = s.operator WHERE s.token_hash = ",
        );
        sql.push_bind(token_hash(token)).push(" AND s.expires_at > ").push_bind(now_ms());
        let row: Option<SessionRow> = sql.build_query_as().fetch_optional(&self.pool).await?;
        let Some((name, all, csrf, expires_at)) = row else { return Ok(None) };
        Ok(Some(Session { operator: self.grants(&name, all).await?, csrf, expires_at }))
    }

    async fn end_(&self, token: &str) -> Result<(), RecordError> {
        let mut sql = QueryBuilder::<DB>::new("DELETE FROM operator_sessions WHERE token_hash = ");
        sql.push_bind(token_hash(token)).build().execute(&self.pool).await?;
        Ok(())
    }
}

impl<DB> Operators for SqlOperators<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    OperatorRow: for<'r> sqlx::FromRow<'r, DB::Row>,
    SessionRow: for<'r> sqlx::FromRow<'r, DB::Row>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    fn set_operator<'a>(
        &'a self,
        name: &'a str,
        password: &'a str,
        tenants: Option<&'a [i64]>,
    ) -> Res<'a, ()> {
        Box::pin(self.set_(name, password, tenants))
    }
    fn operators(&self) -> Res<'_, Vec<Operator>> {
        Box::pin(self.list_())
    }
    fn login<'a>(&'a self, name: &'a str, password: &'a str) -> Res<'a, Option<Operator>> {
        Box::pin(self.login_(name, password))
    }
    fn start_session<'a>(
        &'a self,
        token: &'a str,
        operator: &'a str,
        csrf: &'a str,
        expires_at: i64,
    ) -> Res<'a, ()> {
        Box::pin(self.start_(token, operator, csrf, expires_at))
    }
    fn session<'a>(&'a self, token: &'a str) -> Res<'a, Option<Session>> {
        Box::pin(self.session_(token))
    }
    fn end_session<'a>(&'a self, token: &'a str) -> Res<'a, ()> {
        Box::pin(self.end_(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_operator_logs_in_and_its_session_opens_by_the_token_only() {
        let dir = tempfile::tempdir().expect("a directory");
        let store = crate::Store::open(dir.path()).await.expect("a store");
        let ops = &store.operators;
        ops.set_operator("ann", "s3cret", Some(&[7])).await.expect("added");
        ops.set_operator("root", "pw", None).await.expect("added");
        assert!(ops.login("ann", "wrong").await.expect("asked").is_none());
        assert!(ops.login("nobody", "s3cret").await.expect("asked").is_none());
        let ann = ops.login("ann", "s3cret").await.expect("asked").expect("ann");
        assert!(ann.sees(7) && !ann.sees(8) && !ann.all_tenants);
        let listed = ops.operators().await.expect("listed");
        assert_eq!(listed.iter().map(|o| o.all_tenants).collect::<Vec<_>>(), [false, true]);
        ops.start_session("tok", "ann", "csrf1", now_ms() + 60_000).await.expect("kept");
        ops.start_session("old", "ann", "csrf2", now_ms() - 1).await.expect("kept");
        let s = ops.session("tok").await.expect("asked").expect("live");
        assert_eq!((s.operator.name.as_str(), s.csrf.as_str()), ("ann", "csrf1"));
        assert!(ops.session("old").await.expect("asked").is_none(), "expired");
        assert!(ops.session(&token_hash("tok")).await.expect("asked").is_none(), "the hash opens nothing");
        ops.end_session("tok").await.expect("ended");
        assert!(ops.session("tok").await.expect("asked").is_none());
    }
}
