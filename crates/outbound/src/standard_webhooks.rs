//! Signatures for the webhooks sluice sends to applications, following the
//! Standard Webhooks specification (v1.0.0,
//! <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>,
//! "Signature scheme", "Webhook headers", "Verifying signatures"): the
//! symmetric scheme `v1`, HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`
//! with a per-endpoint secret shown to the user as `whsec_` and base64, sent
//! as `webhook-signature: v1,BASE64` (space-separated, one per secret,
//! during a secret rotation). Any Standard Webhooks library (PyPI
//! `standardwebhooks`, npm `standardwebhooks`, ...) verifies what [`sign`]
//! makes.
//!
//! Pure: the delivery worker passes the id, the time and the exact body
//! bytes it is about to send; nothing here reads a clock or the database.
//! The body is bytes, not text: it is signed exactly as sent.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE64;
use hmac::Mac;
use subtle::ConstantTimeEq;

use crate::providers::signature::{SigError, check_skew, decode_base64, hmac_sha256, unix_seconds};

/// The header with the message's id, the same on every retry.
pub const HEADER_ID: &str = "webhook-id";
/// The header with the attempt's time, whole seconds since the epoch.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The header with the space-separated `v1,BASE64` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// How far from now a receiver accepts a timestamp: the reference
/// libraries' five minutes.
pub const DEFAULT_TOLERANCE_SECS: u64 = 5 * 60;

/// The version tag of an HMAC-SHA256 signature ("Signature identifier").
const VERSION: &str = "v1";

/// An endpoint's signing secret. The spec's symmetric secret is random, "at
/// least 24 bytes (192 bits, 512 maximum)", serialized as `whsec_` and
/// base64. Its `Debug` shows only its length; [`Secret::to_whsec`] is the
/// one way to get the key out (to show it once, or to store it).
#[derive(Clone)]
pub struct Secret {
    key: Vec<u8>,
}

impl Secret {
    /// The prefix of a serialized secret.
    pub const PREFIX: &'static str = "whsec_";
    /// The shortest key the spec allows, in bytes.
    pub const MIN_BYTES: usize = 24;
    /// The longest key the spec allows, in bytes (512 bits).
    pub const MAX_BYTES: usize = 64;
    /// The size of a key [`Secret::generate`] makes.
    pub const GENERATED_BYTES: usize = 32;

    /// A new secret of 32 random bytes from the operating system.
    pub fn generate() -> Result<Secret, SigError> {
        let mut key = vec![0u8; Self::GENERATED_BYTES];
        getrandom::fill(&mut key).map_err(|e| SigError::Random(e.to_string()))?;
        Ok(Secret { key })
    }

    /// A secret as the spec serializes it: `whsec_` and the standard base64
    /// of 24 to 64 bytes. Without the prefix it is read the same way, as
    /// the reference libraries read it.
    pub fn parse(s: &str) -> Result<Secret, SigError> {
        let s = s.trim();
        let b64 = s.strip_prefix(Self::PREFIX).unwrap_or(s);
        Self::from_key(&decode_base64(b64).ok_or(SigError::Secret)?)
    }

    /// A secret from its raw key (24 to 64 bytes).
    pub fn from_key(key: &[u8]) -> Result<Secret, SigError> {
        if (Self::MIN_BYTES..=Self::MAX_BYTES).contains(&key.len()) {
            Ok(Secret { key: key.to_vec() })
        } else {
            Err(SigError::Secret)
        }
    }

    /// The secret as the user is shown it: `whsec_` and base64.
    pub fn to_whsec(&self) -> String {
        format!("{}{}", Self::PREFIX, BASE64.encode(&self.key))
    }

    /// The HMAC-SHA256 of `{id}.{ts}.{body}` under this key.
    fn tag(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> Option<[u8; 32]> {
        let mut mac = hmac_sha256(&self.key)?;
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        Some(mac.finalize().into_bytes().into())
    }
}

impl FromStr for Secret {
    type Err = SigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Secret::parse(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}…, {} bytes)", Self::PREFIX, self.key.len())
    }
}

