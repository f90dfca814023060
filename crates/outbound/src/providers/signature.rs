//! Whether a provider webhook really comes from the provider: the pure
//! checks `POST /v1/webhooks/{provider}` runs before it parses a body.
//! Each follows its provider's own documentation (named on the function):
//!
//! - Amazon SNS (SES notifications): an RSA signature over the message's
//!   fields, with a certificate fetched from an allowed host (`sns.rs`,
//!   re-exported here).
//! - SendGrid: ECDSA P-256 over the timestamp header and the body.
//! - Mailgun: HMAC-SHA256 over the timestamp and token in the payload.
//! - Postmark and SparkPost sign nothing: HTTP basic auth, a bearer token or
//!   a secret header value the user configured on both sides.
//!
//! Pure: bytes, keys and `now` in, a verdict out. No network (the endpoint
//! fetches the SNS certificate), no database (the endpoint refuses a
//! replayed Mailgun token by remembering it), no clock. A refusal is a
//! [`SigError`] saying what was wrong, never what a secret is.

use data_encoding::{BASE64, BASE64_NOPAD, HEXLOWER_PERMISSIVE};
use hmac::{Hmac, KeyInit, Mac};
use p256::ecdsa::signature::MultipartVerifier;
use p256::ecdsa::{Signature as EcdsaSignature, VerifyingKey as EcdsaKey};
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use super::sns::{
    DEFAULT_SNS_CERT_HOSTS, sns_cert_url_allowed, sns_signing_cert_url, sns_string_to_sign, verify_sns,
};

