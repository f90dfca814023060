//! Sender authentication against DNS answers put in the authenticator's
//! cache beforehand (the name server it is given answers nothing): a
//! DKIM-signed message from an address the SPF policy permits passes
//! everything; a changed body fails DKIM; another address fails SPF, and
//! with no aligned pass a domain publishing `p=reject` gives the heavy
//! DMARC signal; a name server that is down or silent gives `temperror`
//! within the budget.

use std::time::{Duration, Instant};

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dmarc::Dmarc as DmarcRecord;
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::spf::Spf as SpfRecord;
use mail_auth::{DnsError, Error, Txt};
use route::authenticate::Authenticator;
use spam::auth::{Arc, AuthResults, Dkim, Dmarc, DmarcPolicy, Spf};

const TTL: Duration = Duration::from_secs(600);
/// Nothing answers DNS here: every look-up the cache does not hold fails.
const NO_DNS: &str = "127.0.0.1:9";
const PERMITTED: &str = "192.0.2.1:40000";
const ELSEWHERE: &str = "198.51.100.9:40000";

fn message() -> Vec<u8> {
    b"From: News <news@example.org>\r\n\
      To: ann@isp.test\r\n\
      Subject: This week\r\n\
      Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n\
      Message-ID: <1@example.org>\r\n\
      \r\n\
      Hello Ann,\r\nthe news of the week.\r\n"
        .to_vec()
}

/// `content` with a DKIM signature of example.org (selector `sel`), and
/// the authenticator knowing example.org's SPF, key and DMARC policy.
fn signed(auth: &Authenticator, content: &[u8]) -> Vec<u8> {
    let key = deliver::dkim::generate("example.org", "sel", deliver::dkim::Algorithm::Ed25519Sha256)
        .expect("a key");
    let mut keys = deliver::dkim::DkimKeys::default();
    keys.insert_pem("example.org", "sel", key.private_key_pem.as_bytes()).expect("the key loads");
    let header = keys.sign("example.org", content).expect("signed");
    let domain_key = DomainKey::parse(key.dns_value.as_bytes()).expect("a key record");
    auth.caches().txt_add("sel._domainkey.example.org", domain_key, TTL);
    [header.as_bytes(), content].concat()
}

fn authenticator() -> Authenticator {
    let auth = Authenticator::new(&[NO_DNS.to_string()], "mx.isp.test").expect("an authenticator");
    let caches = auth.caches();
    let spf = SpfRecord::parse(b"v=spf1 ip4:192.0.2.0/24 -all").expect("an SPF record");
    caches.txt_add("example.org", spf, TTL);
    let dmarc = DmarcRecord::parse(b"v=DMARC1; p=reject").expect("a DMARC record");
    caches.txt_add("_dmarc.example.org", dmarc, TTL);
    // The DMARC tree walk asks the top-level domain too: it has none.
    let nx = Txt::Error(Error::Dns(DnsError::RecordNotFound(ResponseCode::NXDomain)));
    caches.txt_add("_dmarc.org", nx, TTL);
    auth
}

fn signal_names(r: &AuthResults) -> Vec<(String, f64)> {
    spam::auth::signals(r).into_iter().map(|s| (s.name, s.score)).collect()
}

#[tokio::test]
async fn a_signed_message_from_a_permitted_address_passes_everything() {
    let auth = authenticator();
    let content = signed(&auth, &message());
    let r = auth.check(&content, PERMITTED, "mail.example.org", "news@example.org").await;
    assert_eq!(
        (r.spf, r.dkim, r.dmarc, r.dmarc_policy, r.arc),
        (Spf::Pass, Dkim::Pass, Dmarc::Pass, DmarcPolicy::Reject, Arc::None)
    );
    assert_eq!(r.dkim_domain.as_deref(), Some("example.org"));
    assert_eq!(r.header_from.as_deref(), Some("example.org"));
    assert_eq!(r.smtp_mailfrom.as_deref(), Some("news@example.org"));
    let header = spam::auth::authentication_results(&r);
    assert!(header.starts_with("mx.isp.test;"), "{header}");
    for part in [
        "spf=pass smtp.mailfrom=news@example.org",
        "dkim=pass header.d=example.org",
        "dmarc=pass header.from=example.org policy.dmarc=reject",
    ] {
        assert!(header.contains(part), "{part} in {header}");
    }
    let names: Vec<String> = signal_names(&r).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["SPF_PASS", "DKIM_VALID"]);
}

