//! Open and click tracking: `GET /t/o/{token}` (the pixel) and `GET
//! /t/c/{token}` (a link). The token is opaque and signed; it names the
//! message, the recipient and the link's number, and where the link leads
//! is read from the record, never from the URL: a tampered or unknown token
//! is a 404 and redirects nowhere. Each open and click is recorded
//! (`opened`, `clicked`; `reason` the machine class, `human`,
//! `privacy_proxy`, `scanner` or `unknown`; `detail` the IP, user agent,
//! link, and the reasons) before the answer goes out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use outbound::tracking::{Activity, ActivityKind, Tracked, Tracker, classify};
use record::events::{EventKind, TrackTarget, now_ms};
use record::journal::{Entry, Journal};
use vocabulary::QueueId;

use crate::{ApiError, AppState};

/// What the tracking endpoints need.
pub struct Tracking {
    pub tracker: Tracker,
    /// Take the client's address from the last `X-Forwarded-For` entry
    /// (sluice behind a proxy of one's own), not the connection's.
    pub trust_forwarded_for: bool,
    /// Each recipient's recent clicks, for bursts (per node).
    recent: Mutex<HashMap<Recipient, Vec<(i64, u16)>>>,
    /// Targets already looked up, once delivered (what a link leads to
    /// never changes): a popular link costs no read.
    targets: Mutex<HashMap<(Recipient, Option<u16>), TrackTarget>>,
    /// Where opens and clicks are made durable before their answer (the
    /// record follows); without it each is a transaction of the record.
    journal: Option<Journal>,
    /// Each open and click's unique source: this process's random prefix
    /// and a count (no system call per click, unlike a random id each).
    source_prefix: String,
    seq: AtomicU64,
}

/// One recipient of one message.
type Recipient = (QueueId, u16);

/// How long a click is remembered for burst detection.
const RECENT_MS: i64 = 60_000;
/// Clicks remembered per recipient, at most.
const RECENT_PER_RECIPIENT: usize = 32;
/// Recipients remembered, at most, before the old are dropped.
const RECENT_MAX: usize = 100_000;

impl Tracking {
    pub fn new(tracker: Tracker, trust_forwarded_for: bool, journal: Option<Journal>) -> Self {
        let (recent, targets) = (Mutex::default(), Mutex::default());
        let source_prefix = format!("track:{}:", uuid::Uuid::new_v4().simple());
        Tracking {
            tracker,
            trust_forwarded_for,
            recent,
            targets,
            journal,
            source_prefix,
            seq: AtomicU64::new(0),
        }
    }

    /// What the token names: remembered, or read from the record.
    async fn target(&self, state: &AppState, t: &Tracked) -> Result<Option<TrackTarget>, ApiError> {
        let key = ((t.message, t.idx), t.link);
        if let Some(found) = self.targets.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(Some(found));
        }
        let message = t.message.to_string();
        let link = t.link.map(i64::from);
        let found = state.record.events.tracking_target(&message, t.idx.into(), link).await?;
        if let Some(target) = found.as_ref().filter(|f| f.delivered_at.is_some())
            && let Ok(mut m) = self.targets.lock()
        {
            if m.len() >= RECENT_MAX {
                m.clear();
            }
            m.insert(key, target.clone());
        }
        Ok(found)
    }

    /// This recipient's clicks of the last minute, then this one noted.
    fn clicks_before(&self, t: &Tracked, at: i64) -> Vec<(i64, u16)> {
        let Ok(mut recent) = self.recent.lock() else { return Vec::new() };
        if recent.len() >= RECENT_MAX {
            recent.retain(|_, v| v.last().is_some_and(|(last, _)| at - last < RECENT_MS));
        }
        let seen = recent.entry((t.message, t.idx)).or_default();
        seen.retain(|(when, _)| at - when < RECENT_MS);
        // The last few are evidence enough of a burst; a reader (or a
        // robot) clicking without end must not make each click dearer.
        if seen.len() >= RECENT_PER_RECIPIENT {
            seen.drain(..seen.len() + 1 - RECENT_PER_RECIPIENT);
        }
        let before = seen.clone();
        seen.push((at, t.link.unwrap_or(0)));
        before
    }
}

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

