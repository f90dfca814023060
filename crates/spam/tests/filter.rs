//! The filter end to end on small self-written messages: training, the
//! training minimum, ranking, rules, the unsure band, per-user learning and
//! the header formats.

use spam::auth::{Arc, AuthResults, Dkim, Dmarc, DmarcPolicy, Spf};
use spam::bayes::{MemoryStore, Scope};
use spam::{Class, Counts, Filter, Model, TokenStore, learn_if_wrong, tokens, x_spam_status};

const HAM_WORDS: &[&str] = &[
    "meeting", "tomorrow", "agenda", "project", "review", "patch", "kernel", "build", "release", "notes",
    "thanks", "regards", "question", "debian", "package", "version", "config", "bugfix", "schedule", "lunch",
];
const SPAM_WORDS: &[&str] = &[
    "viagra",
    "cheap",
    "offer",
    "winner",
    "million",
    "dollars",
    "guaranteed",
    "casino",
    "lottery",
    "mortgage",
    "refinance",
    "limited",
    "bonus",
    "credit",
    "pharmacy",
    "discount",
    "unsubscribe",
    "investment",
    "prize",
    "free",
];

/// A small deterministic generator, so tests need no randomness crate.
fn pick<'a>(words: &[&'a str], seed: usize, n: usize) -> Vec<&'a str> {
    (0..n).map(|i| words[(seed * 7 + i * 13 + (seed * i) % 5) % words.len()]).collect()
}

fn message(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: user@example.org\r\nSubject: {subject}\r\nDate: Tue, 3 Dec 2024 10:00:00 +0000\r\n\
         Message-ID: <{}@example.net>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{body}\r\n",
        subject.len() * 31 + body.len()
    )
    .into_bytes()
}

fn ham(i: usize) -> Vec<u8> {
    let body = pick(HAM_WORDS, i, 30).join(" ");
    message("Alice Dev <alice@lists.example.org>", &format!("Re: {} {}", HAM_WORDS[i % 20], i), &body)
}

fn spam_msg(i: usize) -> Vec<u8> {
    let body = format!("{} http://offers{}.example.biz/deal", pick(SPAM_WORDS, i, 30).join(" "), i % 3);
    message("Best Deals <deals@promo.example.biz>", &format!("{} {}", SPAM_WORDS[i % 20], i), &body)
}

/// Counts trained on `n_ham` hams and `n_spam` spams.
fn trained(n_ham: usize, n_spam: usize) -> Counts {
    let mut c = Counts::default();
    for i in 0..n_ham {
        c.add(&tokens::tokenize_bytes(&ham(i)), false, 1);
    }
    for i in 0..n_spam {
        c.add(&tokens::tokenize_bytes(&spam_msg(i)), true, 1);
    }
    c
}

fn bayes_prob(f: &Filter, raw: &[u8]) -> Option<f64> {
    f.model.classify(&tokens::tokenize_bytes(raw), &f.params).map(|b| b.prob)
}

#[test]
fn trained_model_ranks_spam_above_ham() {
    let f = Filter::new(Model::new(trained(150, 150)));
    let none = AuthResults::default();
    // Messages not in the training set.
    let (h, s) = (ham(1000), spam_msg(1000));
    let (ph, ps) = (bayes_prob(&f, &h).unwrap(), bayes_prob(&f, &s).unwrap());
    assert!(ph < 0.1 && ps > 0.9, "ham {ph} spam {ps}");
    let (vh, vs) = (f.score(&h, &none), f.score(&s, &none));
    assert!(vs.score > vh.score);
    assert_eq!(vh.class, Class::Ham);
    assert_eq!(vs.class, Class::Spam);
    assert!(vs.is_spam && !vh.is_spam);
    assert!(vs.signals.iter().any(|s| s.name.starts_with("BAYES_9")), "{:?}", vs.signals);
}

#[test]
fn below_the_training_minimum_bayes_is_silent() {
    // 150 messages in all: under the 200 minimum.
    let f = Filter::new(Model::new(trained(75, 75)));
    assert!(!f.model.is_ready(&f.params));
    let v = f.score(&spam_msg(1000), &AuthResults::default());
    assert!(v.signals.iter().all(|s| !s.name.starts_with("BAYES")), "{:?}", v.signals);
    // Plenty in all, but too few spam.
    let f = Filter::new(Model::new(trained(300, 20)));
    assert!(!f.model.is_ready(&f.params));
    let f = Filter::new(Model::new(trained(100, 100)));
    assert!(f.model.is_ready(&f.params));
}

#[test]
fn rules_fire_on_a_crafted_message() {
    let raw = b"From: \"support@bank.example.com\" <x@elsewhere.example>\r\n\
        To: a@example.org\r\nSubject: URGENT ACCOUNT NOTICE\r\n\
        Received: from 10.1.2.3 (unknown [0.1.2.3]) by mx.example.org; Tue, 3 Dec 2024 10:00:00 +0000\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/html\r\n\r\n<html><img src=\"http://1.2.3.4/a.gif\"></html>\r\n\
        --b\r\nContent-Type: application/octet-stream; name=invoice.pdf.exe\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b--\r\n";
    let f = Filter::new(Model::default());
    let v = f.score(raw, &AuthResults::default());
    let names: Vec<&str> = v.signals.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "MISSING_DATE",
        "MISSING_MID",
        "SUBJ_ALL_CAPS",
        "FROM_NAME_ADDR_DIFF",
        "RCVD_ILLEGAL_IP",
        "RCVD_NUMERIC_HELO",
        "SUSPICIOUS_ATTACHMENT",
        "MIME_HTML_ONLY",
        "HTML_IMAGE_ONLY",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // A well-formed message fires none of these.
    let v = f.score(&ham(1), &AuthResults::default());
    assert!(v.signals.is_empty(), "{:?}", v.signals);
    assert_eq!(v.class, Class::Ham);
}

