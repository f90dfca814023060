//! Statistics (`stats.rs` says what each number counts) in SQL that
//! SQLite and PostgreSQL read alike, written once and run by both; what
//! differs is a [`Dialect`].
//!
//! Why it is fast: two partial indexes hold only the statistics' events
//! (`events_stats` every kind counted, `events_engagement` opens and
//! clicks; migrations sqlite `0015_stats.sql`, postgres `0009_stats.sql`),
//! each in the order its database aggregates best. SQLite, which can only
//! sort to group, walks them in their order and aggregates as it goes:
//! counts by type, hour and reason, unique pairs recipient by recipient (a
//! query names the index, [`Dialect::hint`]). PostgreSQL reads a window's
//! part by time and hashes. By provider, only the providers' events are
//! grouped (sluice's are the rest); `tag` and `domain` read the window's
//! events themselves, and cost most. A partial index serves only a query
//! whose condition says it term for term: [`KINDS`] and [`ENGAGED`] are
//! the migrations' text (a test checks).

use sqlx::{Database, Decode, QueryBuilder, Type};

use crate::RecordError;
use crate::directory::Tenant;
use crate::sql::Binds;
use crate::stats::{Counts, DAY, GroupBy, Groups, HOUR, MACHINE_CLASSES, Stats, StatsQuery};

/// What the two databases say differently here.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    /// The function that finds a substring.
    instr: &'static str,
    /// Whether a query names the index it is to walk: SQLite's planner
    /// prefers `events_at` once `ANALYZE` has run, and then sorts every
    /// event.
    hint: bool,
    /// Whether a window is said of the hour too, for `events_stats` to be
    /// read only in its part (SQLite's leads with the hour after the type;
    /// PostgreSQL's with the time, and two conditions on one column would
    /// mislead its estimates).
    hours: bool,
    /// What a statement's transaction sets first. PostgreSQL: no JIT (its
    /// compiling costs these statements a tenth of a second, and saves
    /// them nothing), and room to hash a month's recipients in memory
    /// rather than sort them on disk.
    settings: &'static [&'static str],
    /// How many statements statistics run at once, all requests together:
    /// the rest of the pool stays for what cannot wait (SQLite's pool of
    /// four is its writer's too).
    slots: &'static tokio::sync::Semaphore,
}

static SQLITE_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
static POSTGRES_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

impl Dialect {
    pub(crate) const SQLITE: Dialect =
        Dialect { instr: "instr", hint: true, hours: true, settings: &[], slots: &SQLITE_SLOTS };
    pub(crate) const POSTGRES: Dialect = Dialect {
        instr: "strpos",
        hint: false,
        hours: false,
        settings: &["SET LOCAL jit = off", "SET LOCAL work_mem = '64MB'"],
        slots: &POSTGRES_SLOTS,
    };

    /// `events e`, walked by `index` where the database takes a hint.
    fn events(self, index: &str) -> String {
        if self.hint { format!("events e INDEXED BY {index}") } else { "events e".into() }
    }

    /// The provider that reported an event (`provider:NAME:...`), or
    /// `sluice`.
    fn provider(self, source: &str) -> String {
        let i = self.instr;
        format!(
            "CASE WHEN substr({source}, 1, 9) = 'provider:' \
             THEN substr({source}, 10, {i}(substr({source}, 10) || ':', ':') - 1) ELSE 'sluice' END"
        )
    }

    /// An address's domain (all of it when it has no `@`).
    fn domain(self, address: &str) -> String {
        format!("substr({address}, {}({address}, '@') + 1)", self.instr)
    }
}

/// The kinds statistics count, as the partial index `events_stats` is
/// defined over them (SQLite uses a partial index only for a query that
/// says its condition term for term: keep this the migrations' text).
pub(crate) const KINDS: &str = "e.type IN ('queued', 'sent', 'delivered', 'deferred', 'bounced', 'rejected', 'failed', 'complained', 'unsubscribed', 'opened', 'clicked')";

/// Events a provider's webhooks reported.
const PROVIDED: &str = "substr(e.source, 1, 9) = 'provider:'";

/// Opens and clicks, as `events_engagement` is defined over them.
const ENGAGED: &str = "e.type IN ('opened', 'clicked')";

