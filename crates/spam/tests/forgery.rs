//! The forgery rules taken from SpamAssassin (a mailer claimed without its
//! Message-ID, an Outlook Message-ID whose time is wrong, Yahoo without
//! Yahoo's relays, a freemail sender nobody vouches for), each on a
//! self-written message that has the trait and one that does not.

use spam::auth::{AuthResults, Dkim, Spf};
use spam::{Filter, Model};

const RCVD: &str = "Received: from pc.example.net (dsl-1-2.example.net [192.0.2.7])\r\n\
    \tby mx.example.org (Postfix) with ESMTP id 4F1A2; Tue, 3 Dec 2024 10:00:05 +0000\r\n";

/// A plain message with these extra header lines (each ending CRLF).
fn message(headers: &str) -> Vec<u8> {
    format!(
        "{RCVD}{headers}To: ann@example.org\r\nSubject: Hello\r\nDate: Tue, 3 Dec 2024 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nA few words of text.\r\n"
    )
    .into_bytes()
}

fn fired(raw: &[u8], auth: &AuthResults) -> Vec<String> {
    Filter::new(Model::default()).score(raw, auth).signals.into_iter().map(|s| s.name).collect()
}

fn fires(rule: &str, headers: &str) -> bool {
    fired(&message(headers), &AuthResults::default()).iter().any(|n| n == rule)
}

#[test]
fn a_mailer_claimed_without_its_message_id_is_forged() {
    let oe = "X-Mailer: Microsoft Outlook Express 6.00.2800.1106\r\nFrom: bob@example.net\r\n";
    assert!(fires("FORGED_MUA_OUTLOOK", &format!("{oe}Message-ID: <3f1a2b@example.net>\r\n")));
    // The form Outlook Express makes, with the right time in it.
    let real = "Message-ID: <000101db456a$12345678$9abcdef0@pc.example.net>\r\n";
    assert!(!fires("FORGED_MUA_OUTLOOK", &format!("{oe}{real}")));
    // A list manager that replaces Message-IDs says nothing of the mailer.
    let list = "List-Unsubscribe: <mailto:news-unsubscribe@lists.example.net>\r\n";
    assert!(!fires("FORGED_MUA_OUTLOOK", &format!("{oe}{list}Message-ID: <3f1a2b@example.net>\r\n")));
    assert!(fires("FORGED_MUA_OUTLOOK", "X-Mailer: Outlook\r\nFrom: bob@example.net\r\n"));
}

#[test]
fn an_outlook_message_id_made_at_another_time_is_invalid() {
    let from = "From: bob@example.net\r\n";
    // 01db456a is 2024-12-03 10:00 UTC in Outlook's clock (the Date:).
    assert!(!fires(
        "MSGID_OUTLOOK_INVALID",
        &format!("{from}Message-ID: <000101db456a$12345678$9abcdef0@pc>\r\n")
    ));
    // 01d5c036 is 2020-01-01: neither the Date: nor the relay's time.
    assert!(fires(
        "MSGID_OUTLOOK_INVALID",
        &format!("{from}Message-ID: <000101d5c036$12345678$9abcdef0@pc>\r\n")
    ));
}

#[test]
fn yahoo_mail_without_yahoo_relays_is_forged() {
    assert!(fires("FORGED_YAHOO_RCVD", "From: Bob <bob@yahoo.com>\r\n"));
    let web =
        "Received: from [192.0.2.9] by web40020.mail.yahoo.com via HTTP; Tue, 03 Dec 2024 09:59:00 EST\r\n";
    assert!(!fires("FORGED_YAHOO_RCVD", &format!("{web}From: Bob <bob@yahoo.com>\r\n")));
    assert!(!fires("FORGED_YAHOO_RCVD", "From: Bob <bob@yahoo.com.example>\r\n"));
}

#[test]
fn a_freemail_sender_nobody_vouches_for_is_spoofed() {
    let from = "From: Ann <ann.smith@gmail.com>\r\nMessage-ID: <x1@gmail.com>\r\n";
    assert!(fires("SPOOFED_FREEMAIL", from));
    // A reply, a list, an authenticated submission: not a stranger's.
    assert!(!fires("SPOOFED_FREEMAIL", &format!("{from}In-Reply-To: <y@example.org>\r\n")));
    assert!(!fires("SPOOFED_FREEMAIL", &format!("{from}List-Id: <dev.lists.example.org>\r\n")));
    let submitted =
        "Received: from [192.0.2.8] by smtp.gmail.com with ESMTPSA id 77; Tue, 3 Dec 2024 10:00:01 +0000\r\n";
    assert!(!fires("SPOOFED_FREEMAIL", &format!("{submitted}{from}")));
    // SPF or DKIM passing: the sender is who it says.
    for auth in [
        AuthResults { spf: Spf::Pass, ..Default::default() },
        AuthResults { dkim: Dkim::Pass, ..Default::default() },
    ] {
        assert!(!fired(&message(from), &auth).iter().any(|n| n == "SPOOFED_FREEMAIL"));
    }
    // A role address, and a domain that is no freemail provider.
    assert!(!fires("SPOOFED_FREEMAIL", "From: postmaster@gmail.com\r\n"));
    assert!(!fires("SPOOFED_FREEMAIL", "From: ann@example.net\r\n"));
}
