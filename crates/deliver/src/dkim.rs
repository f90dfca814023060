//! DKIM signing of outbound mail (mail-auth), and key generation for
//! `sluice dkim generate`.
//!
//! Keys live in one directory, a subdirectory per signing domain and a PEM
//! file per selector: `<dir>/<domain>/<selector>.pem` (see [`key_path`]).
//! RSA keys may be PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`);
//! Ed25519 keys are PKCS#8. Every key of a domain signs, so a domain with an
//! RSA and an Ed25519 selector gets both signatures (RFC 8463 §4 dual
//! signing: receivers that do not know Ed25519 ignore that one).
//!
//! Signatures are relaxed/relaxed, except that mail-auth 0.13.3 computes the
//! relaxed body hash wrongly when the body ends in lines holding only spaces
//! or tabs (fixed upstream in 0.15, which needs a newer toolchain). For those
//! messages the body is canonicalized `simple` instead, so the message is
//! sent exactly as it was written and the signature still verifies anywhere.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// Headers signed when present. Names absent from a message are still
/// listed in `h=` by mail-auth, which stops anyone adding them later.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Sender",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
];

/// The RSA modulus for generated keys: what receivers universally accept and
/// what fits a DNS TXT record comfortably (RFC 8301 asks for 1024-4096).
pub const RSA_BITS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("invalid {what} {value:?}: letters, digits, '-', '_' and '.' only")]
    BadName { what: &'static str, value: String },
    #[error("key generation failed: {0}")]
    Generate(String),
}

/// A DKIM signature algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Algorithm {
    /// rsa-sha256: the default, verified by every receiver.
    #[default]
    RsaSha256,
    /// ed25519-sha256 (RFC 8463): small keys, but not every receiver checks it.
    Ed25519Sha256,
}

/// One signing key, ready to sign with either body canonicalization. The
/// key is parsed twice because mail-auth's signer owns its key.
enum Signers {
    Rsa { relaxed: Box<DkimSigner<RsaKey<Sha256>, Done>>, simple: Box<DkimSigner<RsaKey<Sha256>, Done>> },
    Ed25519 { relaxed: Box<DkimSigner<Ed25519Key, Done>>, simple: Box<DkimSigner<Ed25519Key, Done>> },
}

struct Selector {
    name: String,
    signers: Signers,
}

/// The signing keys, by domain.
#[derive(Default)]
pub struct DkimKeys {
    domains: HashMap<String, Vec<Selector>>,
}

impl fmt::Debug for DkimKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (domain, selectors) in &self.domains {
            m.entry(domain, &selectors.iter().map(|s| s.name.as_str()).collect::<Vec<_>>());
        }
        m.finish()
    }
}

/// Where the key of `domain`/`selector` lives under `dir`.
pub fn key_path(dir: &Path, domain: &str, selector: &str) -> Result<PathBuf, DkimError> {
    Ok(dir.join(check_name("domain", domain)?).join(format!("{}.pem", check_name("selector", selector)?)))
}

/// Names become path components and DNS labels: keep them plain.
pub fn check_name(what: &'static str, value: &str) -> Result<String, DkimError> {
    let value = value.trim_end_matches('.').to_ascii_lowercase();
    let ok = !value.is_empty()
        && !value.starts_with('.')
        && !value.contains("..")
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok { Ok(value) } else { Err(DkimError::BadName { what, value }) }
}

impl DkimKeys {
    /// Reads `<dir>/<domain>/<selector>.pem`. Other files are ignored; a PEM
    /// file that is not a usable key is an error naming it, so a bad key is
    /// found at startup rather than as unsigned mail.
    pub fn load(dir: &Path) -> Result<DkimKeys, DkimError> {
        let mut keys = DkimKeys::default();
        for (domain, selector, pem, path) in read_dir(dir)? {
            let signers = signers_from_pem(&pem, &domain, &selector)
                .map_err(|reason| DkimError::BadKey { path: path.clone(), reason })?;
            keys.domains.entry(domain).or_default().push(Selector { name: selector, signers });
        }
        Ok(keys)
    }