/// An engagement's machine class from its reason (`NULL` for another).
const CLASS: &str = "CASE WHEN x.r IN ('human', 'privacy_proxy', 'scanner', 'unknown') THEN x.r END";

/// A keyed count: (bucket start, key, type, reason kept, n).
type CountRow = (Option<i64>, Option<String>, String, Option<String>, i64);

/// Unique pairs: (bucket of the first, key, bucket of the first human,
/// type, pairs, pairs with a human one, their events, their human events).
type UniqueRow = (Option<i64>, Option<String>, Option<i64>, String, i64, i64, i64, i64);

/// Unique pairs by class: (type, human, privacy_proxy, scanner, unknown,
/// none of these, pairs).
type ClassRow = (String, i64, i64, i64, i64, i64, i64);

/// Unique pairs by provider: (type, provider, pairs, human pairs through
/// it, pairs sluice saw, human pairs sluice saw, human pairs).
type ProviderRow = (String, Option<String>, i64, i64, i64, i64, i64);

/// A tenant's numbers over a window, read from either backend's pool: the
/// statements of a query run side by side.
pub(crate) async fn stats<DB: Database>(
    pool: &sqlx::Pool<DB>,
    dialect: Dialect,
    tenant: &Tenant,
    q: &StatsQuery,
) -> Result<Stats, RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    CountRow: for<'r> sqlx::FromRow<'r, DB::Row>,
    UniqueRow: for<'r> sqlx::FromRow<'r, DB::Row>,
    ClassRow: for<'r> sqlx::FromRow<'r, DB::Row>,
    ProviderRow: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    if q.from >= q.to {
        return Ok(Stats {
            from: q.from,
            to: q.to,
            group_by: q.group_by,
            groups: Vec::new(),
            total: Counts::default(),
        });
    }
    let g = q.group_by;
    let fetch = |sql: QueryBuilder<DB>| async move {
        let rows: Vec<CountRow> = rows(pool, dialect, sql).await?;
        Ok::<_, RecordError>(rows)
    };
    let counts = match g {
        Some(GroupBy::Tag | GroupBy::Domain) => fetch(read_counts(dialect, tenant, q)),
        _ => fetch(indexed_counts(dialect, tenant, q, g)),
    };
    // The window's own counts, where the groups do not add up to them (a
    // message with two tags is in both; the providers' are only theirs).
    let total = async {
        match g {
            Some(GroupBy::Tag | GroupBy::Provider) => {
                fetch(indexed_counts(dialect, tenant, q, None)).await.map(Some)
            }
            _ => Ok(None),
        }
    };
    let grouped_unique = unique(pool, dialect, tenant, q, g);
    // A pair with two tags is in both groups: the window's pairs are
    // counted apart. (By class or provider the same pass counts them.)
    let total_unique = async {
        match g {
            Some(GroupBy::Tag) => unique(pool, dialect, tenant, q, None).await.map(Some),
            _ => Ok(None),
        }
    };
    let (counts, total_rows, grouped_unique, total_unique) =
        tokio::try_join!(counts, total, grouped_unique, total_unique)?;

    let mut groups = Groups::default();
    for (start, key, kind, reason, n) in counts {
        groups.at(key, start).count(&kind, reason.as_deref(), n.max(0) as u64);
    }
    let mut total = Counts::default();
    if let Some(rows) = &total_rows {
        for (_, _, kind, reason, n) in rows {
            total.count(kind, reason.as_deref(), (*n).max(0) as u64);
        }
    }
    if g == Some(GroupBy::Provider) {
        // What no provider reported, sluice saw itself.
        let mut ours = total.clone();
        groups.0.values().for_each(|c| ours.subtract(c));
        if ours != Counts::default() {
            groups.at(Some("sluice".into()), None).add(&ours);
        }
    }
    grouped_unique.apply(&mut groups, g);
    if total_rows.is_none() {
        groups.0.values().for_each(|c| total.add(c));
    }
    let uniques = total_unique.as_ref().unwrap_or(&grouped_unique);
    for kind in ["opened", "clicked"] {
        let (u, uh) = uniques.whole(kind);
        let e = total.engagement(kind);
        (e.unique, e.unique_human) = (u, uh);
    }
    let groups = match g {
        None => Vec::new(),
        Some(_) => groups.sorted(),
    };
    Ok(Stats { from: q.from, to: q.to, group_by: g, groups, total })
}

