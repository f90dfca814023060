//! The search page (`/`) and the message page (`/messages/{id}`). Both
//! read the record through the calls the API's handlers make
//! (`EventLog::events` for `GET /v1/events`, `EventLog::message` for
//! `GET /v1/messages/{id}`, `EventLog::find_message` as `sluice track`
//! does), once per tenant the operator sees, and show the API's view
//! types (`crate::view`). Another tenant's message is a 404, as in the API.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use record::directory::Tenant;
use record::events::{EventKind, EventQuery, now_ms};
use serde::Deserialize;

use super::auth::{Who, failure, unavailable, who};
use super::{Page, html};
use crate::AppState;
use crate::view::{Event, Message};

/// The default window: the last 7 days.
const DEFAULT_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;
/// Rows per page.
const PAGE_SIZE: u32 = 50;

/// The search form (every field a query parameter, so a page is a link).
#[derive(Debug, Default, Deserialize)]
pub struct SearchForm {
    #[serde(default)]
    q: String,
    /// An event type (`bounced`, `delivered`, ...).
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    reason: String,
    /// `inbound` or `outbound` (the flow's event types), or empty.
    #[serde(default)]
    direction: String,
    /// Start of the window: `YYYY-MM-DD`, RFC 3339 or ms.
    #[serde(default)]
    since: String,
    /// End of the window (not in it).
    #[serde(default)]
    until: String,
    cursor: Option<i64>,
}

/// One row of results: an event and the tenant it belongs to.
pub struct Row {
    pub tenant: String,
    pub event: Event,
}

#[derive(Template)]
#[template(path = "dashboard/search.html")]
struct SearchPage<'a> {
    operator: &'a str,
    csrf: &'a str,
    form: &'a SearchForm,
    kinds: Vec<&'static str>,
    since_shown: String,
    rows: Vec<Row>,
    notice: Option<String>,
    next: Option<String>,
    many_tenants: bool,
}

/// A time field: `YYYY-MM-DD` (UTC midnight), RFC 3339 or ms.
fn parse_time(v: &str) -> Result<Option<i64>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()));
    }
    record::stats::parse_time(v)
        .map(Some)
        .ok_or_else(|| format!("{v:?} is not a date (2026-11-23), RFC 3339 time or milliseconds"))
}

/// What `q` names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// Nothing: every event in the window.
    All,
    /// A message (ours, by id, queue id or Message-ID), in one tenant.
    Message(i64, String),
    /// An address: as recipient, and in the sender or subject.
    Address(String),
    /// Words of the subject or the sender.
    Text(String),
}

/// Reads `q`: a message id, queue id or Message-ID the record knows (in
/// a tenant the operator sees), else an address, else subject or sender words.
async fn target(state: &AppState, who: &Who, q: &str) -> Result<Target, record::RecordError> {
    let q = q.trim();
    if q.is_empty() {
        return Ok(Target::All);
    }
    if let Some((tenant, id)) = state.record.events.find_message(q).await?
        && who.session.operator.sees(tenant.id)
    {
        return Ok(Target::Message(tenant.id, id));
    }
    Ok(if looks_like_address(q) { Target::Address(q.to_string()) } else { Target::Text(q.to_string()) })
}

fn looks_like_address(q: &str) -> bool {
    q.contains('@') && !q.contains(['<', '>']) && !q.chars().any(char::is_whitespace)
}

/// `GET /`: the search form and a page of matching events, oldest first
/// from the cursor (keyset: `cursor` is the last event id shown).
pub async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(form): Query<SearchForm>,
) -> Page {
    let who = who(&state, &headers).await?;
    let mut notice = None;
    let mut query = EventQuery { cursor: form.cursor, limit: PAGE_SIZE, ..Default::default() };
    match (parse_time(&form.since), parse_time(&form.until)) {
        (Ok(since), Ok(until)) => {
            query.since = Some(since.unwrap_or_else(|| now_ms() - DEFAULT_WINDOW_MS));
            query.until = until;
        }
        (Err(e), _) | (_, Err(e)) => notice = Some(e),
    }
    if !form.kind.is_empty() {
        match EventKind::parse(&form.kind) {
            Some(k) => query.kind = Some(k),
            None => notice = Some(format!("{:?} is not an event type", form.kind)),
        }
    }
    query.reason = Some(form.reason.trim().to_string()).filter(|r| !r.is_empty());
    match crate::read::direction(Some(&form.direction)) {
        Ok(d) => query.direction = d,
        Err(_) => notice = Some(format!("{:?} is not a direction (inbound, outbound)", form.direction)),
    }
    let mut tenants: Vec<&Tenant> = who.tenants.iter().collect();
    let queries = match target(&state, &who, &form.q).await.map_err(unavailable)? {
        Target::All => vec![query],
        Target::Message(tenant, id) => {
            tenants.retain(|t| t.id == tenant);
            vec![EventQuery { message: Some(id), ..query }]
        }
        Target::Address(a) => {
            vec![
                EventQuery { recipient: Some(a.clone()), ..query.clone() },
                EventQuery { text: Some(a), ..query },
            ]
        }
        Target::Text(t) => vec![EventQuery { text: Some(t), ..query }],
    };
    let (rows, next) =
        if notice.is_some() { (Vec::new(), None) } else { page(&state, &tenants, &queries).await? };
    let next = next.map(|c| next_link(&form, c));
    let since = queries.first().and_then(|q| q.since);
    let since_shown = since.map(vocabulary::time::rfc3339_ms).unwrap_or_default();
    let kinds = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    let many_tenants = who.tenants.len() > 1;
    html(&SearchPage {
        operator: who.name(),
        csrf: who.csrf(),
        form: &form,
        kinds,
        since_shown,
        rows,
        notice,
        next,
        many_tenants,
    })
}

