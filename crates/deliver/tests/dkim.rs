//! DKIM round trips: generate a key, sign with it, and verify the signature
//! with mail-auth's verifier, the published TXT record fed to it through its
//! DNS cache so no network is needed.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use deliver::dkim::{Algorithm, DkimKeys, GeneratedKey, generate, key_path};
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt};

const MESSAGE: &[u8] = b"From: Alice <alice@example.com>\r\n\
To: bob@example.org\r\n\
Subject: Quarterly numbers\r\n\
Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n\
Message-ID: <1@example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hello Bob,\r\n\
\r\n\
the numbers  are\tin.\r\n";

/// TXT records by name, as mail-auth's verifier looks them up.
#[derive(Default)]
struct TxtCache(Mutex<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }
    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }
    fn insert(&self, key: Box<str>, value: Txt, _valid_until: Instant) {
        self.0.lock().unwrap().insert(key, value);
    }
}

impl TxtCache {
    fn publish(&self, key: &GeneratedKey) {
        let record = DomainKey::parse(key.dns_value.as_bytes()).expect("the TXT value parses");
        self.insert(format!("{}.", key.dns_name).into(), Txt::DomainKey(Arc::new(record)), Instant::now());
    }
}

/// RSA generation takes a moment even optimised: share one key per algorithm.
fn key(algorithm: Algorithm) -> &'static GeneratedKey {
    static RSA: OnceLock<GeneratedKey> = OnceLock::new();
    static ED: OnceLock<GeneratedKey> = OnceLock::new();
    let (cell, selector) = match algorithm {
        Algorithm::RsaSha256 => (&RSA, "rsa1"),
        Algorithm::Ed25519Sha256 => (&ED, "ed1"),
    };
    cell.get_or_init(|| generate("example.com", selector, algorithm).expect("key generation"))
}

async fn verify(cache: &TxtCache, signed: &[u8]) -> Vec<DkimResult> {
    let message = AuthenticatedMessage::parse(signed).expect("the signed message parses");
    // Built without contacting anyone; every lookup is answered by the cache.
    let authenticator = MessageAuthenticator::new_cloudflare().expect("resolver");
    authenticator
        .verify_dkim(Parameters::new(&message).with_txt_cache(cache))
        .await
        .iter()
        .map(|o| o.result().clone())
        .collect()
}

fn signed(keys: &DkimKeys, from_domain: &str, content: &[u8]) -> Vec<u8> {
    let header = keys.sign(from_domain, content).expect("a key covers the domain");
    assert!(header.starts_with("DKIM-Signature: ") && header.ends_with("\r\n"), "{header}");
    [header.as_bytes(), content].concat()
}