/// The counts of the groupings `events_stats` orders (every one but tag
/// and domain), walked in its order and folded by key.
pub(crate) fn indexed_counts<DB: Database>(
    d: Dialect,
    tenant: &Tenant,
    q: &StatsQuery,
    g: Option<GroupBy>,
) -> QueryBuilder<DB>
where
    i64: Binds<DB>,
{
    let (start, key): (Option<String>, Option<String>) = match g {
        Some(GroupBy::Hour) => (Some(format!("x.h * {HOUR}")), None),
        Some(GroupBy::Day) => (Some(format!("(x.h / 24) * {DAY}")), None),
        Some(GroupBy::Reason) => {
            (None, Some(format!("CASE WHEN x.t IN ('opened', 'clicked') THEN {CLASS} ELSE x.r END")))
        }
        Some(GroupBy::MachineClass) => {
            (None, Some(format!("CASE WHEN x.t IN ('opened', 'clicked') THEN {CLASS} END")))
        }
        Some(GroupBy::Provider) => (None, Some("x.p".into())),
        _ => (None, None),
    };
    let kept = "CASE WHEN x.t IN ('bounced', 'rejected', 'failed') OR x.r = 'human' THEN x.r END";
    let mut sql = QueryBuilder::new(format!(
        "SELECT {} AS start, {} AS gkey, x.t AS t, {kept} AS r, CAST(SUM(x.n) AS BIGINT) AS n FROM (",
        start.as_deref().unwrap_or(NO_START),
        key.as_deref().unwrap_or(NO_KEY),
    ));
    // Each part aggregates as it walks the index: by type, hour and
    // reason, the index's own order. Only a provider's events are counted
    // by provider (sluice's are the rest, `stats` subtracts them): they
    // are few, and a grouping the index does not order costs a sort.
    let (provider, by_provider) = match g {
        Some(GroupBy::Provider) => {
            let p = d.provider("e.source");
            (format!("{p} AS p"), format!(" AND {PROVIDED} GROUP BY e.type, e.at / {HOUR}, e.reason, {p}"))
        }
        _ => (format!("{NO_KEY} AS p"), format!(" GROUP BY e.type, e.at / {HOUR}, e.reason")),
    };
    let part = |sql: &mut QueryBuilder<DB>, deferred: bool| {
        sql.push(format!(
            "SELECT e.type AS t, e.at / {HOUR} AS h, e.reason AS r, {provider}, COUNT(*) AS n FROM {}",
            d.events("events_stats")
        ));
        window(sql, d, tenant, q, deferred);
        sql.push(&by_provider);
    };
    part(&mut sql, false);
    sql.push(" UNION ALL ");
    part(&mut sql, true);
    let terms: Vec<&str> =
        [start.as_deref(), key.as_deref(), Some("x.t"), Some(kept)].into_iter().flatten().collect();
    sql.push(format!(") x GROUP BY {}", terms.join(", ")));
    sql
}

/// What a row says when its grouping has no time bucket, or no key.
const NO_START: &str = "CAST(NULL AS BIGINT)";
const NO_KEY: &str = "CAST(NULL AS TEXT)";

/// The counts by tag or by domain (but of opens and clicks), read from the
/// events in the window.
pub(crate) fn read_counts<DB: Database>(d: Dialect, tenant: &Tenant, q: &StatsQuery) -> QueryBuilder<DB>
where
    i64: Binds<DB>,
{
    let (key, join) = match q.group_by {
        Some(GroupBy::Tag) => (
            "g.tag".to_string(),
            " LEFT JOIN out_tags g ON g.tenant_id = e.tenant_id AND g.message = e.message",
        ),
        _ => (d.domain("e.address"), ""),
    };
    let kept =
        "CASE WHEN e.type IN ('bounced', 'rejected', 'failed') OR e.reason = 'human' THEN e.reason END";
    let mut sql = QueryBuilder::new("");
    for deferred in [false, true] {
        if deferred {
            sql.push(" UNION ALL ");
        }
        sql.push(format!(
            "SELECT {NO_START} AS start, {key} AS gkey, e.type AS t, {kept} AS r, \
             CAST(COUNT(*) AS BIGINT) AS n FROM events e{join}"
        ));
        window(&mut sql, d, tenant, q, deferred);
        // Opens and clicks are counted with their unique pairs, which are
        // read recipient by recipient anyway (a third of the events fewer
        // to group here).
        sql.push(format!(" AND e.type NOT IN ('opened', 'clicked') GROUP BY {key}, e.type, {kept}"));
    }
    sql
}