/// One signature as the spec writes it: `v1,` and the base64 of the
/// HMAC-SHA256, keyed with the secret's bytes, of `msg_id`, `.`, the
/// timestamp in decimal, `.`, and the body bytes exactly as sent.
///
/// The spec asks that neither id nor timestamp be user-controlled or hold a
/// `.`: the id is one sluice makes.
pub fn sign(secret: &Secret, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    // `tag` is never None (HMAC takes any key); an empty signature would
    // only ever be refused.
    let tag = secret.tag(msg_id, &timestamp_secs.to_string(), body).map(|t| BASE64.encode(&t));
    format!("{VERSION},{}", tag.unwrap_or_default())
}

/// The `webhook-signature` header: one signature per secret, space
/// separated, so that during a rotation the old and the new secret both
/// verify ("Webhook headers": zero-downtime secret rotation).
pub fn signature_header(secrets: &[Secret], msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| sign(s, msg_id, timestamp_secs, body)).collect::<Vec<_>>().join(" ")
}

/// Checks a `webhook-signature` header as a receiver does ("Verifying
/// signatures"): the timestamp must be whole seconds within `tolerance_secs`
/// of `now_secs` (either side), and one of the header's `v1` signatures
/// must match, compared in constant time. Signatures of other versions
/// (`v1a`) and unreadable ones are passed over. For sluice's own tests and
/// tools; receivers use their own library.
pub fn verify(
    secret: &Secret,
    header_value: &str,
    msg_id: &str,
    timestamp: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: u64,
) -> Result<(), SigError> {
    let ts = unix_seconds(timestamp).ok_or_else(|| SigError::Timestamp(timestamp.to_string()))?;
    check_skew(ts, now_secs, tolerance_secs)?;
    // Signed as the reference libraries sign it: the number, reformatted.
    let expected = secret.tag(msg_id, &ts.to_string(), body).ok_or(SigError::Mismatch)?;
    let matched = header_value
        .split_ascii_whitespace()
        .filter_map(|s| s.split_once(','))
        .filter(|(version, _)| *version == VERSION)
        .filter_map(|(_, b64)| decode_base64(b64))
        .fold(false, |found, given| found | bool::from(given.as_slice().ct_eq(&expected)));
    if matched { Ok(()) } else { Err(SigError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector of the reference JavaScript library,
    // standard-webhooks/standard-webhooks, libraries/javascript/src/webhook.test.ts,
    // test "sign function works":
    //   const key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    //   const msgId = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    //   const timestamp = new Date(1614265330 * 1000);
    //   const payload = '{"test": 2432232314}';
    //   const expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret() -> Secret {
        SECRET.parse().unwrap()
    }

    #[test]
    fn the_reference_libraries_vectors() {
        assert_eq!(sign(&secret(), ID, TS, BODY), SIGNATURE);
        assert_eq!(verify(&secret(), SIGNATURE, ID, "1614265330", BODY, TS, DEFAULT_TOLERANCE_SECS), Ok(()));
        // The reference Rust library's `test_sign`
        // (standard-webhooks/standard-webhooks, libraries/rust/src/lib.rs).
        let rust_lib: Secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".parse().unwrap();
        assert_eq!(
            sign(
                &rust_lib,
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn anything_changed_fails() {
        let s = secret();
        let ok = |header: &str, id: &str, ts: &str, body: &[u8]| verify(&s, header, id, ts, body, TS, 300);
        assert_eq!(ok(SIGNATURE, ID, "1614265330", br#"{"test": 2432232315}"#), Err(SigError::Mismatch));
        assert_eq!(ok(SIGNATURE, ID, "1614265330", br#"{"test":2432232314}"#), Err(SigError::Mismatch));
        assert_eq!(
            ok(SIGNATURE, "msg_p5jXN8AQM9LWM0D4loKWxJeK", "1614265330", BODY),
            Err(SigError::Mismatch)
        );
        assert_eq!(ok(SIGNATURE, ID, "1614265331", BODY), Err(SigError::Mismatch));
        assert_eq!(ok("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE", ID, "1614265330", BODY), Ok(()));
        assert_eq!(
            ok("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=", ID, "1614265330", BODY),
            Err(SigError::Mismatch)
        );
        assert_eq!(ok("v1,g0hM9SsE", ID, "1614265330", BODY), Err(SigError::Mismatch));
        assert_eq!(ok("v1,", ID, "1614265330", BODY), Err(SigError::Mismatch));
        assert_eq!(
            ok("v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", ID, "1614265330", BODY),
            Err(SigError::Mismatch)
        );
        assert_eq!(ok("", ID, "1614265330", BODY), Err(SigError::Mismatch));
        let other = Secret::generate().unwrap();
        assert_eq!(verify(&other, SIGNATURE, ID, "1614265330", BODY, TS, 300), Err(SigError::Mismatch));
    }

    #[test]
    fn the_timestamp_must_be_near_now() {
        let s = secret();
        let at = |now: i64| verify(&s, SIGNATURE, ID, "1614265330", BODY, now, 300);
        assert_eq!(at(TS + 300), Ok(()));
        assert_eq!(at(TS - 300), Ok(()));
        assert_eq!(at(TS + 301), Err(SigError::Stale { skew: -301, tolerance: 300 }));
        assert_eq!(at(TS - 301), Err(SigError::Stale { skew: 301, tolerance: 300 }));
        for bad in ["", "hello", "-1614265330", "1614265330.0"] {
            assert_eq!(verify(&s, SIGNATURE, ID, bad, BODY, TS, 300), Err(SigError::Timestamp(bad.into())));
        }
    }

    #[test]
    fn a_rotation_header_verifies_with_either_secret() {
        let old = secret();
        let new = Secret::generate().unwrap();
        let header = signature_header(&[new.clone(), old.clone()], ID, TS, BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], SIGNATURE);
        for s in [&old, &new] {
            assert_eq!(verify(s, &header, ID, "1614265330", BODY, TS, 300), Ok(()));
        }
        // Other versions beside ours are passed over, as the spec's example
        // header with a `v1a` signature shows.
        let mixed = format!("v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5Bdq== {SIGNATURE}");
        assert_eq!(verify(&old, &mixed, ID, "1614265330", BODY, TS, 300), Ok(()));
        assert_eq!(signature_header(&[], ID, TS, BODY), "");
    }

    #[test]
    fn bodies_are_bytes_not_text() {
        let s = Secret::generate().unwrap();
        let body = b"\xff\xfe not UTF-8 \x00";
        let header = sign(&s, "msg_1", 1_700_000_000, body);
        assert_eq!(verify(&s, &header, "msg_1", "1700000000", body, 1_700_000_000, 0), Ok(()));
    }

    #[test]
    fn secrets_parse_serialize_and_stay_out_of_debug() {
        let s = Secret::generate().unwrap();
        let whsec = s.to_whsec();
        assert!(whsec.starts_with("whsec_"));
        let again = Secret::parse(&whsec).unwrap();
        assert_eq!(again.to_whsec(), whsec);
        assert_eq!(sign(&again, ID, TS, BODY), sign(&s, ID, TS, BODY));
        assert_ne!(Secret::generate().unwrap().to_whsec(), whsec);

        let debug = format!("{s:?}");
        assert_eq!(debug, "Secret(whsec_…, 32 bytes)");
        assert!(!debug.contains(&whsec[6..]));
        assert!(!format!("{:?}", secret()).contains("MfKQ9r8"));

        // Without the prefix, as the reference libraries also accept.
        assert_eq!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap().to_whsec(), SECRET);
        assert_eq!(Secret::parse("whsec_dG9vc2hvcnQ=").err(), Some(SigError::Secret));
        assert_eq!(Secret::parse("whsec_not base64").err(), Some(SigError::Secret));
        assert_eq!(Secret::parse("").err(), Some(SigError::Secret));
        assert!(Secret::from_key(&[1; 64]).is_ok());
        assert_eq!(Secret::from_key(&[1; 65]).err(), Some(SigError::Secret));
        assert_eq!(Secret::from_key(&[1; 23]).err(), Some(SigError::Secret));
    }
}
