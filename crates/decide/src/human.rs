//! Mail written (or sent on someone's behalf) by a person's mailbox rather
//! than by a mail system: auto-replies (RFC 3834 headers and the
//! out-of-office styles that lack them), unsubscribe requests,
//! challenge-response prompts, and everything else: `human`.

use std::sync::LazyLock;

use mail_parser::Message;
use regex::Regex;

use crate::{Classification, Original, Reason, RecipientReport, Verdict};

static AUTOREPLY_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(?:auto(?:matic)?[- ]?(?:reply|response|antwort|respuesta|réponse)|out of (?:the )?office|abwesenheit|absence|vacation|on vacation|away from (?:my|the) (?:desk|office)|i am (?:out|away)|autoreply|réponse automatique|respuesta automática|automatisch|fuera de la oficina|congés)|\b(?:auto[- ]?reply|out of office|autoresponder|automatic reply)\b")
        .expect("static regex")
});
static AUTOREPLY_BODY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:i am|i'm|i will be) (?:currently )?(?:out of (?:the )?office|away|on (?:vacation|holiday|leave)|travel+ing)|(?:out of (?:the )?office|on vacation|on holiday) (?:until|from|till)|limited access to (?:my )?e-?mail|will (?:respond|reply|get back to you) (?:to your (?:e-?mail|message) )?(?:when|upon|as soon as) (?:i|my) return|this is an auto(?:mated|matic)(?:ally generated)? (?:reply|response|message)")
        .expect("static regex")
});
static CHALLENGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:please )?(?:verify|confirm) (?:that )?(?:you are|you're) (?:a )?(?:human|real person|not a (?:robot|spammer))|challenge[- ]response|spam ?arrest|boxbe|mailblocks|sender verification (?:request|required)|(?:click|reply).{0,60}(?:to (?:be )?(?:added|approved|verified|whitelisted))|your (?:e-?mail|message) (?:is|has been) (?:held|quarantined) (?:pending|until) (?:verification|you verify)|approve your (?:e-?mail|address)")
        .expect("static regex")
});
static UNSUBSCRIBE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(?:re:\s*)?(?:unsubscribe|remove me|opt[- ]?out|stop)\b|\b(?:please )?(?:unsubscribe me|remove me from (?:your|this|the) (?:list|mailing)|take me off (?:your|this|the) (?:list|mailing)|stop (?:sending|emailing) me)\b")
        .expect("static regex")
});

/// Addresses the message was delivered to (for VERP tokens).
pub fn envelope_recipients(msg: &Message<'_>) -> Vec<String> {
    ["Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To"]
        .iter()
        .filter_map(|h| msg.header_raw(*h))
        .flat_map(|v| {
            v.split(',').map(|a| a.trim().trim_start_matches('<').trim_end_matches('>').to_string())
        })
        .map(|a| match (a.rfind('<'), a.rfind('>')) {
            (Some(s), Some(e)) if s < e => a[s + 1..e].to_string(),
            _ => a,
        })
        .filter(|a| a.contains('@'))
        .collect()
}

/// The Message-ID a reply names (`In-Reply-To`, without its brackets).
pub fn in_reply_to(msg: &Message<'_>) -> Option<String> {
    msg.header_raw("In-Reply-To").map(|v| v.trim().trim_matches(['<', '>']).to_string())
}

fn from_address(msg: &Message<'_>) -> Option<String> {
    msg.from().and_then(|a| a.first()).and_then(|a| a.address()).map(str::to_string)
}

fn with(verdict: Verdict, msg: &Message<'_>) -> Classification {
    Classification {
        verdict,
        recipients: Vec::new(),
        feedback_type: None,
        original: Original { message_id: in_reply_to(msg), ..Original::default() },
        mta: None,
        source_ip: None,
        autoreply_from: None,
    }
}

/// Classifies a message that is not a delivery or feedback report.
pub fn classify(msg: &Message<'_>) -> Classification {
    let subject = msg.subject().unwrap_or_default();
    let body: String = msg.body_text(0).map(|t| t.chars().take(3000).collect()).unwrap_or_default();
    let header = |name: &str| msg.header_raw(name).map(|v| v.trim().to_ascii_lowercase());

    // RFC 3834 and the de facto headers of auto-responders.
    let auto_submitted = header("Auto-Submitted").is_some_and(|v| v.starts_with("auto-replied"));
    let auto_headers = auto_submitted
        || msg.header_raw("X-Autoreply").is_some()
        || msg.header_raw("X-Autorespond").is_some()
        || header("X-Auto-Response-Suppress").is_some_and(|v| v.contains("all") || v.contains("oof"))
            && AUTOREPLY_SUBJECT.is_match(subject)
        || header("Precedence").is_some_and(|v| v == "auto_reply")
        || header("X-Precedence").is_some_and(|v| v == "auto_reply");
    if UNSUBSCRIBE.is_match(subject) {
        return unsubscribe(msg);
    }
    if CHALLENGE.is_match(subject)
        || CHALLENGE.is_match(&body)
            && (auto_headers || subject.is_empty() || body.len() < 4000)
            && CHALLENGE.is_match(&body[..body.len().min(2000)])
    {
        let mut c = with(Verdict::Challenge, msg);
        c.autoreply_from = from_address(msg);
        return c;
    }
    if auto_headers
        || AUTOREPLY_SUBJECT.is_match(subject)
        || (subject.to_ascii_lowercase().starts_with("re:") || subject.is_empty())
            && AUTOREPLY_BODY.is_match(&body)
    {
        let mut c = with(Verdict::Autoreply, msg);
        c.autoreply_from = from_address(msg);
        c.mta = Some("RFC3834".into());
        if let Some(address) = c.autoreply_from.clone() {
            c.recipients.push(RecipientReport::bare(address, Reason::Vacation));
        }
        return c;
    }
    let first_lines: String = body
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('>'))
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    if first_lines.len() < 200 && UNSUBSCRIBE.is_match(&first_lines) {
        return unsubscribe(msg);
    }
    with(Verdict::Human, msg)
}

fn unsubscribe(msg: &Message<'_>) -> Classification {
    let mut c = with(Verdict::Unsubscribe, msg);
    {
        if let Some(address) = from_address(msg) {
            c.recipients.push(RecipientReport::bare(address, Reason::Feedback));
        }
    }
    c
}