#[tokio::test]
async fn a_changed_body_fails_dkim() {
    let auth = authenticator();
    let mut content = signed(&auth, &message());
    let at = content.windows(4).position(|w| w == b"news").expect("the body");
    let body_at = content.windows(4).rposition(|w| w == b"news").expect("the body's word");
    assert!(body_at > at);
    content[body_at..body_at + 4].copy_from_slice(b"NEWS");
    let r = auth.check(&content, PERMITTED, "mail.example.org", "news@example.org").await;
    assert_eq!(r.dkim, Dkim::Fail);
    assert_eq!(r.dkim_domain.as_deref(), Some("example.org"));
    // SPF still aligns.
    assert_eq!((r.spf, r.dmarc), (Spf::Pass, Dmarc::Pass));
    assert!(signal_names(&r).iter().any(|(n, _)| n == "DKIM_INVALID"));
}

#[tokio::test]
async fn another_address_fails_spf_and_unaligned_mail_fails_a_reject_policy() {
    let auth = authenticator();
    let r = auth.check(&message(), ELSEWHERE, "bulk.example.net", "news@example.org").await;
    assert_eq!(
        (r.spf, r.dkim, r.dmarc, r.dmarc_policy),
        (Spf::Fail, Dkim::None, Dmarc::Fail, DmarcPolicy::Reject)
    );
    let signals = signal_names(&r);
    assert!(signals.contains(&("SPF_FAIL".to_string(), 0.9)), "{signals:?}");
    assert!(signals.contains(&("DMARC_REJECT".to_string(), 3.0)), "{signals:?}");
    let header = spam::auth::authentication_results(&r);
    assert!(header.contains("dmarc=fail header.from=example.org policy.dmarc=reject"), "{header}");
}

#[tokio::test]
async fn a_null_sender_is_checked_by_its_helo_name() {
    let auth = authenticator();
    let spf = SpfRecord::parse(b"v=spf1 ip4:192.0.2.1 -all").expect("an SPF record");
    auth.caches().txt_add("mail.example.org", spf, TTL);
    // Relaxed alignment asks for mail.example.org's organizational domain.
    let nx = Txt::Error(Error::Dns(DnsError::RecordNotFound(ResponseCode::NXDomain)));
    auth.caches().txt_add("_dmarc.mail.example.org", nx, TTL);
    let r = auth.check(&message(), PERMITTED, "mail.example.org", "").await;
    assert_eq!(r.spf, Spf::Pass);
    assert_eq!(r.smtp_mailfrom.as_deref(), Some("mail.example.org"));
    assert_eq!(r.dmarc, Dmarc::Pass, "aligned with the From domain, relaxed");
}

#[tokio::test]
async fn dns_down_is_a_temperror_and_no_signal() {
    let budget = Duration::from_millis(1500);
    let auth = Authenticator::new(&[NO_DNS.to_string()], "mx.isp.test").expect("an authenticator");
    let auth = auth.with_budget(budget);
    let started = Instant::now();
    let r = auth.check(&message(), PERMITTED, "mail.example.org", "news@example.org").await;
    assert!(started.elapsed() < budget + Duration::from_millis(500), "{:?}", started.elapsed());
    assert!(budget <= route::authenticate::BUDGET);
    assert_eq!((r.spf, r.dmarc), (Spf::TempError, Dmarc::TempError));
    assert_eq!(signal_names(&r), Vec::<(String, f64)>::new());
}

#[tokio::test]
async fn a_silent_name_server_costs_the_budget_at_most() {
    // Takes questions and never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("a socket");
    let addr = silent.local_addr().expect("its address").to_string();
    let budget = Duration::from_millis(800);
    let auth = Authenticator::new(&[addr], "mx.isp.test").expect("an authenticator").with_budget(budget);
    let started = Instant::now();
    let r = auth.check(&message(), PERMITTED, "mail.example.org", "news@example.org").await;
    assert!(started.elapsed() < budget + Duration::from_millis(500), "{:?}", started.elapsed());
    assert_eq!((r.spf, r.dmarc), (Spf::TempError, Dmarc::TempError));
}
