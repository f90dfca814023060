//! Statistics of a tenant's outbound mail over a window (`GET /v1/stats`,
//! `sluice stats`), counted from the event log, as far back as it goes.
//!
//! What each number counts (`docs/events.md` says it for users):
//!
//! - `sent`: `queued` events (recipients accepted for sending);
//!   `delivered`: `delivered` and `sent` (a smart host's 2xx, the furthest
//!   sluice sees when it relays through one); `deferred`: outbound
//!   `deferred` (the front line's deferrals of inbound mail are not
//!   counted); `bounced`: `bounced` (a report came back), `rejected` (a
//!   5xx in our own SMTP transaction) and `failed` (never taken before it
//!   expired), with a breakdown by `reason`; `complained`, `unsubscribed`.
//! - `opened`, `clicked`: `total` events, `unique` (message, recipient)
//!   pairs, `human` events whose `reason` (the machine class) is `human`,
//!   and `unique_human` pairs with a human one. A pair is unique once per
//!   window; grouped by hour or day it is counted in the bucket of its
//!   first event in the window (`unique_human`: of its first human one),
//!   so the buckets add up to the window's figure.
//! - Shared events (no address, several recipients in `rcpts`) are only
//!   ever the front line's, for inbound mail, and are not counted.
//!
//! The SQL that counts them, for both backends, is `stats_sql.rs`.

use std::collections::BTreeMap;

pub(crate) const HOUR: i64 = 3_600_000;
pub(crate) const DAY: i64 = 86_400_000;

/// How a window's numbers are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// UTC hours of the event's time.
    Hour,
    /// UTC days of the event's time.
    Day,
    /// The message's tags (a message with two counts in both; one with
    /// none under no key).
    Tag,
    /// The recipient's domain.
    Domain,
    /// The event's `reason` (an open's or a click's is its machine class).
    Reason,
    /// Who reported the event: a provider's webhooks (`ses`, ...) or
    /// `sluice` itself.
    Provider,
    /// The machine class of opens and clicks; other events under no key.
    MachineClass,
}

impl GroupBy {
    pub const ALL: [GroupBy; 7] = [
        GroupBy::Hour,
        GroupBy::Day,
        GroupBy::Tag,
        GroupBy::Domain,
        GroupBy::Reason,
        GroupBy::Provider,
        GroupBy::MachineClass,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Hour => "hour",
            GroupBy::Day => "day",
            GroupBy::Tag => "tag",
            GroupBy::Domain => "domain",
            GroupBy::Reason => "reason",
            GroupBy::Provider => "provider",
            GroupBy::MachineClass => "machine_class",
        }
    }

    pub fn parse(s: &str) -> Option<GroupBy> {
        GroupBy::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// Whether the groups are time buckets (and their width, ms).
    pub fn bucket(self) -> Option<i64> {
        match self {
            GroupBy::Hour => Some(HOUR),
            GroupBy::Day => Some(DAY),
            _ => None,
        }
    }
}

/// The machine classes the tracking records as an open's or a click's
/// `reason`.
pub const MACHINE_CLASSES: [&str; 4] = ["human", "privacy_proxy", "scanner", "unknown"];

/// A window of the record: events at `from` (ms) up to, not including, `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsQuery {
    pub from: i64,
    pub to: i64,
    pub group_by: Option<GroupBy>,
}

/// A time as the API and the CLI take it: milliseconds since the epoch, or
/// RFC 3339.
pub fn parse_time(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Ok(ms) = v.parse::<i64>() {
        return Some(ms);
    }
    chrono::DateTime::parse_from_rfc3339(v).ok().map(|t| t.timestamp_millis())
}

/// Opens or clicks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Engagement {
    /// Every event.
    pub total: u64,
    /// (message, recipient) pairs.
    pub unique: u64,
    /// Events whose machine class is `human`.
    pub human: u64,
    /// Pairs with a human event.
    pub unique_human: u64,
}

impl Engagement {
    fn add(&mut self, o: &Engagement) {
        self.total += o.total;
        self.unique += o.unique;
        self.human += o.human;
        self.unique_human += o.unique_human;
    }
}

/// The numbers of one group (or of the whole window).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Counts {
    pub sent: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    /// Bounces by `reason` (`none` when a bounce has none).
    pub bounced_by_reason: BTreeMap<String, u64>,
    pub complained: u64,
    pub unsubscribed: u64,
    pub opened: Engagement,
    pub clicked: Engagement,
}

/// Ratios of a group's counts; `None` where the denominator is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Rates {
    /// delivered / sent
    pub delivered: Option<f64>,
    /// bounced / sent
    pub bounced: Option<f64>,
    /// complained / delivered
    pub complained: Option<f64>,
    /// opened.unique_human / delivered
    pub human_open: Option<f64>,
}

impl Counts {
    pub fn rates(&self) -> Rates {
        let ratio = |n: u64, d: u64| (d > 0).then(|| (n as f64 / d as f64 * 10_000.0).round() / 10_000.0);
        Rates {
            delivered: ratio(self.delivered, self.sent),
            bounced: ratio(self.bounced, self.sent),
            complained: ratio(self.complained, self.delivered),
            human_open: ratio(self.opened.unique_human, self.delivered),
        }
    }

