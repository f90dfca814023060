//! The spam filter's counts ([`SpamTokens`]): the global model
//! (scope [`GLOBAL`], trained from folders by `sluice spam train`) and
//! each user's own (scope: the address; what a user taught the filter by
//! moving mail into or out of `Spam` over IMAP). One SQL for SQLite and
//! PostgreSQL (migrations sqlite `0017_spam_tokens.sql`,
//! `0018_spam_global.sql`; postgres `0011`, `0012`). Counts are read once
//! and kept in memory by the filter; every node reads the global model
//! again when its stamp moves; training writes through here.

use sqlx::{Database, Decode, Pool, QueryBuilder, Type};

use crate::events::now_ms;
use crate::sql::Binds;
use crate::{BoxFuture, RecordError};

type Res<'a, T> = BoxFuture<'a, Result<T, RecordError>>;

/// One scope's counts: messages trained as ham and as spam, and each
/// token's (ham, spam) counts.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ScopeCounts {
    pub ham: u32,
    pub spam: u32,
    pub tokens: Vec<(u64, u32, u32)>,
}

/// The global model's scope (never an address).
pub const GLOBAL: &str = "global";

/// Where the counts are kept.
pub trait SpamTokens: Send + Sync + 'static {
    /// Adds `counts` to `scope` in one transaction (after removing what
    /// it held, with `reset`), and moves its stamp.
    fn add_counts<'a>(&'a self, scope: &'a str, counts: &'a ScopeCounts, reset: bool) -> Res<'a, ()>;
    /// When `scope` was last trained in bulk (Unix ms; `None`: never).
    fn stamp<'a>(&'a self, scope: &'a str) -> Res<'a, Option<i64>>;
    /// A scope's counts (empty when it was never trained).
    fn load_counts<'a>(&'a self, scope: &'a str) -> Res<'a, ScopeCounts>;
    /// Trains message `hash` (its distinct `tokens`) into `scope` as spam
    /// or ham, in one transaction: a message trained the other way before
    /// is untrained first; one trained this way already changes nothing.
    /// Whether the counts changed.
    fn train<'a>(&'a self, scope: &'a str, hash: &'a str, tokens: &'a [u64], is_spam: bool) -> Res<'a, bool>;
    /// How message `hash` was last trained in `scope`, if it was.
    fn trained_as<'a>(&'a self, scope: &'a str, hash: &'a str) -> Res<'a, Option<bool>>;
}

/// [`SpamTokens`] on one pool.
pub(crate) struct SqlSpamTokens<DB: Database> {
    pool: Pool<DB>,
}

impl<DB: Database> SqlSpamTokens<DB> {
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        SqlSpamTokens { pool }
    }
}

/// Token rows per statement (four binds each).
const ROWS: usize = 200;

