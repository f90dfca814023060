//! A change to a scope, its check, and its replay over recorded decisions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value as Json;

use super::resolve::{ByScope, by_scope, layers_of, parse_row};
use super::{Action, Class, Defaults, Effective, Key, PolicyError, PolicyRow, Scope, Value, decide, resolve};

/// A change to one scope: keys set (`Some`) or unset (`None`); no keys
/// with `unset_all` unsets the scope's every key.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub set: Vec<(Key, Option<Value>)>,
    pub unset_all: bool,
}

/// `rows` (every row of a tenant) as they would be after `change` to `scope`.
fn changed(rows: &[PolicyRow], scope: &Scope, change: &Change) -> ByScope {
    let mut parsed: Vec<(Scope, Key, Value)> = rows
        .iter()
        .filter_map(parse_row)
        .filter(|(s, k, _)| !(s == scope && (change.unset_all || change.set.iter().any(|(ck, _)| ck == k))))
        .collect();
    for (k, v) in &change.set {
        if let Some(v) = v {
            parsed.push((scope.clone(), k.clone(), v.clone()));
        }
    }
    by_scope(parsed.into_iter())
}

/// Refuses `change` when it would leave `scope`, or a scope under it (a
/// domain's addresses; every scope under `global`), with an unsure band
/// above its spam threshold.
pub fn check_change(
    defaults: &Defaults,
    rows: &[PolicyRow],
    scope: &Scope,
    change: &Change,
) -> Result<(), PolicyError> {
    let after = changed(rows, scope, change);
    let mut scopes: BTreeSet<Scope> = after.keys().filter(|s| scope.contains(s)).cloned().collect();
    scopes.insert(scope.clone());
    for s in &scopes {
        resolve(defaults, &layers_of(&after, s)).check(s.as_str())?;
    }
    Ok(())
}

/// What filter mode recorded for one recipient (a `filtered` event).
#[derive(Debug, Clone, PartialEq)]
pub struct FilterRecord {
    pub at: i64,
    pub address: String,
    pub score: Option<f64>,
    pub class: Option<Class>,
    /// The action taken, as recorded.
    pub action: Option<Action>,
    pub sender: String,
}

impl FilterRecord {
    /// From an event's columns: `reason` the action, `detail` JSON
    /// `{"score", "class", "action", "level", "sender"}`.
    pub fn from_event(at: i64, address: String, reason: Option<&str>, detail: Option<&str>) -> FilterRecord {
        let d: Json = detail.and_then(|d| serde_json::from_str(d).ok()).unwrap_or(Json::Null);
        let action = d["action"].as_str().or(reason).and_then(Action::parse);
        FilterRecord {
            at,
            address,
            score: d["score"].as_f64(),
            class: d["class"].as_str().and_then(Class::parse),
            action,
            sender: d["sender"].as_str().unwrap_or("").to_string(),
        }
    }
}

/// What a proposed change would have done to the recorded decisions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Simulation {
    /// Decisions replayed.
    pub total: u64,
    /// Recipients the changed scope covers.
    pub in_scope: u64,
    /// Decisions whose action the change turns into another.
    pub changed: u64,
    /// `(now, proposed)` action to how many.
    #[serde(serialize_with = "directions")]
    pub directions: BTreeMap<(Action, Action), u64>,
    /// Decisions the current policy would make differently from what was
    /// recorded (the policy changed since, or the record has no action).
    pub differs_from_recorded: u64,
    /// Recipient addresses that are not addresses (skipped).
    pub skipped: u64,
    /// Why `policy set` would refuse the proposal ([`check_change`]), if it would.
    pub refused: Option<String>,
}

fn directions<S: serde::Serializer>(m: &BTreeMap<(Action, Action), u64>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(m.len()))?;
    for ((from, to), n) in m {
        seq.serialize_element(&serde_json::json!({"from": from.as_str(), "to": to.as_str(), "count": n}))?;
    }
    seq.end()
}

impl Simulation {
    /// `quarantine → tag: 12` lines, then the totals.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .directions
            .iter()
            .map(|((f, t), n)| format!("{} → {}: {n}", f.as_str(), t.as_str()))
            .collect();
        out.push(format!("changed: {} of {} ({} in scope)", self.changed, self.total, self.in_scope));
        if self.differs_from_recorded > 0 {
            out.push(format!(
                "({} recorded decisions were made otherwise than the current policy would: \
                 the counts compare the current policy with the proposal)",
                self.differs_from_recorded
            ));
        }
        if self.skipped > 0 {
            out.push(format!("{} records without a valid recipient address skipped", self.skipped));
        }
        if let Some(why) = &self.refused {
            out.push(format!("(setting it would be refused: {why})"));
        }
        out
    }
}

/// Replays `records` under the tenant's `rows` as they are and with
/// `change` to `scope`, and counts the actions that would change, by
/// direction (from the current policy's decision to the proposed one's).
pub fn simulate(
    defaults: &Defaults,
    rows: &[PolicyRow],
    scope: &Scope,
    change: &Change,
    records: &[FilterRecord],
) -> Simulation {
    let mut replay = Replay::new(defaults, rows, scope, change);
    replay.add(records.iter());
    replay.finish()
}

/// Recipients whose two effective policies are kept at once; past it the
/// memory starts again.
const REPLAY_CACHE: usize = 100_000;

/// A replay fed page by page ([`simulate`] in one go).
pub(crate) struct Replay<'a> {
    defaults: &'a Defaults,
    scope: &'a Scope,
    now: ByScope,
    after: ByScope,
    cache: HashMap<String, Option<(Effective, Effective, bool)>>,
    sim: Simulation,
}

impl<'a> Replay<'a> {
    pub(crate) fn new(defaults: &'a Defaults, rows: &[PolicyRow], scope: &'a Scope, change: &Change) -> Self {
        let now = by_scope(rows.iter().filter_map(parse_row));
        let after = changed(rows, scope, change);
        Replay { defaults, scope, now, after, cache: HashMap::new(), sim: Simulation::default() }
    }

    pub(crate) fn add<'r>(&mut self, records: impl Iterator<Item = &'r FilterRecord>) {
        let Replay { defaults, scope, now, after, cache, sim } = self;
        for r in records {
            if cache.len() >= REPLAY_CACHE {
                cache.clear();
            }
            let entry = cache.entry(r.address.to_ascii_lowercase()).or_insert_with(|| {
                let (d, u) = Scope::of_address(&r.address).ok()?;
                let covered = scope.covers(d.as_str(), u.as_str());
                Some((
                    resolve(defaults, &layers_of(now, &u)),
                    resolve(defaults, &layers_of(after, &u)),
                    covered,
                ))
            });
            let Some((current, proposed, covered)) = entry else {
                sim.skipped += 1;
                continue;
            };
            sim.total += 1;
            sim.in_scope += u64::from(*covered);
            let a = decide(current, r.score, r.class, &r.sender).action;
            if r.action != Some(a) {
                sim.differs_from_recorded += 1;
            }
            let b = decide(proposed, r.score, r.class, &r.sender).action;
            if a != b {
                sim.changed += 1;
                *sim.directions.entry((a, b)).or_default() += 1;
            }
        }
    }

    pub(crate) fn finish(self) -> Simulation {
        self.sim
    }
}