/// One page over several tenants and queries (an address as recipient
/// and in the sender or subject): each one's page from the same cursor,
/// merged by id (an event two queries find, once), the first `limit`
/// kept. The cursor is the last id shown, so the next page starts where
/// this one ended in every tenant and query.
async fn page(
    state: &AppState,
    tenants: &[&Tenant],
    queries: &[EventQuery],
) -> Result<(Vec<Row>, Option<i64>), super::Refusal> {
    let mut rows = Vec::new();
    let mut more = false;
    for query in queries {
        for t in tenants {
            let (events, next) = state.record.events.events(t, query).await.map_err(unavailable)?;
            more |= next.is_some();
            rows.extend(events.into_iter().map(|e| Row { tenant: t.name.clone(), event: Event::from(e) }));
        }
    }
    rows.sort_by(|a, b| (a.event.id, &a.event.address).cmp(&(b.event.id, &b.event.address)));
    rows.dedup_by(|a, b| (a.event.id, &a.event.address) == (b.event.id, &b.event.address));
    let limit = PAGE_SIZE as usize;
    more |= rows.len() > limit;
    rows.truncate(limit);
    let next = if more { rows.last().map(|r| r.event.id) } else { None };
    Ok((rows, next))
}

/// The link to the page after `cursor`, with the same filters.
fn next_link(f: &SearchForm, cursor: i64) -> String {
    let pairs = [
        ("q", f.q.as_str()),
        ("type", f.kind.as_str()),
        ("reason", f.reason.as_str()),
        ("direction", f.direction.as_str()),
        ("since", f.since.as_str()),
        ("until", f.until.as_str()),
    ];
    let mut out = String::from("/?");
    for (k, v) in pairs {
        out.push_str(&format!("{k}={}&", encode(v)));
    }
    out.push_str(&format!("cursor={cursor}"));
    out
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved).
pub(crate) fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "dashboard/message.html")]
struct MessagePage<'a> {
    operator: &'a str,
    csrf: &'a str,
    tenant: &'a str,
    m: Message,
    /// Its copies, headers and the note of an action (quarantine.rs).
    x: super::quarantine::Extra,
}

/// `GET /messages/{id}`: the message in whichever of the operator's
/// tenants has it, each recipient's timeline; a 404 otherwise.
pub async fn message(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Page {
    let who = who(&state, &headers).await?;
    for t in &who.tenants {
        if let Some(m) = state.record.events.message(t, id.trim(), None).await.map_err(unavailable)? {
            let m = Message::from(m);
            let mut x = super::quarantine::extra(&state, &super::queue::scope(&who), &m).await;
            x.note = super::flash::take(&headers);
            let had_note = x.note.is_some();
            let page = MessagePage { operator: who.name(), csrf: who.csrf(), tenant: &t.name, m, x };
            return super::queue::with_note(html(&page), had_note);
        }
    }
    Err(failure(StatusCode::NOT_FOUND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_edge_is_a_date_a_time_or_milliseconds() {
        assert_eq!(parse_time(""), Ok(None));
        assert_eq!(parse_time("1970-01-02"), Ok(Some(86_400_000)));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(Some(1000)));
        assert_eq!(parse_time("5"), Ok(Some(5)));
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn the_next_page_keeps_every_filter_encoded() {
        let f = SearchForm { q: "a b@x.test".into(), kind: "bounced".into(), ..Default::default() };
        assert_eq!(
            next_link(&f, 9),
            "/?q=a%20b%40x.test&type=bounced&reason=&direction=&since=&until=&cursor=9"
        );
    }

    #[test]
    fn an_address_is_told_from_a_message_id() {
        assert!(looks_like_address("ann@example.net"));
        assert!(!looks_like_address("<abc@example.net>"));
        assert!(!looks_like_address("hello world"));
    }
}