fn count(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

impl<DB> SqlSpamTokens<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    (i64, i64, i64): for<'r> sqlx::FromRow<'r, DB::Row>,
    (i64, i64): for<'r> sqlx::FromRow<'r, DB::Row>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    async fn load_(&self, scope: &str) -> Result<ScopeCounts, RecordError> {
        let mut q = QueryBuilder::<DB>::new("SELECT ham, spam FROM spam_totals WHERE scope = ");
        q.push_bind(scope.to_string());
        let totals: Option<(i64, i64)> = q.build_query_as().fetch_optional(&self.pool).await?;
        let Some((ham, spam)) = totals else { return Ok(ScopeCounts::default()) };
        let mut q = QueryBuilder::<DB>::new("SELECT token, ham, spam FROM spam_tokens WHERE scope = ");
        q.push_bind(scope.to_string()).push(" AND (ham > 0 OR spam > 0)");
        let rows: Vec<(i64, i64, i64)> = q.build_query_as().fetch_all(&self.pool).await?;
        Ok(ScopeCounts {
            ham: count(ham),
            spam: count(spam),
            tokens: rows.into_iter().map(|(t, h, s)| (t as u64, count(h), count(s))).collect(),
        })
    }

    async fn add_counts_(&self, scope: &str, counts: &ScopeCounts, reset: bool) -> Result<(), RecordError> {
        let mut tx = self.pool.begin().await?;
        if reset {
            for table in ["spam_tokens", "spam_totals", "spam_trained"] {
                let mut q = QueryBuilder::<DB>::new(format!("DELETE FROM {table} WHERE scope = "));
                q.push_bind(scope.to_string());
                q.build().execute(&mut *tx).await?;
            }
        }
        for chunk in counts.tokens.chunks(ROWS) {
            let mut q = QueryBuilder::<DB>::new("INSERT INTO spam_tokens (scope, token, ham, spam) ");
            q.push_values(chunk, |mut b, (t, h, s)| {
                b.push_bind(scope.to_string())
                    .push_bind(*t as i64)
                    .push_bind(i64::from(*h))
                    .push_bind(i64::from(*s));
            });
            q.push(
                " ON CONFLICT (scope, token) DO UPDATE SET ham = spam_tokens.ham + excluded.ham, \
                 spam = spam_tokens.spam + excluded.spam",
            );
            q.build().execute(&mut *tx).await?;
        }
        let mut q =
            QueryBuilder::<DB>::new("INSERT INTO spam_totals (scope, ham, spam, changed_at) VALUES (");
        q.push_bind(scope.to_string()).push(", ").push_bind(i64::from(counts.ham));
        q.push(", ").push_bind(i64::from(counts.spam)).push(", ").push_bind(now_ms());
        q.push(
            ") ON CONFLICT (scope) DO UPDATE SET ham = spam_totals.ham + excluded.ham, \
             spam = spam_totals.spam + excluded.spam, changed_at = excluded.changed_at",
        );
        q.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn stamp_(&self, scope: &str) -> Result<Option<i64>, RecordError> {
        let mut q = QueryBuilder::<DB>::new("SELECT changed_at FROM spam_totals WHERE scope = ");
        q.push_bind(scope.to_string());
        let row: Option<(i64,)> = q.build_query_as().fetch_optional(&self.pool).await?;
        Ok(row.map(|(at,)| at))
    }

    async fn trained_as_(&self, scope: &str, hash: &str) -> Result<Option<bool>, RecordError> {
        let mut q = QueryBuilder::<DB>::new("SELECT is_spam FROM spam_trained WHERE scope = ");
        q.push_bind(scope.to_string()).push(" AND hash = ").push_bind(hash.to_string());
        let row: Option<(i64,)> = q.build_query_as().fetch_optional(&self.pool).await?;
        Ok(row.map(|(s,)| s != 0))
    }

    async fn train_(
        &self,
        scope: &str,
        hash: &str,
        tokens: &[u64],
        is_spam: bool,
    ) -> Result<bool, RecordError> {
        let before = self.trained_as_(scope, hash).await?;
        if before == Some(is_spam) {
            return Ok(false);
        }
        let mut distinct = tokens.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let mut tx = self.pool.begin().await?;
        let mut steps = vec![(is_spam, 1i64)];
        if let Some(previous) = before {
            steps.push((previous, -1));
        }
        for (spam, delta) in steps {
            let (h, s) = if spam { (0, delta) } else { (delta, 0) };
            for chunk in distinct.chunks(ROWS) {
                let mut q = QueryBuilder::<DB>::new("INSERT INTO spam_tokens (scope, token, ham, spam) ");
                q.push_values(chunk, |mut b, t| {
                    b.push_bind(scope.to_string()).push_bind(*t as i64).push_bind(h).push_bind(s);
                });
                q.push(
                    " ON CONFLICT (scope, token) DO UPDATE SET ham = spam_tokens.ham + excluded.ham, \
                     spam = spam_tokens.spam + excluded.spam",
                );
                q.build().execute(&mut *tx).await?;
            }
            let mut q = QueryBuilder::<DB>::new("INSERT INTO spam_totals (scope, ham, spam) VALUES (");
            q.push_bind(scope.to_string()).push(", ").push_bind(h).push(", ").push_bind(s);
            q.push(
                ") ON CONFLICT (scope) DO UPDATE SET ham = spam_totals.ham + excluded.ham, \
                 spam = spam_totals.spam + excluded.spam",
            );
            q.build().execute(&mut *tx).await?;
        }
        let mut q = QueryBuilder::<DB>::new("INSERT INTO spam_trained (scope, hash, is_spam, at) VALUES (");
        q.push_bind(scope.to_string()).push(", ").push_bind(hash.to_string()).push(", ");
        q.push_bind(i64::from(is_spam)).push(", ").push_bind(now_ms());
        q.push(") ON CONFLICT (scope, hash) DO UPDATE SET is_spam = excluded.is_spam, at = excluded.at");
        q.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl<DB> SpamTokens for SqlSpamTokens<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    (i64, i64, i64): for<'r> sqlx::FromRow<'r, DB::Row>,
    (i64, i64): for<'r> sqlx::FromRow<'r, DB::Row>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    fn load_counts<'a>(&'a self, scope: &'a str) -> Res<'a, ScopeCounts> {
        Box::pin(self.load_(scope))
    }
    fn add_counts<'a>(&'a self, scope: &'a str, counts: &'a ScopeCounts, reset: bool) -> Res<'a, ()> {
        Box::pin(self.add_counts_(scope, counts, reset))
    }
    fn stamp<'a>(&'a self, scope: &'a str) -> Res<'a, Option<i64>> {
        Box::pin(self.stamp_(scope))
    }
    fn train<'a>(&'a self, scope: &'a str, hash: &'a str, tokens: &'a [u64], is_spam: bool) -> Res<'a, bool> {
        Box::pin(self.train_(scope, hash, tokens, is_spam))
    }
    fn trained_as<'a>(&'a self, scope: &'a str, hash: &'a str) -> Res<'a, Option<bool>> {
        Box::pin(self.trained_as_(scope, hash))
    }
}
