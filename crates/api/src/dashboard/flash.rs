//! The result of a dashboard action, carried across its 303 to the page
//! it came from: a short-lived cookie (`sluice_note`, `HttpOnly; Secure;
//! SameSite=Strict`) read and cleared by the next page, so no message can
//! be put on a page by a link.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::cookie;

const FLASH_COOKIE: &str = "sluice_note";

/// Percent-encodes a cookie value (everything but unreserved characters).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `to` is a page of this dashboard to go back to (a path, never
/// another origin).
pub fn local(to: &str) -> bool {
    to.starts_with('/') && !to.starts_with("//") && !to.contains(['\\', '\r', '\n']) && to.len() < 512
}

/// A 303 to `to` (a local path, else `/`) that carries `note`.
pub fn back(to: &str, note: &str) -> Response {
    let to = if local(to) { to } else { "/" };
    let note: String = note.chars().take(300).collect();
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let c =
        format!("{FLASH_COOKIE}={}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=60", encode(&note));
    if let Ok(v) = HeaderValue::from_str(&c) {
        h.append(header::SET_COOKIE, v);
    }
    res
}

/// The note the request carries, if any.
pub fn take(headers: &HeaderMap) -> Option<String> {
    cookie(headers, FLASH_COOKIE).filter(|v| !v.is_empty()).map(|v| decode(&v))
}

/// Clears the note on the page that showed it.
pub fn clear(res: &mut Response) {
    let c = format!("{FLASH_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_survives_the_cookie() {
        let res = back("/queue", "released 0ABC; deleted <x> ✓");
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(res.headers()[header::LOCATION], "/queue");
        let set = res.headers()[header::SET_COOKIE].to_str().expect("ascii").to_string();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
        let mut h = HeaderMap::new();
        let pair = set.split(';').next().expect("a pair").to_string();
        h.insert(header::COOKIE, HeaderValue::from_str(&pair).expect("a header"));
        assert_eq!(take(&h).as_deref(), Some("released 0ABC; deleted <x> ✓"));
    }

    #[test]
    fn only_local_paths_are_gone_back_to() {
        assert!(local("/messages/0ABC"));
        for bad in ["//evil.test/", "https://evil.test/", "/\\evil", "x", ""] {
            assert!(!local(bad), "{bad}");
        }
        assert_eq!(back("//evil.test", "x").headers()[header::LOCATION], "/");
    }
}
