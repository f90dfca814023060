//! Amazon SNS message signatures, for SES notifications posted through an
//! SNS topic. Follows the Amazon SNS Developer Guide, "Verifying the
//! signatures of Amazon SNS messages" and its page "Verifying the signature
//! of an Amazon SNS message when using HTTP query-based requests": the
//! string to sign is each signed field's name and value, each followed by a
//! newline, in a fixed order that depends on `Type`; `SignatureVersion` 1
//! signs it with RSA PKCS#1 v1.5 over SHA-1, 2 over SHA-256; the key is in
//! the X.509 certificate at `SigningCertURL`.
//!
//! The guide asks that the certificate come over HTTPS from an AWS host and
//! be issued by SNS. Here that is the host check ([`sns_cert_url_allowed`]):
//! the endpoint fetches only an allowed https URL, through a client that
//! verifies the server's TLS certificate, so the certificate is the one
//! that host serves (the AWS SDKs' message validators trust it the same
//! way). The guide's advice to refuse an unexpected `TopicArn` is the
//! endpoint's, which knows the configured topics.
//!
//! Pure: the endpoint fetches the certificate and passes its bytes in.

use rsa::pkcs1v15;
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::Value;
use sha1::Sha1;
use sha2::Sha256;
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

use super::signature::{SigError, decode_base64};

/// The hosts an SNS signing certificate may come from unless configured
/// otherwise: SNS's regional endpoints (`sns.us-east-1.amazonaws.com`, ...).
/// The China regions (`sns.cn-north-1.amazonaws.com.cn`) and test servers
/// (`127.0.0.1:*`) are added by configuration.
pub const DEFAULT_SNS_CERT_HOSTS: [&str; 1] = ["sns.*.amazonaws.com"];

/// The fields a `Notification` signs, in order, and whether each must be
/// there ("Subject (if present)").
const NOTIFICATION: [(&str, bool); 6] = [
    ("Message", true),
    ("MessageId", true),
    ("Subject", false),
    ("Timestamp", true),
    ("TopicArn", true),
    ("Type", true),
];

/// The fields a `SubscriptionConfirmation` or `UnsubscribeConfirmation`
/// signs, in order; all of them must be there.
const CONFIRMATION: [(&str, bool); 7] = [
    ("Message", true),
    ("MessageId", true),
    ("SubscribeURL", true),
    ("Timestamp", true),
    ("Token", true),
    ("TopicArn", true),
    ("Type", true),
];

/// The bytes SNS signed for this message, as the Developer Guide's
/// "Verifying the signature of an Amazon SNS message when using HTTP
/// query-based requests" builds them: for a `Notification`, `Message`,
/// `MessageId`, `Subject` (only when present), `Timestamp`, `TopicArn` and
/// `Type`; for a `SubscriptionConfirmation` or `UnsubscribeConfirmation`,
/// `Message`, `MessageId`, `SubscribeURL`, `Timestamp`, `Token`, `TopicArn`
/// and `Type`; each as its name, a newline, its value (the JSON string
/// unescaped), a newline. A `Subject` of JSON `null` counts as absent, as
/// the AWS SDKs' validators treat it. Any other field is not signed.
pub fn sns_string_to_sign(msg: &Value) -> Result<Vec<u8>, SigError> {
    let fields: &[(&'static str, bool)] = match text(msg, "Type")? {
        "Notification" => &NOTIFICATION,
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &CONFIRMATION,
        other => return Err(SigError::SnsType(other.to_string())),
    };
    let mut out = Vec::with_capacity(256 + msg.get("Message").and_then(Value::as_str).map_or(0, str::len));
    for &(name, required) in fields {
        let value = match msg.get(name) {
            Some(Value::String(v)) => v,
            None | Some(Value::Null) if !required => continue,
            _ => return Err(SigError::MissingField(name)),
        };
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}

/// Whether `url` may be fetched as an SNS signing certificate: the Developer
/// Guide's "Always retrieve the signing certificate using HTTPS" and "Ensure
/// the SigningCertURL is from a trusted AWS domain", with the trusted hosts
/// given as patterns ([`DEFAULT_SNS_CERT_HOSTS`] unless configured).
///
/// The URL must be `https://` with a plain authority: a DNS name or IPv4
/// address of letters, digits, `-` and `.`, and an optional decimal port;
/// no user info (`user@`), no percent-escapes, no IPv6 literal, nothing a
/// URL parser might read another way. A pattern is `host[:port]`, matched
/// label by label without regard to case; a `*` label stands for exactly one
/// label (never a dot, never empty), so `sns.*.amazonaws.com` takes
/// `sns.eu-west-1.amazonaws.com` but not `sns.amazonaws.com` or
/// `sns.a.evil.amazonaws.com`, let alone `sns.x.amazonaws.com.evil.net`.
/// A pattern without a port allows only the default 443; `:*` allows any
/// port (`127.0.0.1:*` for a test server); `:8443` only that one.
pub fn sns_cert_url_allowed(url: &str, patterns: &[String]) -> bool {
    let Some((host, port)) = https_authority(url) else {
        return false;
    };
    patterns.iter().any(|p| pattern_matches(p, host, port))
}

/// The message's `SigningCertURL` when it may be fetched
/// ([`sns_cert_url_allowed`]), or why not.
pub fn sns_signing_cert_url<'a>(msg: &'a Value, patterns: &[String]) -> Result<&'a str, SigError> {
    let url = text(msg, "SigningCertURL")?;
    if sns_cert_url_allowed(url, patterns) { Ok(url) } else { Err(SigError::CertUrl(url.to_string())) }
}

