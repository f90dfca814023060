//! Tracking tokens: the opaque last path segment of `/t/o/TOKEN` (an open)
//! and `/t/c/TOKEN` (a click). A token names one recipient of one message,
//! and for a click one link of it, and is signed, so a forged, altered or
//! cut token opens to nothing and the endpoint answers 404.
//!
//! The token is URL-safe base64 without padding (it stands in a path, and
//! unlike a VERP local part nothing case-folds it) of:
//!
//! ```text
//! kind (1: open, 2: click) | message id (16) | recipient index (2) | [link id (2), clicks only] | MAC (16)
//! ```
//!
//! The MAC is HMAC-SHA256 over `b"sluice-track\0"` and the bytes before it,
//! truncated to 16 bytes. The prefix separates these MACs from the VERP ones
//! made with the same secret (`verp.rs`), so no VERP tag is ever a valid
//! tracking MAC or the other way round.

use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;
use vocabulary::QueueId;

/// What the MAC input starts with: keeps tracking MACs apart from VERP's.
const DOMAIN: &[u8] = b"sluice-track\0";
const MAC_LEN: usize = 16;
const KIND_OPEN: u8 = 1;
const KIND_CLICK: u8 = 2;
/// kind + message id + recipient index.
const OPEN_BODY: usize = 1 + 16 + 2;
/// An open's body + link id.
const CLICK_BODY: usize = OPEN_BODY + 2;
/// The longest token `open` looks at: a click's, encoded.
const MAX_TOKEN_CHARS: usize = ((CLICK_BODY + MAC_LEN) * 4).div_ceil(3);

/// Makes and opens tracking tokens with the shared secret.
#[derive(Clone)]
pub struct Tracker {
    key: Vec<u8>,
}

/// What a valid token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tracked {
    pub message: QueueId,
    /// The recipient's index in the message.
    pub idx: u16,
    /// The link id (its index in `rewrite::tracked_links`) for a click;
    /// `None` for an open.
    pub link: Option<u16>,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker").field("key", &"<redacted>").finish()
    }
}

impl Tracker {
    /// `key` is the shared HMAC secret (the one VERP uses too).
    pub fn new(key: &[u8]) -> Self {
        Tracker { key: key.to_vec() }
    }

    /// The token of the open pixel for recipient `idx` of `message`.
    pub fn open_token(&self, message: QueueId, idx: u16) -> String {
        self.seal(&body(KIND_OPEN, message, idx, None))
    }

    /// The token of link `link` for recipient `idx` of `message`.
    pub fn click_token(&self, message: QueueId, idx: u16, link: u16) -> String {
        self.seal(&body(KIND_CLICK, message, idx, Some(link)))
    }

    /// What `token` names, if it is whole and its MAC holds.
    pub fn open(&self, token: &str) -> Option<Tracked> {
        if token.len() > MAX_TOKEN_CHARS {
            return None;
        }
        let raw = BASE64URL_NOPAD.decode(token.as_bytes()).ok()?;
        let body_len = match *raw.first()? {
            KIND_OPEN => OPEN_BODY,
            KIND_CLICK => CLICK_BODY,
            _ => return None,
        };
        if raw.len() != body_len + MAC_LEN {
            return None;
        }
        let (body, mac) = raw.split_at(body_len);
        self.hmac(body)?.verify_truncated_left(mac).ok()?;
        let message = QueueId(u128::from_be_bytes(body.get(1..17)?.try_into().ok()?));
        let idx = u16::from_be_bytes(body.get(17..19)?.try_into().ok()?);
        let link = match body.get(19..21) {
            Some(bytes) => Some(u16::from_be_bytes(bytes.try_into().ok()?)),
            None => None,
        };
        Some(Tracked { message, idx, link })
    }

    /// The HMAC state after the domain prefix and `body`.
    fn hmac(&self, body: &[u8]) -> Option<Hmac<Sha256>> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).ok()?;
        mac.update(DOMAIN);
        mac.update(body);
        Some(mac)
    }

    fn seal(&self, body: &[u8]) -> String {
        let mut raw = Vec::with_capacity(body.len() + MAC_LEN);
        raw.extend_from_slice(body);
        match self.hmac(body) {
            Some(mac) => raw.extend_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]),
            // HMAC takes keys of any length, so this is never reached; a
            // zero MAC would simply never verify.
            None => raw.resize(body.len() + MAC_LEN, 0),
        }
        BASE64URL_NOPAD.encode(&raw)
    }
}