/// The conditions of a count: the tenant's events of the statistics' kinds
/// in the window ([`Dialect::hours`]); and either every kind but
/// `deferred`, or the deferrals of the tenant's own mail, not the front
/// line's of the inbound mail it relays (a few rows, each looked up apart:
/// in the same condition the lookup would be costed, and planned, for every
/// event).
fn window<DB: Database>(
    sql: &mut QueryBuilder<DB>,
    d: Dialect,
    tenant: &Tenant,
    q: &StatsQuery,
    deferred: bool,
) where
    i64: Binds<DB>,
{
    sql.push(" WHERE e.tenant_id = ").push_bind(tenant.id).push(format!(" AND {KINDS}"));
    if d.hours {
        sql.push(format!(" AND e.at / {HOUR} >= ")).push_bind(q.from / HOUR);
        sql.push(format!(" AND e.at / {HOUR} <= ")).push_bind(q.to / HOUR);
    }
    sql.push(" AND e.at >= ").push_bind(q.from).push(" AND e.at < ").push_bind(q.to);
    match deferred {
        false => sql.push(" AND e.type <> 'deferred'"),
        true => sql.push(
            " AND e.type = 'deferred' AND NOT EXISTS (SELECT 1 FROM out_messages m \
             WHERE m.id = e.message AND m.direction = 'inbound')",
        ),
    };
}

/// The unique (message, recipient) pairs of opens and clicks, by group.
#[derive(Debug, Clone)]
enum Unique {
    Keyed(Vec<UniqueRow>),
    Classes(Vec<ClassRow>),
    Providers(Vec<ProviderRow>),
}

impl Unique {
    /// The window's pairs of `kind` (and human ones), from a grouping
    /// that counts each pair once.
    fn whole(&self, kind: &str) -> (u64, u64) {
        let n = |v: i64| v.max(0) as u64;
        let pairs: Vec<(i64, i64)> = match self {
            Unique::Keyed(rows) => rows.iter().filter(|r| r.3 == kind).map(|r| (r.4, r.5)).collect(),
            Unique::Classes(rows) => rows.iter().filter(|r| r.0 == kind).map(|r| (r.6, r.1)).collect(),
            Unique::Providers(rows) => rows.iter().filter(|r| r.0 == kind).map(|r| (r.2, r.6)).collect(),
        };
        pairs.into_iter().fold((0, 0), |(u, uh), (a, b)| (u + n(a), uh + n(b)))
    }