/// Checks an SNS message's `Signature` against the certificate fetched from
/// its `SigningCertURL` (PEM, as SNS serves it, or DER), following the
/// Developer Guide's "Verifying the signatures of Amazon SNS messages":
/// `SignatureVersion` 1 is RSA PKCS#1 v1.5 with SHA-1 (`SHA1withRSA`), 2
/// the same with SHA-256 (`SHA256withRSA`); any other version is refused
/// before anything else is read. `Signature` is base64; the signed bytes
/// are [`sns_string_to_sign`]. The URL must already have passed
/// [`sns_cert_url_allowed`]: this function trusts the certificate it is
/// given and checks neither its issuer nor its dates.
pub fn verify_sns(msg: &Value, cert_pem: &[u8]) -> Result<(), SigError> {
    // SNS sends the version as a string; a number is read the same way
    // (the version is not itself signed, so this changes nothing).
    let version = match msg.get("SignatureVersion") {
        Some(Value::String(v)) => v.clone(),
        Some(other) => other.to_string(),
        None => return Err(SigError::MissingField("SignatureVersion")),
    };
    let sha256 = match version.as_str() {
        "1" => false,
        "2" => true,
        _ => return Err(SigError::SnsVersion(version)),
    };
    let signed = sns_string_to_sign(msg)?;
    let signature =
        decode_base64(text(msg, "Signature")?.trim()).ok_or(SigError::Encoding("SNS Signature", "base64"))?;
    let key = certificate_key(cert_pem)?;
    let signature = pkcs1v15::Signature::try_from(signature.as_slice()).map_err(|_| SigError::Mismatch)?;
    let checked = if sha256 {
        pkcs1v15::VerifyingKey::<Sha256>::new(key).verify(&signed, &signature)
    } else {
        pkcs1v15::VerifyingKey::<Sha1>::new(key).verify(&signed, &signature)
    };
    checked.map_err(|_| SigError::Mismatch)
}

/// The RSA public key of the first certificate in PEM (or of a DER one).
fn certificate_key(cert: &[u8]) -> Result<rsa::PublicKey, SigError> {
    let unreadable = |e: x509_cert::der::Error| SigError::Certificate(e.to_string());
    let cert = if cert.trim_ascii_start().starts_with(b"-----BEGIN") {
        Certificate::load_pem_chain(cert)
            .map_err(unreadable)?
            .into_iter()
            .next()
            .ok_or_else(|| SigError::Certificate("no certificate in the PEM".into()))?
    } else {
        Certificate::from_der(cert).map_err(unreadable)?
    };
    let spki = cert.tbs_certificate().subject_public_key_info().to_der().map_err(unreadable)?;
    rsa::PublicKey::from_public_key_der(&spki)
        .map_err(|_| SigError::PublicKey("the signing certificate's key is not an RSA key"))
}

