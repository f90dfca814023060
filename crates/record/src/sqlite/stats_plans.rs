//! SQLite walks the statistics' indexes as `stats_sql.rs` means it to:
//! the counts and the unique pairs aggregate while walking theirs (the one
//! sort left is of the few rows they make), and a tag is found by its
//! message. (A plan is SQLite's own: this is its module's test.)

use sqlx::QueryBuilder;

use crate::directory::Tenant;
use crate::stats::{GroupBy, StatsQuery};
use crate::stats_sql::{Dialect, indexed_counts, read_counts, unique_sql};

async fn plan(pool: &sqlx::SqlitePool, sql: QueryBuilder<sqlx::Sqlite>) -> Vec<String> {
    let text = format!("EXPLAIN QUERY PLAN {}", sql.sql().as_str());
    let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
    for _ in 0..text_binds(sql.sql().as_str()) {
        query = query.bind(1_i64);
    }
    use sqlx::Row;
    let rows = query.fetch_all(pool).await.expect("a plan");
    rows.iter().map(|r| r.get::<String, _>("detail")).collect()
}

fn text_binds(sql: &str) -> usize {
    sql.matches('?').count()
}

#[tokio::test]
async fn the_statistics_walk_their_indexes() {
    let dir = tempfile::tempdir().expect("a directory");
    let db = crate::sqlite::Sqlite::open_for_test(dir.path()).await;
    let t = Tenant { id: 1, name: "t".into() };
    for g in [None, Some(GroupBy::Hour), Some(GroupBy::Reason), Some(GroupBy::Provider)] {
        let q = StatsQuery { from: 0, to: 1, group_by: g };
        let p = plan(&db.pool, indexed_counts(Dialect::SQLITE, &t, &q, g)).await;
        assert!(p.iter().any(|l| l.contains("COVERING INDEX events_stats")), "{g:?}: {p:#?}");
        // By provider, the providers' events are sorted too.
        let sorts = p.iter().filter(|l| l.contains("TEMP B-TREE")).count();
        let expected = if g == Some(GroupBy::Provider) { 3 } else { 1 };
        assert_eq!(sorts, expected, "{g:?}: only the folded rows are sorted: {p:#?}");
    }
    for g in [None, Some(GroupBy::Day), Some(GroupBy::Tag), Some(GroupBy::Reason), Some(GroupBy::Provider)] {
        let q = StatsQuery { from: 0, to: 1, group_by: g };
        let p = plan(&db.pool, unique_sql(Dialect::SQLITE, &t, &q, g)).await;
        assert!(p.iter().any(|l| l.contains("COVERING INDEX events_engagement")), "{g:?}: {p:#?}");
        let sorts = p.iter().filter(|l| l.contains("TEMP B-TREE")).count();
        assert_eq!(sorts, 1, "{g:?}: only the pairs are sorted: {p:#?}");
    }
    let q = StatsQuery { from: 0, to: 1, group_by: Some(GroupBy::Tag) };
    let p = plan(&db.pool, read_counts(Dialect::SQLITE, &t, &q)).await;
    assert!(p.iter().any(|l| l.contains("out_tags_message")), "{p:#?}");
}