#[test]
fn rules_file_errors_are_reported() {
    assert!(
        spam::Rules::parse("[[rule]]\nname='X'\nscore=1.0\ncheck='nope'\ndescribe=''\nsource=''\n").is_err()
    );
    assert!(
        spam::Rules::parse("[[rule]]\nname='X'\nscore=1.0\ncheck='date_in_future'\ndescribe=''\nsource=''\n")
            .is_err()
    );
    assert!(!spam::Rules::builtin().rules.is_empty());
}

#[test]
fn unsure_band_and_thresholds() {
    let f = Filter::new(Model::default());
    let sig = |score: f64| vec![spam::Signal::new("T", score, String::new())];
    assert_eq!(f.verdict(sig(2.9)).class, Class::Ham);
    assert_eq!(f.verdict(sig(3.0)).class, Class::Unsure);
    assert!(!f.verdict(sig(4.9)).is_spam);
    assert_eq!(f.verdict(sig(5.0)).class, Class::Spam);
    // Bayes points: 0 at p = 0.5, the configured ends at 0 and 1.
    assert_eq!(f.bayes_points.points(0.5), 0.0);
    assert_eq!(f.bayes_points.points(1.0), f.bayes_points.spam);
    assert_eq!(f.bayes_points.points(0.0), f.bayes_points.ham);
}

#[test]
fn auth_results_are_signals_and_a_header() {
    let a = AuthResults {
        authserv_id: "mx.example.org".into(),
        spf: Spf::Fail,
        smtp_mailfrom: Some("bounce@example.com".into()),
        dkim: Dkim::Fail,
        dkim_domain: Some("example.com".into()),
        dmarc: Dmarc::Fail,
        dmarc_policy: DmarcPolicy::Reject,
        header_from: Some("example.com".into()),
        arc: Arc::None,
    };
    let names: Vec<String> = spam::auth::signals(&a).into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["SPF_FAIL", "DKIM_INVALID", "DMARC_REJECT"]);
    let h = spam::auth::authentication_results(&a);
    assert_eq!(
        h,
        "mx.example.org;\r\n\tspf=fail smtp.mailfrom=bounce@example.com;\r\n\tdkim=fail header.d=example.com;\r\n\t\
         dmarc=fail header.from=example.com policy.dmarc=reject;\r\n\tarc=none"
    );
    let odd = AuthResults { smtp_mailfrom: Some("a b\"c@x".into()), ..Default::default() };
    assert!(spam::auth::authentication_results(&odd).contains("smtp.mailfrom=\"a b\\\"c@x\""));
    assert!(spam::auth::signals(&AuthResults::default()).is_empty());
}

#[test]
fn status_header_and_json() {
    let f = Filter::new(Model::new(trained(150, 150)));
    let mut v = f.score(&spam_msg(2000), &AuthResults::default());
    v.signals.push(spam::Signal::new("MISSING_DATE", 1.0, String::new()));
    v = f.verdict(v.signals);
    let h = x_spam_status(&v, f.required);
    assert!(h.starts_with(&format!("Yes, score={:.1} required=5.0 class=spam tests=BAYES_", v.score)), "{h}");
    assert!(h.ends_with(",MISSING_DATE"), "{h}");
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["class"], "spam");
    assert_eq!(json["is_spam"], true);
    assert!(json["signals"][0]["name"].as_str().unwrap().starts_with("BAYES"));
    let empty = f.verdict(Vec::new());
    assert_eq!(x_spam_status(&empty, 5.0), "No, score=0.0 required=5.0 class=ham tests=none");
}

#[test]
fn per_user_learning_on_errors() {
    let f = Filter::new(Model::new(trained(150, 150)));
    // This user gets a newsletter full of words the global model thinks spammy.
    let newsletter = |i: usize| {
        message("News <news@club.example.com>", "club newsletter", &format!("bonus prize {} club members", i))
    };
    let before = f.score(&newsletter(0), &AuthResults::default());
    assert_ne!(before.class, Class::Ham);
    let mut store = MemoryStore::default();
    let user = Scope::User("bob");
    for i in 0..10 {
        let raw = newsletter(i);
        let toks = tokens::tokenize_bytes(&raw);
        let v = f.score_for_user(&raw, &AuthResults::default(), &store.load(user).unwrap());
        learn_if_wrong(&mut store, user, &toks, false, v.class, None).unwrap();
    }
    let bob = store.load(user).unwrap();
    assert!(bob.ham > 0);
    let after = f.score_for_user(&newsletter(99), &AuthResults::default(), &bob);
    assert!(after.score < before.score, "{} !< {}", after.score, before.score);
    // A right verdict trains nothing; moving back untrains first.
    let raw = ham(5000);
    let toks = tokens::tokenize_bytes(&raw);
    assert!(!learn_if_wrong(&mut store, user, &toks, false, Class::Ham, None).unwrap());
    let hams = store.load(user).unwrap().ham;
    assert!(learn_if_wrong(&mut store, user, &toks, true, Class::Ham, Some(false)).unwrap());
    let now = store.load(user).unwrap();
    assert_eq!((now.ham, now.spam), (hams - 1, 1));
    // Another user is not affected.
    assert_eq!(store.load(Scope::User("carol")).unwrap(), Counts::default());
}
