//! The Queue page (`/queue`): the backlog per route, the queued messages
//! (all, or the held ones) of the tenants the operator sees, and hold,
//! release, delete (confirmed by a checkbox) and flush as forms. It calls
//! `crate::ops::queue`, as `/v1/queue…` does; every action answers a 303
//! back to the page with its result.

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::auth::{Who, check_csrf, failure, who};
use super::{Page, flash, html};
use crate::AppState;
use crate::ops::queue::{self, Action, RouteBacklog};
use crate::ops::{OpsError, QueueEntry, Scope};

/// Messages per page.
const PAGE_SIZE: usize = 100;

pub fn scope(who: &Who) -> Scope {
    Scope::operator(&who.session.operator, &who.tenants)
}

/// An operation's outcome as the page shows it: a 303 back with its
/// words, a 404 for what is not the operator's, a 503 when it cannot.
pub fn outcome(to: &str, r: Result<String, OpsError>) -> Page {
    match r {
        Ok(said) => Ok(flash::back(to, &said)),
        Err(OpsError::NotFound(_)) => Err(failure(StatusCode::NOT_FOUND)),
        Err(OpsError::Invalid(m)) => Ok(flash::back(to, &m)),
        Err(OpsError::NotOffered) => Ok(flash::back(to, "this server runs no spool")),
        Err(OpsError::Unavailable(m)) => Err(super::auth::unavailable(m)),
    }
}

/// A page's answer, or a refusal for what went wrong reading it.
pub fn read<T>(r: Result<T, OpsError>) -> Result<T, super::Refusal> {
    r.map_err(|e| match e {
        OpsError::NotFound(_) => failure(StatusCode::NOT_FOUND),
        OpsError::Invalid(_) => failure(StatusCode::UNPROCESSABLE_ENTITY),
        OpsError::Unavailable(m) => super::auth::unavailable(m),
        OpsError::NotOffered => failure(StatusCode::SERVICE_UNAVAILABLE),
    })
}

/// Shows a page with the note the request carries, and clears it.
pub fn with_note(page: Page, had_note: bool) -> Page {
    let mut res: Response = page?;
    if had_note {
        flash::clear(&mut res);
    }
    Ok(res)
}

#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    /// `1`: held messages only.
    #[serde(default)]
    held: String,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard/queue.html")]
struct QueuePage<'a> {
    operator: &'a str,
    csrf: &'a str,
    note: Option<String>,
    routes: Vec<RouteBacklog>,
    entries: Vec<QueueEntry>,
    held_only: bool,
    next: Option<String>,
    offered: bool,
}

/// `GET /queue`.
pub async fn page(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<QueueQuery>) -> Page {
    let who = who(&state, &headers).await?;
    let scope = scope(&who);
    let note = flash::take(&headers);
    let had_note = note.is_some();
    let held_only = q.held == "1";
    let (routes, entries, next, offered) = match queue::summary(&state, &scope).await {
        Err(OpsError::NotOffered) => (Vec::new(), Vec::new(), None, false),
        r => {
            let routes = read(r)?;
            let (entries, next) =
                read(queue::list(&state, &scope, held_only, q.cursor.as_deref(), PAGE_SIZE).await)?;
            (routes, entries, next, true)
        }
    };
    let next = next.map(|c| format!("/queue?held={}&cursor={c}", if held_only { "1" } else { "" }));
    let page =
        QueuePage { operator: who.name(), csrf: who.csrf(), note, routes, entries, held_only, next, offered };
    with_note(html(&page), had_note)
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    /// The delete checkbox.
    confirm: Option<String>,
}

async fn act(state: AppState, headers: HeaderMap, id: String, f: ActionForm, action: Action) -> Page {
    let who = who(&state, &headers).await?;
    check_csrf(&who, f.csrf.as_deref())?;
    if action == Action::Delete && f.confirm.as_deref() != Some("yes") {
        return Ok(flash::back("/queue", "not deleted: tick \"confirm\" to delete a message"));
    }
    outcome("/queue", queue::act(&state, &scope(&who), &id, action).await)
}

/// `POST /queue/{id}/hold`.
pub async fn hold(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Page {
    act(s, h, id, f, Action::Hold).await
}

/// `POST /queue/{id}/release`.
pub async fn release(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Page {
    act(s, h, id, f, Action::Release).await
}

/// `POST /queue/{id}/delete`: only with the confirm box ticked.
pub async fn delete(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Page {
    act(s, h, id, f, Action::Delete).await
}

/// `POST /queue/flush`: the operator's queued messages attempted now.
pub async fn flush(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<ActionForm>) -> Page {
    let who = who(&state, &headers).await?;
    check_csrf(&who, f.csrf.as_deref())?;
    outcome("/queue", queue::flush(&state, &scope(&who)).await)
}
