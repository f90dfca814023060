//! `GET /v1/stats`: the key's tenant's statistics over a window, from the
//! record (`record::stats` says what each number counts), and the view of
//! them the API and `sluice stats --json` show.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use record::stats::{Counts, Engagement, GroupBy, Rates, Stats, StatsQuery};
use serde::{Deserialize, Serialize};

use crate::extract::{Authed, Q};
use crate::{ApiError, AppState};

/// The window's default length: the last 7 days.
const WEEK_MS: i64 = 7 * 86_400_000;

#[derive(Debug, Deserialize)]
pub struct Params {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
}

pub async fn stats(
    State(state): State<AppState>,
    Authed(t): Authed,
    Q(p): Q<Params>,
) -> Result<Response, ApiError> {
    let q = query(&p, record::events::now_ms())?;
    let s = state.record.events.stats(&t, &q).await?;
    Ok(Json(StatsView::from(s)).into_response())
}

/// The window and grouping a request asks for: `to` now and `from` a week
/// before `to` unless given; 422 naming the field that is wrong.
fn query(p: &Params, now: i64) -> Result<StatsQuery, ApiError> {
    let to = crate::read::time("to", p.to.as_deref())?.unwrap_or(now);
    let from = crate::read::time("from", p.from.as_deref())?.unwrap_or(to.saturating_sub(WEEK_MS));
    if from > to {
        return Err(ApiError::invalid("from", "the window's start is after its end (to)"));
    }
    let group_by = match p.group_by.as_deref().map(str::trim).filter(|g| !g.is_empty()) {
        None => None,
        Some(g) => Some(GroupBy::parse(g).ok_or_else(|| {
            let all: Vec<&str> = GroupBy::ALL.iter().map(|g| g.as_str()).collect();
            ApiError::invalid("group_by", format!("one of {}", all.join(", ")))
        })?),
    };
    Ok(StatsQuery { from, to, group_by })
}

/// A window's statistics as the API shows them (`openapi.json`'s `Stats`).
#[derive(Debug, Clone, Serialize)]
pub struct StatsView {
    /// The window, in milliseconds since the epoch: `from` in it, `to` not.
    pub from: i64,
    pub to: i64,
    /// `from` and `to` as RFC 3339 UTC (`vocabulary::time`).
    pub from_rfc3339: String,
    pub to_rfc3339: String,
    pub group_by: Option<GroupBy>,
    pub total: CountsView,
    /// Only groups with events: time buckets in time order, keys in order
    /// with no key last.
    pub groups: Vec<GroupView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    /// A tag, domain, reason, provider or machine class (null: none); a
    /// time bucket's start as RFC 3339.
    pub key: Option<String>,
    /// A time bucket's start (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    #[serde(flatten)]
    pub counts: CountsView,
}

#[derive(Debug, Clone, Serialize)]
pub struct CountsView {
    pub sent: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub bounced_by_reason: std::collections::BTreeMap<String, u64>,
    pub complained: u64,
    pub unsubscribed: u64,
    pub opened: Engagement,
    pub clicked: Engagement,
    pub rates: Rates,
}

impl From<Counts> for CountsView {
    fn from(c: Counts) -> Self {
        let rates = c.rates();
        CountsView {
            sent: c.sent,
            delivered: c.delivered,
            deferred: c.deferred,
            bounced: c.bounced,
            bounced_by_reason: c.bounced_by_reason,
            complained: c.complained,
            unsubscribed: c.unsubscribed,
            opened: c.opened,
            clicked: c.clicked,
            rates,
        }
    }
}

impl From<Stats> for StatsView {
    fn from(s: Stats) -> Self {
        StatsView {
            from: s.from,
            to: s.to,
            from_rfc3339: vocabulary::time::rfc3339_ms(s.from),
            to_rfc3339: vocabulary::time::rfc3339_ms(s.to),
            group_by: s.group_by,
            total: s.total.into(),
            groups: s
                .groups
                .into_iter()
                .map(|g| GroupView { key: g.key, start: g.start, counts: g.counts.into() })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(from: Option<&str>, to: Option<&str>, group_by: Option<&str>) -> Params {
        let s = |v: Option<&str>| v.map(str::to_string);
        Params { from: s(from), to: s(to), group_by: s(group_by) }
    }

    #[test]
    fn a_window_defaults_to_the_last_week_and_refuses_what_it_cannot_read() {
        let now = 1_796_551_200_000;
        let q = query(&params(None, None, None), now).unwrap();
        assert_eq!((q.from, q.to, q.group_by), (now - WEEK_MS, now, None));
        let q =
            query(&params(Some("2026-12-01T00:00:00Z"), Some("1796551200000"), Some("day")), now).unwrap();
        assert_eq!((q.from, q.to, q.group_by), (1_796_083_200_000, now, Some(GroupBy::Day)));
        let field = |p: Params| query(&p, now).err().and_then(|e| e.field);
        assert_eq!(field(params(Some("2"), Some("1"), None)).as_deref(), Some("from"));
        assert_eq!(field(params(Some("soon"), None, None)).as_deref(), Some("from"));
        assert_eq!(field(params(None, Some("later"), None)).as_deref(), Some("to"));
        assert_eq!(field(params(None, None, Some("week"))).as_deref(), Some("group_by"));
    }

    #[test]
    fn a_group_shows_its_counts_and_rates_beside_its_key() {
        let counts = Counts { sent: 2, bounced: 1, ..Counts::default() };
        let g = GroupView { key: Some("news".into()), start: None, counts: counts.into() };
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v["key"], "news");
        assert_eq!(v["sent"], 2);
        assert_eq!(v["rates"]["bounced"], 0.5);
        assert_eq!(v["rates"]["complained"], serde_json::Value::Null);
        assert_eq!(v["opened"]["unique_human"], 0);
        assert!(v.get("start").is_none());
    }
}