    /// Adds another group's counts (another tenant's, for the operator).
    pub fn add(&mut self, o: &Counts) {
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.deferred += o.deferred;
        self.bounced += o.bounced;
        for (reason, n) in &o.bounced_by_reason {
            *self.bounced_by_reason.entry(reason.clone()).or_default() += n;
        }
        self.complained += o.complained;
        self.unsubscribed += o.unsubscribed;
        self.opened.add(&o.opened);
        self.clicked.add(&o.clicked);
    }

    /// Takes away counts that are part of these (a provider's, from the
    /// window's: its events and their reasons are among the window's).
    pub(crate) fn subtract(&mut self, o: &Counts) {
        self.sent = self.sent.saturating_sub(o.sent);
        self.delivered = self.delivered.saturating_sub(o.delivered);
        self.deferred = self.deferred.saturating_sub(o.deferred);
        self.bounced = self.bounced.saturating_sub(o.bounced);
        for (reason, n) in &o.bounced_by_reason {
            if let Some(mine) = self.bounced_by_reason.get_mut(reason) {
                *mine = mine.saturating_sub(*n);
            }
        }
        self.bounced_by_reason.retain(|_, n| *n > 0);
        self.complained = self.complained.saturating_sub(o.complained);
        self.unsubscribed = self.unsubscribed.saturating_sub(o.unsubscribed);
        for (mine, theirs) in [(&mut self.opened, &o.opened), (&mut self.clicked, &o.clicked)] {
            mine.total = mine.total.saturating_sub(theirs.total);
            mine.human = mine.human.saturating_sub(theirs.human);
        }
    }

    /// Adds `n` events of `kind` (and of `reason`, where it is kept).
    pub(crate) fn count(&mut self, kind: &str, reason: Option<&str>, n: u64) {
        match kind {
            "queued" => self.sent += n,
            "delivered" | "sent" => self.delivered += n,
            "deferred" => self.deferred += n,
            "bounced" | "rejected" | "failed" => {
                self.bounced += n;
                *self.bounced_by_reason.entry(reason.unwrap_or("none").to_string()).or_default() += n;
            }
            "complained" => self.complained += n,
            "unsubscribed" => self.unsubscribed += n,
            "opened" | "clicked" => {
                let e = if kind == "opened" { &mut self.opened } else { &mut self.clicked };
                e.total += n;
                if reason == Some("human") {
                    e.human += n;
                }
            }
            _ => {}
        }
    }

    pub(crate) fn engagement(&mut self, kind: &str) -> &mut Engagement {
        if kind == "opened" { &mut self.opened } else { &mut self.clicked }
    }
}

/// One group: its key (`None`: no tag, no domain, no reason, no class),
/// and for a time bucket its start (ms).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Group {
    pub key: Option<String>,
    pub start: Option<i64>,
    pub counts: Counts,
}

/// A window's numbers: by group (only groups with events, in key order;
/// time buckets in time order), and for the whole window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stats {
    pub from: i64,
    pub to: i64,
    pub group_by: Option<GroupBy>,
    pub groups: Vec<Group>,
    pub total: Counts,
}

impl Stats {
    /// Adds another tenant's numbers over the same window, group by group.
    pub fn merge(&mut self, other: Stats) {
        self.total.add(&other.total);
        let mut groups = Groups::default();
        for g in self.groups.drain(..).chain(other.groups) {
            groups.at(g.key, g.start).add(&g.counts);
        }
        self.groups = groups.sorted();
    }
}

/// Groups being filled, by (start, key).
#[derive(Default)]
pub(crate) struct Groups(pub(crate) BTreeMap<(Option<i64>, Option<String>), Counts>);

impl Groups {
    pub(crate) fn at(&mut self, key: Option<String>, start: Option<i64>) -> &mut Counts {
        self.0.entry((start, key)).or_default()
    }

    /// In key order, no key last; time buckets in time order.
    pub(crate) fn sorted(self) -> Vec<Group> {
        let mut groups: Vec<Group> = self
            .0
            .into_iter()
            .map(|((start, key), counts)| {
                let key = match start {
                    Some(ms) => chrono::DateTime::from_timestamp_millis(ms)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    None => key,
                };
                Group { key, start, counts }
            })
            .collect();
        groups.sort_by(|a, b| (a.start, a.key.is_none(), &a.key).cmp(&(b.start, b.key.is_none(), &b.key)));
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_by_names_round_trip() {
        for g in GroupBy::ALL {
            assert_eq!(GroupBy::parse(g.as_str()), Some(g));
        }
        assert_eq!(GroupBy::parse("week"), None);
    }

    #[test]
    fn times_are_ms_or_rfc3339() {
        assert_eq!(parse_time("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("2026-12-06T10:00:00Z"), Some(1_796_551_200_000));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn rates_say_nothing_over_nothing() {
        let mut c = Counts { sent: 4, delivered: 3, bounced: 1, ..Counts::default() };
        c.opened.unique_human = 1;
        let r = c.rates();
        assert_eq!(r.delivered, Some(0.75));
        assert_eq!(r.bounced, Some(0.25));
        assert_eq!(r.complained, Some(0.0));
        assert_eq!(r.human_open, Some(0.3333));
        assert_eq!(Counts::default().rates(), Rates::default());
    }
}
