//! `sluice stats`: a tenant's statistics over a window, from the record
//! (every tenant's, added up, without `--tenant`), as a table or as JSON
//! lines in the API's words (`GET /v1/stats`). Safe beside a running
//! server, as `sluice track` is.

use anyhow::Context;
use api::stats::{CountsView, GroupView, StatsView};
use record::Store;
use record::stats::{GroupBy, Stats, StatsQuery, parse_time};

use crate::{Common, load_config};

/// The window's default length: the last 7 days (as the API's).
const WEEK_MS: i64 = 7 * 86_400_000;

pub struct Options {
    pub tenant: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub group_by: Option<String>,
    pub json: bool,
    pub common: Common,
}

pub async fn run(o: Options) -> anyhow::Result<i32> {
    let q = query(&o)?;
    let cfg = load_config(&o.common)?;
    std::fs::create_dir_all(&cfg.server.data)?;
    let store = cfg.open_store().await?;
    let started = std::time::Instant::now();
    let stats = count(&store, o.tenant.as_deref(), &q).await;
    store.close().await;
    let stats = stats?;
    let took = started.elapsed();
    if o.json {
        print_json(o.tenant.as_deref(), stats)?;
    } else {
        print_table(o.tenant.as_deref(), &stats);
        println!("(counted in {} ms)", took.as_millis());
    }
    Ok(0)
}

fn query(o: &Options) -> anyhow::Result<StatsQuery> {
    let time = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<i64>> {
        v.as_deref()
            .map(|v| {
                parse_time(v)
                    .with_context(|| format!("--{flag} {v}: give RFC 3339 or milliseconds since the epoch"))
            })
            .transpose()
    };
    let to = time("to", &o.to)?.unwrap_or_else(record::events::now_ms);
    let from = time("from", &o.from)?.unwrap_or(to.saturating_sub(WEEK_MS));
    anyhow::ensure!(from <= to, "--from is after --to");
    let group_by = match o.group_by.as_deref() {
        None => None,
        Some(g) => Some(GroupBy::parse(g).with_context(|| {
            let all: Vec<&str> = GroupBy::ALL.iter().map(|g| g.as_str()).collect();
            format!("--group-by {g}: one of {}", all.join(", "))
        })?),
    };
    Ok(StatsQuery { from, to, group_by })
}

/// One tenant's numbers, or every tenant's added up. A name the record does
/// not know is an error (never a new tenant).
async fn count(store: &Store, tenant: Option<&str>, q: &StatsQuery) -> anyhow::Result<Stats> {
    let tenants = store.directory.tenants().await?;
    let chosen: Vec<_> = match tenant {
        Some(name) => {
            let t = tenants.into_iter().find(|t| t.name == name);
            vec![t.with_context(|| format!("no tenant {name} in the record"))?]
        }
        None => tenants,
    };
    let mut all =
        Stats { from: q.from, to: q.to, group_by: q.group_by, groups: Vec::new(), total: Default::default() };
    for t in &chosen {
        all.merge(store.events.stats(t, q).await?);
    }
    Ok(all)
}

/// One line per group, then the window's (`"total": true`).
fn print_json(tenant: Option<&str>, stats: Stats) -> anyhow::Result<()> {
    let v = StatsView::from(stats);
    let line = |total: bool, body: serde_json::Value| -> anyhow::Result<()> {
        let mut head = serde_json::json!({
            "tenant": tenant, "from": v.from, "to": v.to, "from_rfc3339": v.from_rfc3339,
            "to_rfc3339": v.to_rfc3339, "group_by": v.group_by, "total": total,
        });
        if let (Some(head), serde_json::Value::Object(body)) = (head.as_object_mut(), body) {
            head.extend(body);
        }
        println!("{}", serde_json::to_string(&head)?);
        Ok(())
    };
    for g in &v.groups {
        line(false, serde_json::to_value(g)?)?;
    }
    line(true, serde_json::to_value(&v.total)?)
}

fn print_table(tenant: Option<&str>, stats: &Stats) {
    let v = StatsView::from(stats.clone());
    let at = vocabulary::time::rfc3339_ms;
    let by = v.group_by.map(|g| format!(", by {}", g.as_str())).unwrap_or_default();
    println!("{} from {} to {}{by}", tenant.unwrap_or("every tenant"), at(v.from), at(v.to));
    let mut rows = vec![header()];
    let named = |g: &GroupView| g.key.clone().unwrap_or_else(|| "(none)".into());
    rows.extend(v.groups.iter().map(|g| row(named(g), &g.counts)));
    rows.push(row("total".into(), &v.total));
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if i == 0 { format!("{c:<w$}") } else { format!("{c:>w$}") })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    if !v.total.bounced_by_reason.is_empty() {
        let reasons: Vec<String> =
            v.total.bounced_by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
        println!("bounced by reason: {}", reasons.join(", "));
    }
    println!(
        "opens and clicks: total/unique/human/unique human; rates: of sent (delivered, bounced), of delivered (complained, unique human opens)"
    );
}

fn header() -> Vec<String> {
    ["KEY", "SENT", "DELIVERED", "DEFERRED", "BOUNCED", "COMPLAINED", "UNSUB", "OPENED", "CLICKED"]
        .into_iter()
        .chain(["DELIVERED%", "BOUNCED%", "COMPLAINED%", "HUMAN OPEN%"])
        .map(str::to_string)
        .collect()
}

fn row(key: String, c: &CountsView) -> Vec<String> {
    let e =
        |e: &record::stats::Engagement| format!("{}/{}/{}/{}", e.total, e.unique, e.human, e.unique_human);
    let pct = |r: Option<f64>| r.map(|r| format!("{:.2}", r * 100.0)).unwrap_or_else(|| "-".into());
    vec![
        key,
        c.sent.to_string(),
        c.delivered.to_string(),
        c.deferred.to_string(),
        c.bounced.to_string(),
        c.complained.to_string(),
        c.unsubscribed.to_string(),
        e(&c.opened),
        e(&c.clicked),
        pct(c.rates.delivered),
        pct(c.rates.bounced),
        pct(c.rates.complained),
        pct(c.rates.human_open),
    ]
}
