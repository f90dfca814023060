//! What the managing pages (Overview, Suppressions, Webhooks, Policies)
//! share: the tenant a page is about (`?tenant=NAME`, one the operator was
//! granted, else a 404 as in the API), the 303 back after a form with its
//! result carried in a short-lived cookie (so a link can
//! never make a page say something it did not; `flash.rs` carries it),
//! and the API's refusals turned into that result.

use askama::Template;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use record::directory::Tenant;

use super::auth::{Who, failure};
use super::{Page, Refusal, html};
use crate::ApiError;

/// The tenant named by `name` among the operator's, or the first of them
/// when none is named; a 404 for a tenant not granted (or not there).
pub fn pick<'a>(who: &'a Who, name: Option<&str>) -> Result<Option<&'a Tenant>, Refusal> {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => Ok(who.tenants.first()),
        Some(n) => who.tenants.iter().find(|t| t.name == n).map(Some).ok_or(failure(StatusCode::NOT_FOUND)),
    }
}

/// The tenant a form acts on: named, and granted (else a 404).
pub fn granted<'a>(who: &'a Who, name: &str) -> Result<&'a Tenant, Refusal> {
    who.tenants.iter().find(|t| t.name == name.trim()).ok_or(failure(StatusCode::NOT_FOUND))
}

/// The names of the operator's tenants, for a selector.
pub fn names(who: &Who) -> Vec<String> {
    who.tenants.iter().map(|t| t.name.clone()).collect()
}

/// A form's result: said on the page it returns to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

/// What an action answered: done (with what to say), or the API's
/// refusal (a 4xx, said as the API says it); anything else is a 503.
pub fn result(r: Result<String, ApiError>) -> Result<Flash, Refusal> {
    match r {
        Ok(text) => Ok(Flash { ok: true, text }),
        Err(e) if e.status.is_client_error() => {
            let text = match &e.field {
                Some(f) => format!("{f}: {}", e.message),
                None => e.message,
            };
            Ok(Flash { ok: false, text })
        }
        Err(e) => {
            tracing::error!(status = %e.status, message = %e.message, "dashboard: action failed");
            Err(failure(StatusCode::SERVICE_UNAVAILABLE))
        }
    }
}

/// A 303 to `to` (a path of ours), carrying `flash` in the dashboard's
/// note cookie (`flash.rs`), marked as done (`+`) or refused (`!`).
pub fn see_other(to: &str, flash: &Flash) -> Page {
    let mark = if flash.ok { '+' } else { '!' };
    Ok(super::flash::back(to, &format!("{mark}{}", flash.text)))
}

/// The result a form left for this page, if any.
pub fn flash(headers: &HeaderMap) -> Option<Flash> {
    let note = super::flash::take(headers)?;
    match note.split_at_checked(1)? {
        ("+", text) => Some(Flash { ok: true, text: text.to_string() }),
        ("!", text) => Some(Flash { ok: false, text: text.to_string() }),
        _ => Some(Flash { ok: true, text: note }),
    }
}

/// A page that showed the flash it was given, which is then forgotten.
pub fn page(t: &impl Template, shown: &Option<Flash>) -> Page {
    let mut res: Response = html(t)?;
    if shown.is_some() {
        super::flash::clear(&mut res);
    }
    Ok(res)
}

pub(crate) use super::pages::encode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flash_survives_its_cookie_with_its_kind() {
        use axum::http::{HeaderValue, header};
        for f in [
            Flash { ok: false, text: "address: not a valid email address; «ü» <b>".into() },
            Flash { ok: true, text: "+ added".into() },
        ] {
            let res = see_other("/suppressions?tenant=acme", &f).expect("a 303");
            assert_eq!(res.status(), StatusCode::SEE_OTHER);
            let set = res.headers()[header::SET_COOKIE].to_str().expect("ascii").to_string();
            let pair = set.split(';').next().expect("a pair");
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_str(pair).expect("a header"));
            assert_eq!(flash(&h), Some(f));
        }
    }

    #[test]
    fn encoding_keeps_only_unreserved_bytes() {
        assert_eq!(encode("a b@x.test"), "a%20b%40x.test");
        assert_eq!(encode("ü;"), "%C3%BC%3B");
    }

    #[test]
    fn a_refusal_is_said_and_an_outage_is_a_503() {
        let said = result(Err(ApiError::invalid("url", "not https"))).expect("said");
        assert_eq!(said, Flash { ok: false, text: "url: not https".into() });
        assert!(result(Ok("done".into())).expect("said").ok);
        let down = result(Err(ApiError::unavailable("gone")));
        assert_eq!(down.err(), Some(Refusal::Status(StatusCode::SERVICE_UNAVAILABLE)));
    }
}
