//! The Overview page (`/overview`): volume and outcomes over time, bounce
//! reasons, the complaint rate, opens and clicks (human and machine) and
//! the same per recipient domain, over a window (24 hours, 7 or 30 days).
//! The numbers are the record's statistics, read with the call
//! `GET /v1/stats` makes (`EventLog::stats`) for each tenant shown (one
//! chosen, or every one the operator sees, added up with `Stats::merge`)
//! and shown through the API's view (`crate::stats::StatsView`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use record::directory::Tenant;
use record::events::now_ms;
use record::stats::{GroupBy, Stats, StatsQuery};
use serde::Deserialize;

use super::auth::{unavailable, who};
use super::forms::{self, Flash};
use super::svg::{self, Chart};
use super::{Page, Refusal};
use crate::AppState;
use crate::stats::{CountsView, StatsView};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// The windows offered: name, length, and how the chart splits it.
const WINDOWS: [(&str, i64, GroupBy); 3] =
    [("24h", DAY, GroupBy::Hour), ("7d", 7 * DAY, GroupBy::Day), ("30d", 30 * DAY, GroupBy::Day)];

const DELIVERED: &str = "#2e7d32";
const BOUNCED: &str = "#c62828";
const DEFERRED: &str = "#f9a825";
const HUMAN: &str = "#1565c0";
const MACHINE: &str = "#90a4ae";

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    /// A tenant's name; every tenant the operator sees when empty.
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    window: String,
}

/// A row of numbers (the window's, or a domain's).
pub struct Line {
    pub key: String,
    pub c: CountsView,
    pub delivered_rate: String,
    pub bounced_rate: String,
    pub complained_rate: String,
    pub opened_machine: u64,
    pub clicked_machine: u64,
}

impl Line {
    fn of(key: String, c: CountsView) -> Line {
        Line {
            key,
            delivered_rate: pct(c.rates.delivered),
            bounced_rate: pct(c.rates.bounced),
            complained_rate: pct(c.rates.complained),
            opened_machine: c.opened.total.saturating_sub(c.opened.human),
            clicked_machine: c.clicked.total.saturating_sub(c.clicked.human),
            c,
        }
    }
}

/// A rate as a percentage with two decimals; `–` with no denominator.
fn pct(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_string(), |r| format!("{:.2}%", r * 100.0))
}

#[derive(Template)]
#[template(path = "dashboard/overview.html")]
struct OverviewPage<'a> {
    operator: &'a str,
    csrf: &'a str,
    flash: Option<Flash>,
    tenants: Vec<String>,
    tenant: String,
    windows: Vec<&'static str>,
    window: String,
    from: String,
    to: String,
    total: Line,
    volume: Chart,
    reasons: Chart,
    engagement: Chart,
    domains: Vec<Line>,
}

/// `GET /overview`: the window's statistics for one tenant or for all the
/// operator sees.
pub async fn overview(State(state): State<AppState>, headers: HeaderMap, Query(p): Query<Params>) -> Page {
    let who = who(&state, &headers).await?;
    let shown: Vec<&Tenant> = match p.tenant.trim() {
        "" => who.tenants.iter().collect(),
        name => vec![forms::granted(&who, name)?],
    };
    let (window, len, by) = WINDOWS.iter().copied().find(|w| w.0 == p.window).unwrap_or(WINDOWS[1]);
    let to = now_ms();
    let from = to - len;
    let over_time = stats(&state, &shown, StatsQuery { from, to, group_by: Some(by) }).await?;
    let by_domain = stats(&state, &shown, StatsQuery { from, to, group_by: Some(GroupBy::Domain) }).await?;
    let total = Line::of("all".into(), over_time.total.clone());
    let flash = forms::flash(&headers);
    let page = OverviewPage {
        operator: who.name(),
        csrf: who.csrf(),
        flash: flash.clone(),
        tenants: forms::names(&who),
        tenant: p.tenant.trim().to_string(),
        windows: WINDOWS.iter().map(|w| w.0).collect(),
        window: window.to_string(),
        from: over_time.from_rfc3339.clone(),
        to: over_time.to_rfc3339.clone(),
        volume: volume(&over_time, by),
        reasons: reasons(&total.c),
        engagement: engagement(&total),
        total,
        domains: by_domain
            .groups
            .into_iter()
            .map(|g| Line::of(g.key.unwrap_or_else(|| "(none)".into()), g.counts))
            .collect(),
    };
    forms::page(&page, &flash)
}