fn not_found() -> ApiError {
    ApiError::not_found("tracking link")
}

pub async fn open(State(state): State<AppState>, Path(token): Path<String>, req: Parts) -> Response {
    match track(&state, &token, ActivityKind::Open, &req).await {
        Ok(_) => {
            ([(header::CONTENT_TYPE, "image/gif"), (header::CACHE_CONTROL, "no-store, max-age=0")], PIXEL)
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

pub async fn click(State(state): State<AppState>, Path(token): Path<String>, req: Parts) -> Response {
    let url = match track(&state, &token, ActivityKind::Click, &req).await {
        Ok(target) => target.url,
        Err(e) => return e.into_response(),
    };
    // Only what sluice's own rewriting kept (http and https links) is a
    // destination; anything else in the record is not followed.
    let Some(location) = url
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .and_then(|u| HeaderValue::from_str(&u).ok())
    else {
        return not_found().into_response();
    };
    let mut r = StatusCode::FOUND.into_response();
    r.headers_mut().insert(header::LOCATION, location);
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// Opens the token, finds what it names, classifies the request and
/// records it; what was found.
async fn track(
    state: &AppState,
    token: &str,
    kind: ActivityKind,
    req: &Parts,
) -> Result<TrackTarget, ApiError> {
    let tracking = state.tracking.as_ref().ok_or_else(not_found)?;
    let t = tracking.tracker.open(token).ok_or_else(not_found)?;
    if t.link.is_some() != (kind == ActivityKind::Click) {
        return Err(not_found());
    }
    let target = tracking.target(state, &t).await?.ok_or_else(not_found)?;
    if kind == ActivityKind::Click && target.url.is_none() {
        return Err(not_found());
    }
    let at = now_ms();
    let headers = &req.headers;
    let ip = client_ip(tracking, req);
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string);
    let activity = Activity {
        kind,
        at_ms: at,
        delivered_at_ms: target.delivered_at,
        ip,
        user_agent: user_agent.clone(),
        head_request: req.method == Method::HEAD,
        link: t.link,
        other_clicks: if kind == ActivityKind::Click { tracking.clicks_before(&t, at) } else { Vec::new() },
        links_in_message: usize::try_from(target.links).unwrap_or(0),
    };
    let verdict = classify(&activity);
    let entry = Entry {
        tenant: target.tenant,
        message: t.message.to_string(),
        idx: Some(t.idx.into()),
        address: Some(target.address.clone()),
        kind: if kind == ActivityKind::Click { EventKind::Clicked } else { EventKind::Opened },
        at,
        reason: Some(verdict.class.as_str().to_string()),
        detail: Some(serde_json::json!({
            "ip": ip.map(|i| i.to_string()),
            "user_agent": user_agent,
            "link": t.link,
            "url": target.url,
            "method": req.method.as_str(),
            "reasons": verdict.reasons,
        })),
        source: format!("{}{}", tracking.source_prefix, tracking.seq.fetch_add(1, Ordering::Relaxed)),
    };
    // The answer waits until the open or click is on disk: one answered is
    // one recorded. One that cannot be kept still sends the reader on (a
    // broken link helps nobody); it is said at WARN.
    let kept = match &tracking.journal {
        Some(journal) => journal.append(&entry).await,
        None => state.record.events.record(entry.into_event()).await.map(|_| ()).map_err(|e| e.to_string()),
    };
    if let Err(e) = kept {
        tracing::warn!(error = %e, "an open or a click could not be recorded");
    }
    Ok(target)
}

fn client_ip(tracking: &Tracking, req: &Parts) -> Option<IpAddr> {
    let peer = req.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if tracking.trust_forwarded_for {
        return forwarded_for(&req.headers).or(peer);
    }
    peer
}

/// The last address of `X-Forwarded-For`: the one the proxy in front of
/// sluice saw.
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let all = headers.get_all("x-forwarded-for");
    let last = all.iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).next_back()?;
    last.trim().parse().ok()
}