    /// Adds one key from PEM text (for tests and keys kept elsewhere).
    pub fn insert_pem(&mut self, domain: &str, selector: &str, pem: &[u8]) -> Result<(), DkimError> {
        let domain = check_name("domain", domain)?;
        let selector = check_name("selector", selector)?;
        let signers = signers_from_pem(pem, &domain, &selector).map_err(|reason| DkimError::BadKey {
            path: PathBuf::from(format!("{domain}/{selector}")),
            reason,
        })?;
        let list = self.domains.entry(domain).or_default();
        list.retain(|s| s.name != selector);
        list.push(Selector { name: selector, signers });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The `DKIM-Signature:` header(s), CRLF-terminated, to put in front of
    /// `content`; `None` when no key covers `from_domain` or signing failed.
    /// The key is the domain's own, else its nearest parent's (mail from
    /// `news.example.com` signed as `example.com` still aligns for DMARC).
    pub fn sign(&self, from_domain: &str, content: &[u8]) -> Option<String> {
        self.sign_parts(from_domain, &[content])
    }

    /// [`DkimKeys::sign`] for a message held in pieces, without joining
    /// them: header fields first (our trace header), then the message. Every
    /// part but the last must hold only whole header fields, and the body
    /// must lie in the last part; that is how mail-auth reads chained parts,
    /// and the shape [`crate::smtp::OutboundMessage::content`] has.
    pub fn sign_parts(&self, from_domain: &str, parts: &[&[u8]]) -> Option<String> {
        let domain = from_domain.trim_end_matches('.').to_ascii_lowercase();
        let mut name = domain.as_str();
        let selectors = loop {
            if let Some(s) = self.domains.get(name) {
                break s;
            }
            name = name.split_once('.')?.1;
            if !name.contains('.') {
                return None; // never sign with a key filed under a bare TLD
            }
        };
        let relaxed = relaxed_body_is_safe(parts.last().copied().unwrap_or_default());
        let mut headers = String::new();
        for selector in selectors {
            let signed = match (&selector.signers, relaxed) {
                (Signers::Rsa { relaxed, .. }, true) => relaxed.sign_chained(parts.iter().copied()),
                (Signers::Rsa { simple, .. }, false) => simple.sign_chained(parts.iter().copied()),
                (Signers::Ed25519 { relaxed, .. }, true) => relaxed.sign_chained(parts.iter().copied()),
                (Signers::Ed25519 { simple, .. }, false) => simple.sign_chained(parts.iter().copied()),
            };
            match signed {
                Ok(signature) => headers.push_str(&signature.to_header()),
                Err(e) => {
                    tracing::warn!(domain = %name, selector = %selector.name, error = %e, "DKIM signing failed");
                }
            }
        }
        (!headers.is_empty()).then_some(headers)
    }
}

/// A key file as [`read_dir`] finds it: domain, selector, PEM, path.
pub type KeyFile = (String, String, Vec<u8>, PathBuf);

/// Every `<dir>/<domain>/<selector>.pem`, in order; other files are ignored.
pub fn read_dir(dir: &Path) -> Result<Vec<KeyFile>, DkimError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DkimError::Io { path, source }
    };
    let mut found = Vec::new();
    let mut domains: Vec<_> = std::fs::read_dir(dir).map_err(io(dir))?.filter_map(|e| e.ok()).collect();
    domains.sort_by_key(|e| e.file_name());
    for entry in domains {
        let domain_dir = entry.path();
        let Some(domain) = entry.file_name().to_str().and_then(|d| check_name("domain", d).ok()) else {
            continue;
        };
        if !domain_dir.is_dir() {
            continue;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&domain_dir)
            .map_err(io(&domain_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pem"))
            .collect();
        files.sort();
        for path in files {
            let Some(selector) = path.file_stem().and_then(|s| s.to_str()) else { continue };
            let selector = check_name("selector", selector)?;
            let pem = std::fs::read(&path).map_err(io(&path))?;
            found.push((domain.clone(), selector, pem, path));
        }
    }
    Ok(found)
}

fn signers_from_pem(pem: &[u8], domain: &str, selector: &str) -> Result<Signers, String> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("not a PEM private key: {e}"))?;
    let build = |body| {
        let der = der.clone_key();
        match &der {
            PrivateKeyDer::Pkcs8(p8) => {
                if let Ok(key) = Ed25519Key::from_pkcs8_maybe_unchecked_der(p8.secret_pkcs8_der()) {
                    return Ok(Key::Ed25519(Box::new(signer(key, domain, selector, body))));
                }
                RsaKey::<Sha256>::from_key_der(der)
                    .map(|k| Key::Rsa(Box::new(signer(k, domain, selector, body))))
            }
            PrivateKeyDer::Pkcs1(_) => RsaKey::<Sha256>::from_key_der(der)
                .map(|k| Key::Rsa(Box::new(signer(k, domain, selector, body)))),
            _ => Err(mail_auth::Error::Crypto(mail_auth::common::crypto::CryptoError::Library(
                "only RSA and Ed25519 keys can sign DKIM".into(),
            ))),
        }
        .map_err(|e| format!("unusable key: {e}"))
    };
    match (build(Canonicalization::Relaxed)?, build(Canonicalization::Simple)?) {
        (Key::Rsa(relaxed), Key::Rsa(simple)) => Ok(Signers::Rsa { relaxed, simple }),
        (Key::Ed25519(relaxed), Key::Ed25519(simple)) => Ok(Signers::Ed25519 { relaxed, simple }),
        _ => Err("key parsed differently twice".into()),
    }
}