    fn apply(&self, groups: &mut Groups, by: Option<GroupBy>) {
        let n = |v: i64| v.max(0) as u64;
        match self {
            Unique::Keyed(rows) => {
                for (start, key, human_start, kind, u, uh, total, human) in rows {
                    let e = groups.at(key.clone(), *start).engagement(kind);
                    e.unique += n(*u);
                    // By tag or domain the events themselves are counted
                    // here, a pair's all under its key (the counts leave
                    // them out).
                    if matches!(by, Some(GroupBy::Tag | GroupBy::Domain)) {
                        (e.total, e.human) = (e.total + n(*total), e.human + n(*human));
                    }
                    // In time buckets a pair's first human event may fall
                    // in a later bucket than its first event.
                    if n(*uh) > 0 {
                        let at = if start.is_some() { *human_start } else { None };
                        groups.at(key.clone(), at).engagement(kind).unique_human += n(*uh);
                    }
                }
            }
            Unique::Classes(rows) => {
                for (kind, human, proxy, scanner, unknown, none, _) in rows {
                    let classes = MACHINE_CLASSES.iter().map(|c| Some(c.to_string())).chain([None]);
                    for (class, u) in classes.zip([human, proxy, scanner, unknown, none]) {
                        if n(*u) == 0 {
                            continue;
                        }
                        let e = groups.at(class.clone(), None).engagement(kind);
                        e.unique += n(*u);
                        if class.as_deref() == Some("human") {
                            e.unique_human += n(*u);
                        }
                    }
                }
            }
            Unique::Providers(rows) => {
                for (kind, provider, pairs, human, sluice, sluice_human, _) in rows {
                    if let Some(p) = provider {
                        let e = groups.at(Some(p.clone()), None).engagement(kind);
                        (e.unique, e.unique_human) = (e.unique + n(*pairs), e.unique_human + n(*human));
                    }
                    if n(*sluice) > 0 {
                        let e = groups.at(Some("sluice".into()), None).engagement(kind);
                        (e.unique, e.unique_human) =
                            (e.unique + n(*sluice), e.unique_human + n(*sluice_human));
                    }
                }
            }
        }
    }
}

/// Reads the unique pairs of a grouping.
async fn unique<DB: Database>(
    pool: &sqlx::Pool<DB>,
    d: Dialect,
    tenant: &Tenant,
    q: &StatsQuery,
    g: Option<GroupBy>,
) -> Result<Unique, RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB>,
    UniqueRow: for<'r> sqlx::FromRow<'r, DB::Row>,
    ClassRow: for<'r> sqlx::FromRow<'r, DB::Row>,
    ProviderRow: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let sql = unique_sql(d, tenant, q, g);
    Ok(match g {
        Some(GroupBy::Reason | GroupBy::MachineClass) => Unique::Classes(rows(pool, d, sql).await?),
        Some(GroupBy::Provider) => Unique::Providers(rows(pool, d, sql).await?),
        _ => Unique::Keyed(rows(pool, d, sql).await?),
    })
}

/// A statement's rows; on a database whose session wants settings for it
/// ([`Dialect::settings`]), in a transaction of its own that sets them.
async fn rows<DB: Database, T>(
    pool: &sqlx::Pool<DB>,
    d: Dialect,
    mut sql: QueryBuilder<DB>,
) -> Result<Vec<T>, RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    T: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
{
    let _slot = d.slots.acquire().await.map_err(|e| RecordError::Unavailable(e.to_string()))?;
    if d.settings.is_empty() {
        return Ok(sql.build_query_as().fetch_all(pool).await?);
    }
    let mut tx = pool.begin().await?;
    for setting in d.settings {
        QueryBuilder::<DB>::new(*setting).build().execute(&mut *tx).await?;
    }
    let rows = sql.build_query_as().fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows)
}

