//! VERP return paths: `LOCAL+TOKEN@BOUNCE_DOMAIN`, TOKEN naming one
//! recipient of one message and signed, so a bounce can be attached to
//! exactly that recipient and a forged one is recognised and ignored.
//!
//! The token is base32 (lower case, no padding: local parts may be
//! case-folded on the way back) of 16 bytes of message id, 2 bytes of
//! recipient index and the first 10 bytes of an HMAC-SHA256 over both.

use data_encoding::{Encoding, Specification};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::sync::LazyLock;
use vocabulary::QueueId;

const MAC_LEN: usize = 10;
const RAW_LEN: usize = 16 + 2 + MAC_LEN;

static BASE32: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.translate.from.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    spec.translate.to.push_str("abcdefghijklmnopqrstuvwxyz");
    spec.encoding().unwrap_or_else(|_| data_encoding::BASE32_NOPAD.clone())
});

#[derive(Clone)]
pub struct Verp {
    key: Vec<u8>,
    /// The local part before `+` (e.g. `bounce`).
    pub local: String,
    /// Lower-case bounce domain, accepted by the MX listener.
    pub domain: String,
}

impl Verp {
    pub fn new(key: &[u8], local: &str, domain: &str) -> Self {
        Verp { key: key.to_vec(), local: local.to_string(), domain: domain.to_ascii_lowercase() }
    }

    fn mac(&self, body: &[u8]) -> [u8; MAC_LEN] {
        let mut out = [0u8; MAC_LEN];
        if let Ok(mut m) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) {
            m.update(body);
            out.copy_from_slice(&m.finalize().into_bytes()[..MAC_LEN]);
        }
        out
    }

    pub fn token(&self, message: QueueId, idx: u16) -> String {
        let mut raw = Vec::with_capacity(RAW_LEN);
        raw.extend_from_slice(&message.0.to_be_bytes());
        raw.extend_from_slice(&idx.to_be_bytes());
        let mac = self.mac(&raw);
        raw.extend_from_slice(&mac);
        BASE32.encode(&raw)
    }

    /// The return path for one recipient of one message: the address that
    /// carries its `token`.
    pub fn address_of(&self, token: &str) -> String {
        format!("{}+{token}@{}", self.local, self.domain)
    }

    /// The (message, recipient index) a token names, if its signature holds.
    pub fn open(&self, token: &str) -> Option<(QueueId, u16)> {
        let raw = BASE32.decode(token.trim().as_bytes()).ok()?;
        if raw.len() != RAW_LEN {
            return None;
        }
        let (body, mac) = raw.split_at(18);
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).ok()?;
        m.update(body);
        m.verify_truncated_left(mac).ok()?;
        let id = u128::from_be_bytes(body[..16].try_into().ok()?);
        let idx = u16::from_be_bytes(body[16..18].try_into().ok()?);
        Some((QueueId(id), idx))
    }

    /// Whether `address` is at the bounce domain.
    pub fn is_ours(&self, address: &str) -> bool {
        vocabulary::domain_of(address) == self.domain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let v = Verp::new(b"k1", "bounce", "B.example.test");
        let id = QueueId::generate();
        let addr = v.address_of(&v.token(id, 7));
        assert!(addr.starts_with("bounce+") && addr.ends_with("@b.example.test"), "{addr}");
        let local = addr.split('@').next().unwrap_or_default();
        assert!(local.len() <= 64, "{local}");
        let token = decide::verp::parse(&addr).unwrap();
        assert_eq!(v.open(&token), Some((id, 7)));
        // Case-folded on the way back still opens.
        assert_eq!(v.open(&token.to_ascii_uppercase()), Some((id, 7)));
        // Another key, another index, a flipped character: refused.
        assert_eq!(Verp::new(b"k2", "bounce", "b.example.test").open(&token), None);
        let other = v.token(id, 8);
        assert_ne!(other, token);
        let mut bad = token.clone().into_bytes();
        bad[3] = if bad[3] == b'a' { b'b' } else { b'a' };
        assert_eq!(v.open(&String::from_utf8(bad).unwrap()), None);
        assert_eq!(v.open("short"), None);
        assert_eq!(v.open(""), None);
    }
}