/// Why a webhook's signature or credentials were refused. The words name
/// the field or header at fault; no variant carries a key or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// A field the signature covers is absent, or is not text.
    #[error("the {0} field is missing or is not a string")]
    MissingField(&'static str),
    /// An SNS `Type` whose string to sign AWS does not document.
    #[error(
        "SNS message type {0:?} is not Notification, SubscriptionConfirmation or UnsubscribeConfirmation"
    )]
    SnsType(String),
    /// An SNS `SignatureVersion` other than 1 (RSA-SHA1) or 2 (RSA-SHA256).
    #[error("SNS SignatureVersion {0:?} is not supported (1 is RSA-SHA1, 2 is RSA-SHA256)")]
    SnsVersion(String),
    /// An SNS `SigningCertURL` that is not https on an allowed host.
    #[error("the signing certificate URL {0:?} is not https on an allowed host")]
    CertUrl(String),
    /// The SNS signing certificate is not an X.509 certificate in PEM or DER.
    #[error("the signing certificate could not be read: {0}")]
    Certificate(String),
    /// A public key that is not the kind the provider signs with.
    #[error("the public key could not be read: {0}")]
    PublicKey(&'static str),
    /// A signature or key that is not in its documented encoding: what it
    /// is, then the encoding expected.
    #[error("the {0} is not {1}")]
    Encoding(&'static str, &'static str),
    /// No key, token or password is configured: nothing can match it.
    #[error("no {0} is configured")]
    NotConfigured(&'static str),
    /// A timestamp that is not a whole number of seconds since the epoch.
    #[error("the timestamp {0:?} is not a whole number of seconds since the epoch")]
    Timestamp(String),
    /// A timestamp further from now than the tolerance: `skew` is the
    /// timestamp minus now, in seconds (negative: in the past).
    #[error("the timestamp is {skew} s from now, beyond the {tolerance} s allowed")]
    Stale { skew: i64, tolerance: u64 },
    /// A Standard Webhooks secret that is not `whsec_` and base64 of 24 to
    /// 64 bytes.
    #[error("the secret is not `whsec_` followed by the base64 of 24 to 64 bytes")]
    Secret,
    /// The operating system gave no random bytes for a new secret.
    #[error("no random bytes for a new secret: {0}")]
    Random(String),
    /// Everything was readable, and the signature does not match.
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks a SendGrid Event Webhook request, as "Getting Started with the
/// Event Webhook Security Features" (SendGrid/Twilio docs, "Verify the
/// signature") documents it: SendGrid signs with ECDSA on P-256 and
/// SHA-256, over the `X-Twilio-Email-Event-Webhook-Timestamp` header's
/// bytes followed by the exact body bytes, and sends the DER signature in
/// base64 in `X-Twilio-Email-Event-Webhook-Signature`.
///
/// `public_key` is the verification key as the SendGrid console and
/// `GET /v3/user/webhooks/event/settings/signed` show it (base64 of the DER
/// SubjectPublicKeyInfo); a PEM `PUBLIC KEY` block is accepted too. The
/// body must be the bytes as received (SendGrid's own samples end lines in
/// CRLF). SendGrid documents no tolerance for the timestamp; the endpoint
/// may still refuse an old one with [`timestamp_fresh`].
pub fn verify_sendgrid(
    public_key: &str,
    signature_b64: &str,
    timestamp: &str,
    body: &[u8],
) -> Result<(), SigError> {
    let key = sendgrid_key(public_key)?;
    let der = decode_base64(signature_b64.trim())
        .ok_or(SigError::Encoding("X-Twilio-Email-Event-Webhook-Signature", "base64"))?;
    let signature = EcdsaSignature::from_der(&der)
        .map_err(|_| SigError::Encoding("X-Twilio-Email-Event-Webhook-Signature", "a DER ECDSA signature"))?;
    key.multipart_verify(&[timestamp.as_bytes(), body], &signature).map_err(|_| SigError::Mismatch)
}

/// Whether a configured SendGrid verification key can be read, so a bad
/// one is refused when the configuration loads rather than at the first
/// webhook (the same reading [`verify_sendgrid`] does).
pub fn check_sendgrid_public_key(public_key: &str) -> Result<(), SigError> {
    sendgrid_key(public_key).map(|_| ())
}

fn sendgrid_key(public_key: &str) -> Result<EcdsaKey, SigError> {
    // A PEM block: the base64 between its armour lines is the same DER.
    let b64: String = public_key
        .lines()
        .filter(|line| !line.trim_start().starts_with("-----"))
        .flat_map(|line| line.chars().filter(|c| !c.is_ascii_whitespace()))
        .collect();
    if b64.is_empty() {
        return Err(SigError::NotConfigured("SendGrid verification key"));
    }
    let der = decode_base64(&b64).ok_or(SigError::Encoding("SendGrid verification key", "base64"))?;
    EcdsaKey::from_public_key_der(&der)
        .map_err(|_| SigError::PublicKey("the SendGrid verification key is not a P-256 public key"))
}

/// Checks a Mailgun webhook's signature, as Mailgun's "Securing Webhooks"
/// (User Manual, Webhooks) documents it: the HMAC-SHA256, keyed with the
/// account's HTTP webhook signing key, of `timestamp` and `token`
/// concatenated with no separator, as hex, compared with `signature`. All
/// three come from the payload's `signature` object (or the legacy form's
/// fields). The comparison is constant-time.
///
/// The signature covers neither the body nor the event: a captured
/// request could be replayed with other events. Mailgun's advice, which the
/// endpoint follows, is to refuse a token already seen (it keeps the tokens
/// in the database) and a timestamp far from now ([`mailgun_fresh`]).
/// A subaccount's `parent-signature` is the same computation with the
/// parent account's key.
pub fn verify_mailgun(
    signing_key: &[u8],
    timestamp: &str,
    token: &str,
    signature_hex: &str,
) -> Result<(), SigError> {
    if signing_key.is_empty() {
        return Err(SigError::NotConfigured("Mailgun webhook signing key"));
    }
    let given = HEXLOWER_PERMISSIVE
        .decode(signature_hex.trim().as_bytes())
        .map_err(|_| SigError::Encoding("Mailgun signature", "hex"))?;
    let mut mac = hmac_sha256(signing_key).ok_or(SigError::Mismatch)?;
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    mac.verify_slice(&given).map_err(|_| SigError::Mismatch)
}

/// Whether a Mailgun `timestamp` is within `max_age_secs` of `now_secs`
/// (either side, for clocks that disagree). Mailgun's "Securing Webhooks"
/// leaves the window to the receiver and warns that its own delays can
/// make a real webhook late, so keep it generous (minutes, not seconds).
pub fn mailgun_fresh(timestamp: &str, now_secs: i64, max_age_secs: u64) -> bool {
    timestamp_fresh(timestamp, now_secs, max_age_secs)
}

/// Whether a timestamp in whole seconds since the epoch (Mailgun's
/// `timestamp`, SendGrid's `X-Twilio-Email-Event-Webhook-Timestamp`) is
/// within `max_age_secs` of `now_secs`, before or after. Anything that is
/// not such a number is not fresh.
pub fn timestamp_fresh(timestamp: &str, now_secs: i64, max_age_secs: u64) -> bool {
    unix_seconds(timestamp).is_some_and(|ts| check_skew(ts, now_secs, max_age_secs).is_ok())
}

/// Checks an `Authorization: Basic` header (RFC 7617) against the
/// configured user and password, in constant time. Postmark (its Webhooks
/// API's `HttpAuth` username and password, or credentials in the webhook
/// URL) and SparkPost (its Webhooks API's `auth_type` `basic` with
/// `auth_credentials`) authenticate their webhooks this way or not at all:
/// they sign nothing. Configured credentials that are both empty never
/// match.
pub fn check_basic(header: Option<&str>, user: &str, password: &str) -> bool {
    if user.is_empty() && password.is_empty() {
        return false;
    }
    let Some(given) = header.and_then(|h| credentials(h, "basic")).and_then(decode_base64) else {
        return false;
    };
    ct_eq(&given, format!("{user}:{password}").as_bytes())
}

/// Checks an `Authorization: Bearer` header (RFC 6750) against the
/// configured token, in constant time: SparkPost's `oauth2` webhook
/// authentication (its Webhooks API's `auth_type` `oauth2`: SparkPost gets
/// a token from the user's token URL, `auth_request_details`, and sends it
/// as a bearer token), or a token the user set on both sides. An empty
/// configured token never matches.
pub fn check_bearer(header: Option<&str>, token: &str) -> bool {
    if token.is_empty() {
        return false;
    }
    header
        .and_then(|h| credentials(h, "bearer"))
        .is_some_and(|given| ct_eq(given.as_bytes(), token.as_bytes()))
}

/// Checks the value of a header the user configured with a secret (a
/// Postmark webhook's custom header, its Webhooks API's `HttpHeaders`),
/// exactly and in constant time. An empty configured value never matches.
pub fn check_header_value(value: Option<&str>, expected: &str) -> bool {
    !expected.is_empty() && value.is_some_and(|v| ct_eq(v.as_bytes(), expected.as_bytes()))
}

/// The credentials of an `Authorization` header with the given scheme
/// (matched in any case, as RFC 9110 says schemes are).
fn credentials<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.trim().split_once([' ', '\t'])?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// Constant-time equality that does not leak the length either: both sides
/// are hashed to 32 bytes first.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

/// HMAC-SHA256 keyed with `key`. HMAC takes a key of any length, so this
/// is never `None`; the trait's signature only allows for it.
pub(crate) fn hmac_sha256(key: &[u8]) -> Option<Hmac<Sha256>> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()
}

/// Standard base64 (RFC 4648 §4), with or without its padding.
pub(crate) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    BASE64.decode(s.as_bytes()).or_else(|_| BASE64_NOPAD.decode(s.as_bytes())).ok()
}