enum Key {
    Rsa(Box<DkimSigner<RsaKey<Sha256>, Done>>),
    Ed25519(Box<DkimSigner<Ed25519Key, Done>>),
}

fn signer<T: SigningKey>(
    key: T,
    domain: &str,
    selector: &str,
    body: Canonicalization,
) -> DkimSigner<T, Done> {
    DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(SIGNED_HEADERS.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(body)
}

/// False when the message ends in lines holding only spaces or tabs (after
/// the last line with text), the case mail-auth 0.13.3 hashes wrongly under
/// relaxed body canonicalization. Looks only at the trailing run of
/// whitespace, so it costs nothing on ordinary messages. Erring towards
/// `false` only costs some robustness (`simple` is always correct).
pub fn relaxed_body_is_safe(content: &[u8]) -> bool {
    let start = content.iter().rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')).map_or(0, |i| i + 1);
    let tail = &content[start..];
    // Within the trailing whitespace, everything after the first line break
    // belongs to lines without text; a space or tab there triggers the bug.
    match tail.iter().position(|&b| b == b'\n') {
        Some(nl) => !tail[nl + 1..].iter().any(|b| matches!(b, b' ' | b'\t')),
        None => true,
    }
}

/// The domain of the message's `From:` address, the one DMARC aligns
/// with and so the one to sign as. Reads the header section only.
pub fn from_domain(content: &[u8]) -> Option<String> {
    let message = mail_parser::MessageParser::new().parse_headers(content)?;
    let address = message.from()?.first()?.address()?;
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('>').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

/// A new key and the DNS record that publishes it.
pub struct GeneratedKey {
    pub domain: String,
    pub selector: String,
    /// PKCS#8 PEM, to save as [`key_path`]`(dir, domain, selector)`.
    pub private_key_pem: String,
    /// `<selector>._domainkey.<domain>`
    pub dns_name: String,
    /// `v=DKIM1; k=rsa; p=...`. An RSA-2048 value is longer than one
    /// 255-byte TXT string: DNS hosting panels split it themselves; in a
    /// zone file write it as several quoted strings (see [`txt_strings`]).
    pub dns_value: String,
}

impl GeneratedKey {
    /// Writes the private key to [`key_path`] under `dir` with mode 0600,
    /// creating the domain directory. An existing key is never overwritten:
    /// it may be the one published in DNS.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, DkimError> {
        use std::io::Write;
        let path = key_path(dir, &self.domain, &self.selector)?;
        let io = |source| DkimError::Io { path: path.clone(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(io)?;
        file.write_all(self.private_key_pem.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(path)
    }
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("dns_name", &self.dns_name)
            .field("dns_value", &self.dns_value)
            .finish_non_exhaustive()
    }
}

/// Generates a key for `domain`/`selector`. RSA-2048 uses the `rsa` crate
/// (ring cannot generate RSA keys); Ed25519 uses ring through mail-auth.
pub fn generate(domain: &str, selector: &str, algorithm: Algorithm) -> Result<GeneratedKey, DkimError> {
    let domain = check_name("domain", domain)?;
    let selector = check_name("selector", selector)?;
    let failed = |e: &dyn fmt::Display| DkimError::Generate(e.to_string());
    let (private_key_pem, public_der, k) = match algorithm {
        Algorithm::RsaSha256 => {
            let key = rsa::PrivateKey::new(&mut getrandom::SysRng, RSA_BITS).map_err(|e| failed(&e))?;
            let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| failed(&e))?;
            // SubjectPublicKeyInfo, the form OpenDKIM and others publish.
            let public = key.to_public_key().to_public_key_der().map_err(|e| failed(&e))?;
            (pem.to_string(), public.as_bytes().to_vec(), "rsa")
        }
        Algorithm::Ed25519Sha256 => {
            let der = Ed25519Key::generate_pkcs8().map_err(|e| failed(&e))?;
            let public = Ed25519Key::from_pkcs8_der(&der).map_err(|e| failed(&e))?.public_key();
            let pem = rsa::pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &der)
                .map_err(|e| failed(&e))?;
            (pem, public, "ed25519")
        }
    };
    let p = base64::engine::general_purpose::STANDARD.encode(public_der);
    Ok(GeneratedKey {
        private_key_pem,
        dns_name: format!("{selector}._domainkey.{domain}"),
        dns_value: format!("v=DKIM1; k={k}; p={p}"),
        domain,
        selector,
    })
}

/// A TXT value cut into the 255-byte strings a zone file needs.
pub fn txt_strings(value: &str) -> Vec<&str> {
    // The value is ASCII (tags and base64), so any byte offset is a boundary.
    value.as_bytes().chunks(255).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_whitespace_lines_choose_simple() {
        assert!(relaxed_body_is_safe(b"A: b\r\n\r\nhello\r\n"));
        assert!(relaxed_body_is_safe(b"A: b\r\n\r\nhello \t\r\n\r\n\r\n"), "trailing spaces on a text line");
        assert!(relaxed_body_is_safe(b"A: b\r\n\r\nhello\r\n \r\nworld\r\n"), "blank-ish line in the middle");
        assert!(!relaxed_body_is_safe(b"A: b\r\n\r\nhello\r\n \r\n"));
        assert!(!relaxed_body_is_safe(b"A: b\r\n\r\nhello\r\n\r\n\t\r\n\r\n"));
        assert!(!relaxed_body_is_safe(b"A: b\r\n\r\n  "));
        assert!(relaxed_body_is_safe(b""));
    }

    /// Pins the upstream bug the workaround exists for: when this fails after
    /// a mail-auth upgrade, relaxed bodies are right again and
    /// `relaxed_body_is_safe` can go.
    #[test]
    fn mail_auth_relaxed_body_bug_is_still_there() {
        use mail_auth::common::headers::Writable;
        let canonical = |body: &[u8]| {
            let mut out = Vec::new();
            Canonicalization::Relaxed.canonical_body(body, 0).write(&mut out);
            out
        };
        assert_eq!(canonical(b"hello  world \r\n\r\n"), b"hello world\r\n");
        // RFC 6376 §3.4.4 gives "hello\r\n"; 0.13.3 keeps an empty line.
        assert_ne!(canonical(b"hello\r\n \r\n"), b"hello\r\n");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("domain", "Example.COM.").is_ok_and(|d| d == "example.com"));
        for bad in ["", "../x", "a/b", ".hidden", "a..b", "sp ace"] {
            assert!(check_name("selector", bad).is_err(), "{bad:?}");
        }
        let p = key_path(Path::new("/keys"), "Example.com", "s1").unwrap();
        assert_eq!(p, Path::new("/keys/example.com/s1.pem"));
    }

    #[test]
    fn from_domain_reads_the_from_header() {
        let m = b"To: x@y.test\r\nFrom: \"Alice\" <alice@News.Example.COM>\r\n\r\nbody From: z@evil.test\r\n";
        assert_eq!(from_domain(m).as_deref(), Some("news.example.com"));
        assert_eq!(from_domain(b"From: alice@example.com\r\n\r\n").as_deref(), Some("example.com"));
        assert_eq!(from_domain(b"Subject: none\r\n\r\n"), None);
        assert_eq!(from_domain(b"From: undisclosed\r\n\r\n"), None);
    }

    #[test]
    fn txt_strings_split_at_255() {
        let v = "x".repeat(600);
        let parts = txt_strings(&v);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [255, 255, 90]);
    }
}
