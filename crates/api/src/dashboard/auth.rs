//! Who is looking: the login form and its throttle, the session cookie
//! (`sluice_session`: `HttpOnly; Secure; SameSite=Strict; Path=/`, a
//! random token whose SHA-256 the record keeps), logout, and the CSRF
//! token every form carries (the session's own secret; the login form,
//! before any session, a double-submitted cookie of its own).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use askama::Template;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use record::directory::Tenant;
use record::operators::Session;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{Page, Refusal, html, redirect};
use crate::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sluice_session";
/// The login form's own CSRF cookie (there is no session yet).
const LOGIN_COOKIE: &str = "sluice_login";
/// How long a session lasts (ms).
const SESSION_MS: i64 = 12 * 3600 * 1000;

/// A logged-in operator: its session and the tenants it sees.
pub struct Who {
    pub session: Session,
    pub tenants: Vec<Tenant>,
}

impl Who {
    pub fn name(&self) -> &str {
        &self.session.operator.name
    }
    pub fn csrf(&self) -> &str {
        &self.session.csrf
    }
}

/// 32 random bytes as hex: session tokens and CSRF secrets.
pub fn random_token() -> Result<String, Refusal> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| {
        tracing::error!(error = %e, "dashboard: no randomness");
        failure(StatusCode::SERVICE_UNAVAILABLE)
    })?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether `given` is `expected`, in constant time; an empty secret never matches.
pub fn same_secret(given: &str, expected: &str) -> bool {
    !expected.is_empty()
        && given.len() == expected.len()
        && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// A bare status page (no record details).
pub fn failure(status: StatusCode) -> Refusal {
    Refusal::Status(status)
}

/// The operator behind the request's session cookie, or a 303 to `/login`.
pub async fn who(state: &AppState, headers: &HeaderMap) -> Result<Who, Refusal> {
    let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty()) else {
        return Err(Refusal::ToLogin);
    };
    let session = match state.record.operators.session(&token).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(Refusal::ToLogin),
        Err(e) => return Err(unavailable(e)),
    };
    let tenants = state.record.directory.tenants().await.map_err(unavailable)?;
    let tenants = tenants.into_iter().filter(|t| session.operator.sees(t.id)).collect();
    Ok(Who { session, tenants })
}

pub fn unavailable(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "dashboard: record unavailable");
    failure(StatusCode::SERVICE_UNAVAILABLE)
}

/// 403 unless the form's `csrf` is the session's secret.
pub fn check_csrf(who: &Who, given: Option<&str>) -> Result<(), Refusal> {
    match given {
        Some(g) if same_secret(g, who.csrf()) => Ok(()),
        _ => Err(failure(StatusCode::FORBIDDEN)),
    }
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: i64) -> Result<HeaderValue, Refusal> {
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; Secure; SameSite=Strict; Path={path}; Max-Age={max_age}"
    ))
    .map_err(|_| failure(StatusCode::INTERNAL_SERVER_ERROR))
}

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    error: Option<&'a str>,
}

fn login_form(csrf: &str, error: Option<&str>, status: StatusCode) -> Page {
    let mut res = html(&LoginPage { csrf, error })?;
    *res.status_mut() = status;
    res.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, csrf, "/login", 3600)?);
    Ok(res)
}

/// `GET /login`: the form, with a fresh CSRF cookie.
pub async fn login_page() -> Page {
    login_form(&random_token()?, None, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    csrf: Option<String>,
}

fn peer(ext: &Extensions) -> Option<IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// `POST /login`: the CSRF cookie matched, the throttle asked, the
/// password checked; a session and a 303 to the search page.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: Extensions,
    Form(f): Form<LoginForm>,
) -> Page {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !same_secret(f.csrf.as_deref().unwrap_or(""), &expected) {
        return Err(failure(StatusCode::FORBIDDEN));
    }
    let (ip, now) = (peer(&ext), Instant::now());
    if let Some(wait) = state.dashboard.refused(&f.name, ip, now) {
        tracing::warn!(operator = %f.name, ?ip, "dashboard: login throttled");
        let mut res = login_form(
            &expected,
            Some("Too many failed logins; try again later."),
            StatusCode::TOO_MANY_REQUESTS,
        )?;
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
        return Ok(res);
    }
    let operator = state.record.operators.login(&f.name, &f.password).await.map_err(unavailable)?;
    let Some(operator) = operator else {
        state.dashboard.failed(&f.name, ip, now);
        tracing::info!(operator = %f.name, ?ip, "dashboard: login failed");
        return login_form(&expected, Some("Wrong name or password."), StatusCode::UNAUTHORIZED);
    };
    state.dashboard.succeeded(&f.name);
    let (token, csrf) = (random_token()?, random_token()?);
    let expires = record::events::now_ms() + SESSION_MS;
    state
        .record
        .operators
        .start_session(&token, &operator.name, &csrf, expires)
        .await
        .map_err(unavailable)?;
    tracing::info!(operator = %operator.name, ?ip, "dashboard: logged in");
    let mut res = redirect("/");
    res.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &token, "/", SESSION_MS / 1000)?);
    res.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", "/login", 0)?);
    Ok(res)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /logout`: the session ended, its cookie cleared.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Page {
    let who = who(&state, &headers).await?;
    check_csrf(&who, f.csrf.as_deref())?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state.record.operators.end_session(&token).await.map_err(unavailable)?;
    }
    let mut res = redirect("/login");
    res.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", "/", 0)?);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; sluice_session=abc"));
        h.append(header::COOKIE, HeaderValue::from_static("sluice_login=xyz"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, LOGIN_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "sluice"), None);
    }

    #[test]
    fn a_csrf_secret_matches_only_itself_and_never_when_empty() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("", ""));
    }

    #[test]
    fn the_session_cookie_is_http_only_secure_and_strict() {
        let v = set_cookie(SESSION_COOKIE, "t", "/", 60).expect("a header");
        let v = v.to_str().expect("ascii");
        assert!(v.contains("HttpOnly") && v.contains("Secure") && v.contains("SameSite=Strict"));
        assert!(v.contains("Path=/;"));
    }

    #[test]
    fn tokens_are_random_and_long() {
        let (a, b) = (random_token().expect("a token"), random_token().expect("a token"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