#[test]
fn generated_records_look_right() {
    let rsa = key(Algorithm::RsaSha256);
    assert_eq!(rsa.dns_name, "rsa1._domainkey.example.com");
    assert!(
        rsa.dns_value.starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"),
        "SPKI, 2048 bits"
    );
    assert!(rsa.private_key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let ed = key(Algorithm::Ed25519Sha256);
    assert!(ed.dns_value.starts_with("v=DKIM1; k=ed25519; p="));
    assert_eq!(ed.dns_value.len(), "v=DKIM1; k=ed25519; p=".len() + 44, "a raw 32-byte key");
    assert!(format!("{rsa:?}").contains("dns_name") && !format!("{rsa:?}").contains("PRIVATE"));
    assert!(generate("example.com", "../etc", Algorithm::Ed25519Sha256).is_err());
}

#[tokio::test]
async fn both_algorithms_verify_and_tampering_fails() {
    for algorithm in [Algorithm::RsaSha256, Algorithm::Ed25519Sha256] {
        let generated = key(algorithm);
        let selector = generated.dns_name.split('.').next().unwrap();
        let mut keys = DkimKeys::default();
        keys.insert_pem("example.com", selector, generated.private_key_pem.as_bytes()).unwrap();
        let cache = TxtCache::default();
        cache.publish(generated);

        let good = signed(&keys, "example.com", MESSAGE);
        let header = String::from_utf8_lossy(&good[..good.len() - MESSAGE.len()]).into_owned();
        assert!(header.contains("c=relaxed/relaxed"), "{header}");
        assert!(header.contains("d=example.com") && header.contains(&format!("s={selector}")), "{header}");
        assert_eq!(verify(&cache, &good).await, [DkimResult::Pass], "{algorithm:?}");

        let body_changed = String::from_utf8_lossy(&good).replace("Hello Bob", "Hello Eve");
        let r = verify(&cache, body_changed.as_bytes()).await;
        // mail-auth reports a body hash mismatch as neutral (RFC 6376 §6.1.3
        // leaves it to the verifier); either way it is not a pass.
        assert!(matches!(r[..], [DkimResult::Neutral(_) | DkimResult::Fail(_)]), "{algorithm:?}: {r:?}");
        let subject_changed = String::from_utf8_lossy(&good).replace("Quarterly", "Monthly");
        let r = verify(&cache, subject_changed.as_bytes()).await;
        assert!(matches!(r[..], [DkimResult::Fail(_)]), "{algorithm:?}: {r:?}");
        // In pieces, as the relay holds it: a trace header, then the message.
        let trace = b"Received: from a by b; Mon, 23 Nov 2026 12:00:00 +0000\r\n".as_slice();
        let header = keys.sign_parts("example.com", &[trace, MESSAGE]).unwrap();
        let pieces = [header.as_bytes(), trace, MESSAGE].concat();
        assert_eq!(verify(&cache, &pieces).await, [DkimResult::Pass], "{algorithm:?} in parts");
        // Relaxed canonicalization tolerates what relays commonly do.
        let rewrapped = String::from_utf8_lossy(&good).replace("Subject: Quarterly", "Subject:  Quarterly");
        assert_eq!(verify(&cache, rewrapped.as_bytes()).await, [DkimResult::Pass]);
    }
}

#[tokio::test]
async fn trailing_whitespace_lines_are_signed_with_simple_body() {
    let generated = key(Algorithm::Ed25519Sha256);
    let mut keys = DkimKeys::default();
    keys.insert_pem("example.com", "ed1", generated.private_key_pem.as_bytes()).unwrap();
    let cache = TxtCache::default();
    cache.publish(generated);
    let content = [MESSAGE, b"  \r\n\t\r\n"].concat();
    let good = signed(&keys, "example.com", &content);
    assert!(String::from_utf8_lossy(&good).contains("c=relaxed/simple"));
    assert!(good.ends_with(&content), "the message itself is not altered");
    assert_eq!(verify(&cache, &good).await, [DkimResult::Pass]);
    let trace = b"Received: from a by b; Mon, 23 Nov 2026 12:00:00 +0000\r\n".as_slice();
    let header = keys.sign_parts("example.com", &[trace, &content]).unwrap();
    assert!(header.contains("c=relaxed/simple"), "{header}");
    assert_eq!(verify(&cache, &[header.as_bytes(), trace, &content].concat()).await, [DkimResult::Pass]);
}

#[tokio::test]
async fn keys_load_from_a_directory_and_dual_sign() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = key(Algorithm::RsaSha256);
    let ed = key(Algorithm::Ed25519Sha256);
    // The RSA key as PKCS#1, the other form the loader accepts.
    let pkcs1 = {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        rsa::PrivateKey::from_pkcs8_pem(&rsa.private_key_pem)
            .unwrap()
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
            .to_string()
    };
    let path = key_path(dir.path(), "example.com", "rsa1").unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, pkcs1).unwrap();
    let saved = ed.save(dir.path()).unwrap();
    assert_eq!(saved, dir.path().join("example.com/ed1.pem"));
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(ed.save(dir.path()).is_err(), "an existing key is not overwritten");
    std::fs::write(dir.path().join("example.com/README"), "not a key").unwrap();
    let keys = DkimKeys::load(dir.path()).unwrap();
    let cache = TxtCache::default();
    cache.publish(rsa);
    cache.publish(ed);

    // A subdomain signs with its parent's keys: both of them.
    let good = signed(&keys, "News.Example.com", MESSAGE);
    assert_eq!(String::from_utf8_lossy(&good).matches("DKIM-Signature:").count(), 2);
    assert_eq!(verify(&cache, &good).await, [DkimResult::Pass, DkimResult::Pass]);
    assert!(keys.sign("example.org", MESSAGE).is_none());
    assert!(keys.sign("com", MESSAGE).is_none());

    std::fs::write(dir.path().join("example.com/broken.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap();
    let err = DkimKeys::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("broken.pem"), "{err}");
    assert!(DkimKeys::load(&dir.path().join("missing")).is_err());
}