/// Whole seconds since the epoch: ASCII digits only (no sign, no
/// fraction), surrounding space allowed.
pub(crate) fn unix_seconds(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `ts` within `tolerance` seconds of `now`, either side.
pub(crate) fn check_skew(ts: i64, now: i64, tolerance: u64) -> Result<(), SigError> {
    let skew = i128::from(ts) - i128::from(now);
    if skew.unsigned_abs() <= u128::from(tolerance) {
        Ok(())
    } else {
        let skew = i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX });
        Err(SigError::Stale { skew, tolerance })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webhooks/sendgrid");

    /// The signed samples of `sendgrid/sendgrid-nodejs` (see the folder's
    /// SOURCES.md): each row of `labels.jsonl` with a `signature` names
    /// the body file, its headers and SendGrid's public key.
    fn signed_samples() -> Vec<(String, Vec<u8>, serde_json::Value)> {
        let labels = std::fs::read_to_string(format!("{FIXTURES}/labels.jsonl")).unwrap();
        let mut out = Vec::new();
        for line in labels.lines().filter(|l| !l.trim().is_empty()) {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(sig) = row.get("signature") {
                let file = row["file"].as_str().unwrap().to_string();
                let body = std::fs::read(format!("{FIXTURES}/{file}")).unwrap();
                out.push((file, body, sig.clone()));
            }
        }
        out
    }

    fn check(sig: &serde_json::Value, body: &[u8]) -> Result<(), SigError> {
        verify_sendgrid(
            sig["public_key_b64_der"].as_str().unwrap(),
            sig["X-Twilio-Email-Event-Webhook-Signature"].as_str().unwrap(),
            sig["X-Twilio-Email-Event-Webhook-Timestamp"].as_str().unwrap(),
            body,
        )
    }

    #[test]
    fn sendgrids_own_signed_samples_verify_and_one_changed_byte_fails() {
        let samples = signed_samples();
        assert!(samples.len() >= 2, "expected the signed samples, found {}", samples.len());
        for (file, body, sig) in samples {
            assert_eq!(sig["expected_valid"], true, "{file}");
            assert_eq!(check(&sig, &body), Ok(()), "{file}");
            for at in [0, body.len() / 2, body.len() - 1] {
                let mut changed = body.clone();
                changed[at] ^= 0x01;
                assert_eq!(check(&sig, &changed), Err(SigError::Mismatch), "{file} byte {at}");
            }
            // The timestamp is signed too.
            let mut other_ts = sig.clone();
            other_ts["X-Twilio-Email-Event-Webhook-Timestamp"] = "1600000000".into();
            assert_eq!(check(&other_ts, &body), Err(SigError::Mismatch), "{file}");
            // CRLF turned into LF (a body re-read as text) no longer verifies.
            let lf: Vec<u8> = body.iter().copied().filter(|&b| b != b'\r').collect();
            if lf.len() != body.len() {
                assert_eq!(check(&sig, &lf), Err(SigError::Mismatch), "{file}");
            }
        }
    }

    #[test]
    fn a_key_of_our_own_signs_timestamp_then_body() {
        let signing = SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
        let der = signing.verifying_key().to_public_key_der().unwrap();
        let key_b64 = BASE64.encode(der.as_bytes());
        let body = br#"[{"email":"a@example.com","event":"delivered"}]"#;
        let mut signed = b"1700000000".to_vec();
        signed.extend_from_slice(body);
        let sig: EcdsaSignature = signing.sign(&signed);
        let sig_b64 = BASE64.encode(sig.to_der().as_bytes());

        assert_eq!(verify_sendgrid(&key_b64, &sig_b64, "1700000000", body), Ok(()));
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
            &key_b64[..64],
            &key_b64[64..]
        );
        assert_eq!(verify_sendgrid(&pem, &sig_b64, "1700000000", body), Ok(()));
        assert_eq!(verify_sendgrid(&key_b64, &sig_b64, "1700000001", body), Err(SigError::Mismatch));
        // A signature by another key.
        let other = SigningKey::from_bytes(&[9u8; 32].into()).unwrap();
        let other_sig: EcdsaSignature = other.sign(&signed);
        let other_b64 = BASE64.encode(other_sig.to_der().as_bytes());
        assert_eq!(verify_sendgrid(&key_b64, &other_b64, "1700000000", body), Err(SigError::Mismatch));
    }

    #[test]
    fn sendgrid_refuses_what_it_cannot_read() {
        let key = signed_samples()[0].2["public_key_b64_der"].as_str().unwrap().to_string();
        assert!(check_sendgrid_public_key(&key).is_ok());
        assert!(matches!(verify_sendgrid(&key, "not base64!", "1", b""), Err(SigError::Encoding(..))));
        assert!(matches!(verify_sendgrid(&key, "AAAA", "1", b""), Err(SigError::Encoding(..))));
        assert!(matches!(check_sendgrid_public_key("AAAA"), Err(SigError::PublicKey(_))));
        assert!(matches!(check_sendgrid_public_key("%%%"), Err(SigError::Encoding(..))));
        assert!(matches!(check_sendgrid_public_key("  "), Err(SigError::NotConfigured(_))));
    }

    /// Mailgun's example input from "Securing Webhooks", with a key of our
    /// own; the expected hex was computed independently with
    /// `printf %s "$timestamp$token" | openssl dgst -sha256 -hmac "$key"`.
    const MG_KEY: &[u8] = b"key-sluice-test-signing-key";
    const MG_TIMESTAMP: &str = "1770920772";
    const MG_TOKEN: &str = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123";
    const MG_SIGNATURE: &str = "ab93697e525e1aab2abf8a47bd06fe9fad93dc9353dddd29f7975d9275d17262";

    fn mailgun_sig(key: &[u8], ts: &str, token: &str) -> String {
        let mut mac = hmac_sha256(key).unwrap();
        mac.update(ts.as_bytes());
        mac.update(token.as_bytes());
        HEXLOWER_PERMISSIVE.encode(&mac.finalize().into_bytes())
    }

    #[test]
    fn mailgun_hmac_of_timestamp_and_token() {
        let good = mailgun_sig(MG_KEY, MG_TIMESTAMP, MG_TOKEN);
        assert_eq!(good, MG_SIGNATURE);
        assert_eq!(verify_mailgun(MG_KEY, MG_TIMESTAMP, MG_TOKEN, &good), Ok(()));
        assert_eq!(verify_mailgun(MG_KEY, MG_TIMESTAMP, MG_TOKEN, &good.to_uppercase()), Ok(()));
        assert_eq!(verify_mailgun(b"another key", MG_TIMESTAMP, MG_TOKEN, &good), Err(SigError::Mismatch));
        assert_eq!(verify_mailgun(MG_KEY, "1770920773", MG_TOKEN, &good), Err(SigError::Mismatch));
        assert_eq!(verify_mailgun(MG_KEY, MG_TIMESTAMP, "x", &good), Err(SigError::Mismatch));
        // A truncated signature, and no separator between the parts.
        assert_eq!(verify_mailgun(MG_KEY, MG_TIMESTAMP, MG_TOKEN, &good[..62]), Err(SigError::Mismatch));
        let moved = mailgun_sig(MG_KEY, "177092077", &format!("2{MG_TOKEN}"));
        assert_eq!(verify_mailgun(MG_KEY, MG_TIMESTAMP, MG_TOKEN, &moved), Ok(()));
        assert!(matches!(verify_mailgun(MG_KEY, MG_TIMESTAMP, MG_TOKEN, "zz"), Err(SigError::Encoding(..))));
        assert!(matches!(
            verify_mailgun(b"", MG_TIMESTAMP, MG_TOKEN, &good),
            Err(SigError::NotConfigured(_))
        ));
    }

    #[test]
    fn mailgun_freshness_both_ways() {
        let now = 1_770_920_772;
        assert!(mailgun_fresh("1770920772", now, 0));
        assert!(mailgun_fresh("1770920472", now, 300));
        assert!(!mailgun_fresh("1770920471", now, 300));
        assert!(mailgun_fresh("1770921072", now, 300));
        assert!(!mailgun_fresh("1770921073", now, 300));
        for bad in ["", "-5", "+1770920772", "1770920772.5", "soon", "99999999999999999999999"] {
            assert!(!mailgun_fresh(bad, now, u64::MAX), "{bad:?}");
        }
        assert!(timestamp_fresh("0", i64::MAX, u64::MAX));
        assert_eq!(check_skew(0, i64::MAX, 1), Err(SigError::Stale { skew: -i64::MAX, tolerance: 1 }));
    }

    #[test]
    fn basic_and_bearer_credentials() {
        let basic = format!("Basic {}", BASE64.encode(b"postmark:s3cret:with:colons"));
        assert!(check_basic(Some(&basic), "postmark", "s3cret:with:colons"));
        assert!(check_basic(Some(&basic.replace("Basic", "basic")), "postmark", "s3cret:with:colons"));
        assert!(!check_basic(Some(&basic), "postmark", "s3cret"));
        assert!(!check_basic(Some(&basic), "Postmark", "s3cret:with:colons"));
        assert!(!check_basic(Some(&basic.replace("Basic", "Bearer")), "postmark", "s3cret:with:colons"));
        assert!(!check_basic(None, "postmark", "s3cret:with:colons"));
        assert!(!check_basic(Some("Basic"), "postmark", "s3cret:with:colons"));
        assert!(!check_basic(Some("Basic !!!"), "postmark", "s3cret:with:colons"));
        let empty = format!("Basic {}", BASE64.encode(b":"));
        assert!(!check_basic(Some(&empty), "", ""));

        assert!(check_bearer(Some("Bearer tok-123"), "tok-123"));
        assert!(check_bearer(Some("  bearer   tok-123 "), "tok-123"));
        assert!(!check_bearer(Some("Bearer tok-1234"), "tok-123"));
        assert!(!check_bearer(Some("Basic tok-123"), "tok-123"));
        assert!(!check_bearer(Some("tok-123"), "tok-123"));
        assert!(!check_bearer(Some("Bearer "), ""));
        assert!(!check_bearer(None, "tok-123"));

        assert!(check_header_value(Some("v"), "v"));
        assert!(!check_header_value(Some("v "), "v"));
        assert!(!check_header_value(Some(""), ""));
        assert!(!check_header_value(None, "v"));
    }

    #[test]
    fn errors_say_what_without_secrets() {
        let e = verify_mailgun(MG_KEY, MG_TIMESTAMP, MG_TOKEN, "00").unwrap_err().to_string();
        assert_eq!(e, "the signature does not match");
        assert!(!e.contains("sluice-test"));
        assert_eq!(
            SigError::Stale { skew: -400, tolerance: 300 }.to_string(),
            "the timestamp is -400 s from now, beyond the 300 s allowed"
        );
    }
}