/// The unique pairs of a grouping: each pair's events folded as
/// `events_engagement` orders them (by recipient), into what the grouping
/// needs of a pair; then the pairs by key.
pub(crate) fn unique_sql<DB: Database>(
    d: Dialect,
    tenant: &Tenant,
    q: &StatsQuery,
    g: Option<GroupBy>,
) -> QueryBuilder<DB>
where
    i64: Binds<DB>,
{
    let flag = |cond: &str| format!("CAST(MAX(CASE WHEN {cond} THEN 1 ELSE 0 END) AS BIGINT)");
    let sum = |c: &str| format!("CAST(SUM(r.{c}) AS BIGINT)");
    let human = "e.reason = 'human'";
    let (outer, pair, group) = match g {
        Some(GroupBy::Reason | GroupBy::MachineClass) => {
            let classes = MACHINE_CLASSES.iter().map(|c| flag(&format!("e.reason = '{c}'")));
            let other =
                flag("e.reason IS NULL OR e.reason NOT IN ('human', 'privacy_proxy', 'scanner', 'unknown')");
            let flags: Vec<String> =
                classes.chain([other]).enumerate().map(|(i, f)| format!("{f} AS c{i}")).collect();
            let sums: Vec<String> = (0..5).map(|i| sum(&format!("c{i}"))).collect();
            let outer = format!("SELECT r.t, {}, CAST(COUNT(*) AS BIGINT)", sums.join(", "));
            (outer, flags.join(", "), "r.t".to_string())
        }
        Some(GroupBy::Provider) => {
            let (ours, theirs) = (format!("(e.source IS NULL OR NOT {PROVIDED})"), PROVIDED);
            let pair = format!(
                "MIN(CASE WHEN {theirs} THEN {} END) AS pv, {} AS pvh, {} AS sl, {} AS slh, {} AS hu",
                d.provider("e.source"),
                flag(&format!("{human} AND {theirs}")),
                flag(&ours),
                flag(&format!("{human} AND {ours}")),
                flag(human),
            );
            let outer = format!(
                "SELECT r.t, r.pv, CAST(COUNT(*) AS BIGINT), {}, {}, {}, {}",
                sum("pvh"),
                sum("sl"),
                sum("slh"),
                sum("hu")
            );
            (outer, pair, "r.t, r.pv".into())
        }
        _ => {
            let [start, key, first_human] = unique_key(d, g);
            let outer = format!(
                "SELECT {} AS start, {} AS gkey, {} AS hstart, r.t AS t, CAST(COUNT(*) AS BIGINT) AS u, {} AS uh, \
                 {} AS n, {} AS hn",
                start.as_deref().unwrap_or(NO_START),
                key.as_deref().unwrap_or(NO_KEY),
                first_human.as_deref().unwrap_or(NO_START),
                sum("hu"),
                sum("n"),
                sum("hn"),
            );
            let pair = format!(
                "MIN(e.at) AS f, MIN(CASE WHEN {human} THEN e.at END) AS fh, {} AS hu, COUNT(*) AS n, \
                 SUM(CASE WHEN {human} THEN 1 ELSE 0 END) AS hn",
                flag(human)
            );
            let terms: Vec<String> =
                [start, key, first_human].into_iter().flatten().chain(["r.t".into()]).collect();
            (outer, pair, terms.join(", "))
        }
    };
    let mut sql = QueryBuilder::new(format!(
        "{outer} FROM (SELECT e.type AS t, e.message AS m, e.address AS a, {pair} FROM {} WHERE e.tenant_id = ",
        d.events("events_engagement")
    ));
    sql.push_bind(tenant.id).push(format!(" AND {ENGAGED} AND e.at >= ")).push_bind(q.from);
    sql.push(" AND e.at < ").push_bind(q.to);
    sql.push(" GROUP BY e.type, e.message, e.idx, e.address) r");
    if g == Some(GroupBy::Tag) {
        sql.push(" LEFT JOIN out_tags g ON g.tenant_id = ").push_bind(tenant.id);
        sql.push(" AND g.message = r.m");
    }
    sql.push(format!(" GROUP BY {group}"));
    sql
}

/// A unique pair's group: the bucket of its first event (and of its first
/// human one) for time buckets, or its key; `None` for no such term.
fn unique_key(d: Dialect, g: Option<GroupBy>) -> [Option<String>; 3] {
    match g {
        Some(GroupBy::Hour | GroupBy::Day) => {
            let w = g.and_then(GroupBy::bucket).unwrap_or(HOUR);
            [Some(format!("(r.f / {w}) * {w}")), None, Some(format!("(r.fh / {w}) * {w}"))]
        }
        Some(GroupBy::Domain) => [None, Some(d.domain("r.a")), None],
        Some(GroupBy::Tag) => [None, Some("g.tag".into()), None],
        _ => [None, None, None],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The indexes' expressions are the queries' (a partial index or an
    /// index on an expression serves only a query that says it alike).
    #[test]
    fn the_migrations_index_what_the_queries_say() {
        let sqlite = include_str!("../migrations/sqlite/0015_stats.sql");
        let postgres = include_str!("../migrations/postgres/0009_stats.sql");
        for migration in [sqlite, postgres] {
            let flat = migration.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(flat.contains(&KINDS.replace("e.type", "WHERE type")), "{flat}");
            assert!(flat.contains(&ENGAGED.replace("e.type", "WHERE type")), "{flat}");
        }
        assert!(sqlite.contains(&format!("(at / {HOUR})")), "SQLite walks the counts by hour");
    }
}