/// The statistics of `tenants` over one window, added up.
async fn stats(state: &AppState, tenants: &[&Tenant], q: StatsQuery) -> Result<StatsView, Refusal> {
    let mut all =
        Stats { from: q.from, to: q.to, group_by: q.group_by, groups: Vec::new(), total: Default::default() };
    for t in tenants {
        all.merge(state.record.events.stats(t, &q).await.map_err(unavailable)?);
    }
    Ok(StatsView::from(all))
}

/// Delivered, bounced and deferred in each bucket of the window (empty
/// buckets too, so time runs evenly along the axis).
fn volume(s: &StatsView, by: GroupBy) -> Chart {
    let width = by.bucket().unwrap_or(DAY);
    let label = |start: i64| {
        let t = vocabulary::time::rfc3339_ms(start);
        if by == GroupBy::Hour {
            t.get(11..16).unwrap_or("").to_string()
        } else {
            t.get(5..10).unwrap_or("").to_string()
        }
    };
    let buckets: Vec<(String, Vec<u64>)> = svg::buckets(s.from, s.to, width)
        .into_iter()
        .map(|start| {
            let c = s.groups.iter().find(|g| g.start == Some(start)).map(|g| &g.counts);
            let v = c.map_or(vec![0, 0, 0], |c| vec![c.delivered, c.bounced, c.deferred]);
            (label(start), v)
        })
        .collect();
    let series = [(DELIVERED, "delivered"), (BOUNCED, "bounced"), (DEFERRED, "deferred")];
    svg::stacked("Delivered, bounced and deferred over time", &series, &buckets, 760)
}

/// Bounces by reason, most first.
fn reasons(c: &CountsView) -> Chart {
    let mut rows: Vec<(String, u64, &'static str)> =
        c.bounced_by_reason.iter().map(|(r, n)| (r.clone(), *n, BOUNCED)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    svg::bars("Bounces by reason", &rows, 520)
}

/// Opens and clicks, human and machine.
fn engagement(l: &Line) -> Chart {
    let rows = vec![
        ("opens, human".to_string(), l.c.opened.human, HUMAN),
        ("opens, machine".to_string(), l.opened_machine, MACHINE),
        ("clicks, human".to_string(), l.c.clicked.human, HUMAN),
        ("clicks, machine".to_string(), l.clicked_machine, MACHINE),
    ];
    svg::bars("Opens and clicks, human and machine", &rows, 520)
}

#[cfg(test)]
mod tests {
    use super::*;
    use record::stats::{Counts, Engagement};

    #[test]
    fn a_rate_is_a_percentage_or_a_dash() {
        assert_eq!(pct(None), "–");
        assert_eq!(pct(Some(0.125)), "12.50%");
        assert_eq!(pct(Some(1.0)), "100.00%");
    }

    #[test]
    fn machine_opens_and_clicks_are_those_not_human() {
        let c = Counts {
            opened: Engagement { total: 5, unique: 2, human: 2, unique_human: 1 },
            clicked: Engagement { total: 1, unique: 1, human: 1, unique_human: 1 },
            ..Counts::default()
        };
        let l = Line::of("x".into(), c.into());
        assert_eq!((l.opened_machine, l.clicked_machine), (3, 0));
    }

    #[test]
    fn the_volume_chart_has_every_bucket_of_the_window() {
        let s = Stats {
            from: 10 * HOUR + 5,
            to: 34 * HOUR + 5,
            group_by: Some(GroupBy::Hour),
            groups: vec![record::stats::Group {
                key: None,
                start: Some(12 * HOUR),
                counts: Counts { delivered: 4, bounced: 1, ..Counts::default() },
            }],
            total: Counts::default(),
        };
        let c = volume(&StatsView::from(s), GroupBy::Hour);
        let bars: Vec<_> = c.rects.iter().filter(|r| !r.title.is_empty()).collect();
        assert_eq!(bars.len(), 2, "{bars:?}");
        assert_eq!(bars[0].title, "12:00: 4 delivered");
        // 25 buckets (10:00 to 10:00 the next day), at most ~12 labelled.
        assert!(c.labels.iter().any(|l| l.text == "10:00"));
        assert!(c.labels.iter().filter(|l| l.anchor == "middle").count() <= 13);
    }
}