fn body(kind: u8, message: QueueId, idx: u16, link: Option<u16>) -> Vec<u8> {
    let mut out = Vec::with_capacity(CLICK_BODY);
    out.push(kind);
    out.extend_from_slice(&message.0.to_be_bytes());
    out.extend_from_slice(&idx.to_be_bytes());
    if let Some(link) = link {
        out.extend_from_slice(&link.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flip(token: &str, at: usize) -> String {
        let mut bytes = token.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn open_and_click_round_trip() {
        let t = Tracker::new(b"secret");
        let id = QueueId::generate();
        let open = t.open_token(id, 3);
        assert_eq!(t.open(&open), Some(Tracked { message: id, idx: 3, link: None }));
        let click = t.click_token(id, 3, 17);
        assert_eq!(t.open(&click), Some(Tracked { message: id, idx: 3, link: Some(17) }));
        let edge = t.click_token(QueueId(u128::MAX), u16::MAX, u16::MAX);
        assert_eq!(
            t.open(&edge),
            Some(Tracked { message: QueueId(u128::MAX), idx: u16::MAX, link: Some(u16::MAX) })
        );
        assert!(open.len() <= MAX_TOKEN_CHARS && click.len() <= MAX_TOKEN_CHARS);
        assert_eq!(click.len(), MAX_TOKEN_CHARS);
    }

    #[test]
    fn tokens_are_url_safe_and_distinct() {
        let t = Tracker::new(b"secret");
        let id = QueueId::generate();
        let tokens =
            [t.open_token(id, 0), t.open_token(id, 1), t.click_token(id, 0, 0), t.click_token(id, 0, 1)];
        for token in &tokens {
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
        }
        for (i, a) in tokens.iter().enumerate() {
            for b in &tokens[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn tampered_tokens_open_to_nothing() {
        let t = Tracker::new(b"secret");
        let id = QueueId::generate();
        for token in [t.open_token(id, 2), t.click_token(id, 2, 5)] {
            for at in 0..token.len() {
                assert_eq!(t.open(&flip(&token, at)), None, "flipped at {at}");
            }
            // Truncated, extended, or not base64 at all.
            assert_eq!(t.open(&token[..token.len() - 1]), None);
            assert_eq!(t.open(&token[..token.len() - 4]), None);
            assert_eq!(t.open(&format!("{token}A")), None);
            assert_eq!(t.open(&format!("{token}AAAA")), None);
        }
        assert_eq!(t.open(""), None);
        assert_eq!(t.open("!!!!"), None);
        assert_eq!(t.open("ab+/cd=="), None);
        assert_eq!(t.open(&"A".repeat(10_000)), None);
    }

    #[test]
    fn other_key_refused() {
        let id = QueueId::generate();
        let token = Tracker::new(b"k1").click_token(id, 1, 1);
        assert_eq!(Tracker::new(b"k2").open(&token), None);
        assert_eq!(Tracker::new(b"").open(&token), None);
    }

    #[test]
    fn kind_cannot_be_swapped() {
        let t = Tracker::new(b"secret");
        let id = QueueId::generate();
        // An open token relabelled as a click (and padded to a click's
        // length) or a click relabelled as an open fails its MAC.
        let mut raw = BASE64URL_NOPAD.decode(t.open_token(id, 1).as_bytes()).unwrap();
        raw[0] = KIND_CLICK;
        raw.splice(OPEN_BODY..OPEN_BODY, [0, 0]);
        assert_eq!(t.open(&BASE64URL_NOPAD.encode(&raw)), None);
        let mut raw = BASE64URL_NOPAD.decode(t.click_token(id, 1, 0).as_bytes()).unwrap();
        raw[0] = KIND_OPEN;
        raw.drain(OPEN_BODY..CLICK_BODY);
        assert_eq!(t.open(&BASE64URL_NOPAD.encode(&raw)), None);
        // An unknown kind byte.
        let mut raw = BASE64URL_NOPAD.decode(t.open_token(id, 1).as_bytes()).unwrap();
        raw[0] = 3;
        assert_eq!(t.open(&BASE64URL_NOPAD.encode(&raw)), None);
    }

    #[test]
    fn verp_tags_are_not_tracking_macs() {
        // The same key and the same (message, index) bytes signed by VERP do
        // not make a tracking MAC: the domain prefix differs.
        let key = b"shared";
        let id = QueueId::generate();
        let verp = crate::verp::Verp::new(key, "bounce", "b.example");
        assert!(verp.open(&verp.token(id, 1)).is_some());
        let mut body = body(KIND_OPEN, id, 1, None);
        let mut plain = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        plain.update(&body);
        body.extend_from_slice(&plain.finalize().into_bytes()[..MAC_LEN]);
        assert_eq!(Tracker::new(key).open(&BASE64URL_NOPAD.encode(&body)), None);
    }

    #[test]
    fn debug_hides_the_key() {
        let shown = format!("{:?}", Tracker::new(b"topsecret"));
        assert!(!shown.contains("topsecret") && !shown.contains("116"), "{shown}");
    }
}