/// A string field, or the error naming it.
fn text<'a>(msg: &'a Value, name: &'static str) -> Result<&'a str, SigError> {
    msg.get(name).and_then(Value::as_str).ok_or(SigError::MissingField(name))
}

/// The host and port (`None`: none given) of an `https://` URL whose
/// authority is plain (see [`sns_cert_url_allowed`]).
fn https_authority(url: &str) -> Option<(&str, Option<u16>)> {
    const SCHEME: &str = "https://";
    let head = url.get(..SCHEME.len())?;
    if !head.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &url[SCHEME.len()..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port_number(port)?)),
        None => (authority, None),
    };
    let plain =
        |label: &str| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    host.split('.').all(plain).then_some((host, port))
}

/// A port: 1 to 5 decimal digits, 1 to 65535.
fn port_number(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&p| p != 0)
}

fn pattern_matches(pattern: &str, host: &str, port: Option<u16>) -> bool {
    let pattern = pattern.trim();
    let (host_pattern, port_pattern) = match pattern.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (pattern, None),
    };
    let port = port.unwrap_or(443);
    let port_ok = match port_pattern {
        None => port == 443,
        Some("*") => true,
        Some(p) => port_number(p) == Some(port),
    };
    let mut wanted = host_pattern.split('.');
    let mut given = host.split('.');
    let labels_ok = loop {
        match (wanted.next(), given.next()) {
            (None, None) => break true,
            (Some(w), Some(g)) if w == "*" || w.eq_ignore_ascii_case(g) => {}
            _ => break false,
        }
    };
    port_ok && labels_ok && !host_pattern.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sns");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{DIR}/{name}")).unwrap()
    }

    fn message(name: &str) -> Value {
        serde_json::from_slice(&fixture(name)).unwrap()
    }

    fn defaults() -> Vec<String> {
        DEFAULT_SNS_CERT_HOSTS.iter().map(|s| s.to_string()).collect()
    }

    /// Signs `msg` with the fixture key through the `rsa` crate (the
    /// fixture files were signed by openssl instead).
    fn sign(mut msg: Value, version: &str) -> Value {
        msg["SignatureVersion"] = version.into();
        let pem = String::from_utf8(fixture("key.pem")).unwrap();
        let key = rsa::PrivateKey::from_pkcs8_pem(&pem).unwrap();
        let signed = sns_string_to_sign(&msg).unwrap();
        let sig = if version == "2" {
            pkcs1v15::SigningKey::<Sha256>::new(key).sign(&signed).to_vec()
        } else {
            pkcs1v15::SigningKey::<Sha1>::new(key).sign(&signed).to_vec()
        };
        msg["Signature"] = data_encoding::BASE64.encode(&sig).into();
        msg
    }

    #[test]
    fn the_documented_string_to_sign() {
        let n = message("notification-v1.json");
        let expected = "Message\n{\"notificationType\":\"Bounce\",\"bounce\":{\"bounceType\":\"Permanent\"}}\n\
                        second line é\n\
                        MessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n\
                        Subject\nMy First Message\n\
                        Timestamp\n2012-05-02T00:54:06.655Z\n\
                        TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n\
                        Type\nNotification\n";
        assert_eq!(String::from_utf8(sns_string_to_sign(&n).unwrap()).unwrap(), expected);

        let mut no_subject = n.clone();
        no_subject["Subject"] = Value::Null;
        let s = String::from_utf8(sns_string_to_sign(&no_subject).unwrap()).unwrap();
        assert!(!s.contains("Subject") && s.starts_with("Message\n") && s.ends_with("Type\nNotification\n"));

        let c = message("subscription-confirmation-v2.json");
        let s = String::from_utf8(sns_string_to_sign(&c).unwrap()).unwrap();
        let expected: String =
            ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
                .iter()
                .map(|name| format!("{name}\n{}\n", c[*name].as_str().unwrap()))
                .collect();
        assert_eq!(s, expected);
        assert!(s.contains("MyTopic.\nTo confirm"), "the Message's own newline stays as it is");
    }

    #[test]
    fn the_string_to_sign_refuses_what_it_cannot_build() {
        let n = message("notification-v1.json");
        let mut no_id = n.clone();
        no_id.as_object_mut().unwrap().remove("MessageId");
        assert_eq!(sns_string_to_sign(&no_id), Err(SigError::MissingField("MessageId")));
        let mut numeric = n.clone();
        numeric["Timestamp"] = 1.into();
        assert_eq!(sns_string_to_sign(&numeric), Err(SigError::MissingField("Timestamp")));
        let mut other = n.clone();
        other["Type"] = "Surprise".into();
        assert_eq!(sns_string_to_sign(&other), Err(SigError::SnsType("Surprise".into())));
        assert_eq!(sns_string_to_sign(&Value::Null), Err(SigError::MissingField("Type")));
        let mut c = message("subscription-confirmation-v2.json");
        c.as_object_mut().unwrap().remove("Token");
        assert_eq!(sns_string_to_sign(&c), Err(SigError::MissingField("Token")));
    }

    #[test]
    fn openssl_signed_messages_verify_v1_and_v2() {
        let cert = fixture("cert.pem");
        for name in [
            "notification-v1.json",
            "notification-v2.json",
            "notification-no-subject-v1.json",
            "subscription-confirmation-v2.json",
        ] {
            assert_eq!(verify_sns(&message(name), &cert), Ok(()), "{name}");
        }
    }

    #[test]
    fn a_changed_byte_or_another_key_fails() {
        let cert = fixture("cert.pem");
        for name in ["notification-v1.json", "notification-v2.json", "subscription-confirmation-v2.json"] {
            let msg = message(name);
            for field in ["Message", "MessageId", "Timestamp", "TopicArn"] {
                let mut changed = msg.clone();
                let mut value = changed[field].as_str().unwrap().as_bytes().to_vec();
                let last = value.len() - 1;
                value[last] ^= 0x01;
                changed[field] = String::from_utf8(value).unwrap().into();
                assert_eq!(verify_sns(&changed, &cert), Err(SigError::Mismatch), "{name} {field}");
            }
            let mut sig =
                data_encoding::BASE64.decode(msg["Signature"].as_str().unwrap().as_bytes()).unwrap();
            sig[10] ^= 0x80;
            let mut changed = msg.clone();
            changed["Signature"] = data_encoding::BASE64.encode(&sig).into();
            assert_eq!(verify_sns(&changed, &cert), Err(SigError::Mismatch), "{name} signature");
            assert_eq!(verify_sns(&msg, &fixture("other-cert.pem")), Err(SigError::Mismatch), "{name}");
        }
        // Adding a Subject the signer did not sign breaks it; fields that
        // are not signed (UnsubscribeURL) do not matter.
        let mut added = message("notification-no-subject-v1.json");
        added["Subject"] = "added".into();
        assert_eq!(verify_sns(&added, &cert), Err(SigError::Mismatch));
        let mut unsigned = message("notification-no-subject-v1.json");
        unsigned["UnsubscribeURL"] = "https://elsewhere.example/".into();
        assert_eq!(verify_sns(&unsigned, &cert), Ok(()));
    }

    #[test]
    fn the_version_decides_the_hash_and_others_are_refused() {
        let cert = fixture("cert.pem");
        let v1 = message("notification-v1.json");
        let mut as_v2 = v1.clone();
        as_v2["SignatureVersion"] = "2".into();
        assert_eq!(verify_sns(&as_v2, &cert), Err(SigError::Mismatch));
        for bad in ["3", "0", "", "1.0"] {
            let mut m = v1.clone();
            m["SignatureVersion"] = bad.into();
            assert_eq!(verify_sns(&m, &cert), Err(SigError::SnsVersion(bad.into())));
        }
        let mut number = v1.clone();
        number["SignatureVersion"] = 1.into();
        assert_eq!(verify_sns(&number, &cert), Ok(()));
        number["SignatureVersion"] = serde_json::json!(["1"]);
        assert_eq!(verify_sns(&number, &cert), Err(SigError::SnsVersion("[\"1\"]".into())));
        let mut none = v1.clone();
        none.as_object_mut().unwrap().remove("SignatureVersion");
        assert_eq!(verify_sns(&none, &cert), Err(SigError::MissingField("SignatureVersion")));
    }

    #[test]
    fn signed_here_with_the_rsa_crate_too() {
        let cert = fixture("cert.pem");
        let mut unsubscribe = message("subscription-confirmation-v2.json");
        unsubscribe["Type"] = "UnsubscribeConfirmation".into();
        for version in ["1", "2"] {
            let signed = sign(unsubscribe.clone(), version);
            assert_eq!(verify_sns(&signed, &cert), Ok(()), "v{version}");
        }
        // DER is accepted as well as PEM.
        let pem = String::from_utf8(cert).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = data_encoding::BASE64.decode(b64.as_bytes()).unwrap();
        assert_eq!(verify_sns(&sign(unsubscribe, "2"), &der), Ok(()));
    }

    #[test]
    fn unreadable_signatures_and_certificates() {
        let cert = fixture("cert.pem");
        let mut m = message("notification-v1.json");
        m["Signature"] = "not base64!".into();
        assert_eq!(verify_sns(&m, &cert), Err(SigError::Encoding("SNS Signature", "base64")));
        m.as_object_mut().unwrap().remove("Signature");
        assert_eq!(verify_sns(&m, &cert), Err(SigError::MissingField("Signature")));
        let m = message("notification-v1.json");
        assert!(matches!(verify_sns(&m, b"not a certificate"), Err(SigError::Certificate(_))));
        assert!(matches!(verify_sns(&m, b"-----BEGIN CERTIFICATE-----\n"), Err(SigError::Certificate(_))));
    }

    #[test]
    fn certificate_urls_by_pattern() {
        let d = defaults();
        let allowed = |url: &str| sns_cert_url_allowed(url, &d);
        assert!(allowed("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem"));
        assert!(allowed("https://SNS.EU-WEST-1.AmazonAWS.com/x.pem"));
        assert!(allowed("HTTPS://sns.eu-west-1.amazonaws.com:443/x.pem"));
        assert!(allowed("https://sns.eu-west-1.amazonaws.com"));
        for refused in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.amazonaws.com/x.pem",
            "https://sns.a.b.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.net/x.pem",
            "https://sns.us-east-1.amazonaws.com./x.pem",
            "https://evil.net/sns.us-east-1.amazonaws.com/x.pem",
            "https://evil.net?sns.us-east-1.amazonaws.com",
            "https://sns.us-east-1.amazonaws.com@evil.net/x.pem",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://evil.net\\@sns.us-east-1.amazonaws.com/x.pem",
            "https://evil.net\\.sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://sns.us-east-1.amazonaws.com:/x.pem",
            "https://sns.us-east-1.amazonaws.com:0443x/x.pem",
            "https://sns.us%2Deast-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com\t/x.pem",
            " https://sns.us-east-1.amazonaws.com/x.pem",
            "https://[::1]/x.pem",
            "https:///x.pem",
            "sns.us-east-1.amazonaws.com/x.pem",
            "",
        ] {
            assert!(!allowed(refused), "{refused:?}");
        }
        let test = vec!["127.0.0.1:*".to_string(), "certs.test:8443".to_string(), String::new()];
        assert!(sns_cert_url_allowed("https://127.0.0.1:38211/cert.pem", &test));
        assert!(sns_cert_url_allowed("https://127.0.0.1/cert.pem", &test));
        assert!(!sns_cert_url_allowed("http://127.0.0.1:38211/cert.pem", &test));
        assert!(!sns_cert_url_allowed("https://127.0.0.2:38211/cert.pem", &test));
        assert!(sns_cert_url_allowed("https://certs.test:8443/c.pem", &test));
        assert!(!sns_cert_url_allowed("https://certs.test/c.pem", &test));
        assert!(!sns_cert_url_allowed("https://certs.test:8444/c.pem", &test));
        assert!(!sns_cert_url_allowed("https://sns.us-east-1.amazonaws.com/x.pem", &[]));
        assert!(!sns_cert_url_allowed("https://a/x.pem", &[String::new()]));
    }

    #[test]
    fn the_certificate_url_of_a_message() {
        let m = message("notification-v1.json");
        let url = m["SigningCertURL"].as_str().unwrap();
        assert_eq!(sns_signing_cert_url(&m, &defaults()), Ok(url));
        assert_eq!(
            sns_signing_cert_url(&m, &["sns.*.example.com".to_string()]),
            Err(SigError::CertUrl(url.into()))
        );
        assert_eq!(
            sns_signing_cert_url(&Value::Null, &defaults()),
            Err(SigError::MissingField("SigningCertURL"))
        );
    }
}
