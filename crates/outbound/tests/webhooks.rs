//! Every labelled provider payload in `tests/fixtures/webhooks/` (see its
//! `SOURCES.md`) parses, with the provider and content type its label
//! gives, to the labelled events: the event type (through the tables
//! below), the recipient and the provider's message id. A label sluice
//! does not reach is in `UNREACHABLE` with the reason; nothing else may
//! miss, and nothing is skipped silently.
//!
//! Three kinds of label rows: Anymail's normalized events
//! (`expected_events` with `event_type`), the provider documentation's
//! self-describing samples (`expected` with the record's own type), and
//! SendGrid's signed samples (`expected_events` in SendGrid's own fields).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use outbound::providers::{self, Payload, Provider, ProviderEvent};
use serde_json::Value;
use vocabulary::EventKind;

/// Labels sluice does not reach: (file, index of the expected event, why).
const UNREACHABLE: [(&str, usize, &str); 1] = [(
    "sparkpost/anymail-SparkPostDeliveryTestCase.test_amp_events.json",
    1,
    "Anymail labels SparkPost's `amp_initial_open` `unknown` (its table lacks the type); SparkPost documents \
     it as the first open of the AMP part of a message, which sluice records as `opened`, as Anymail does \
     `initial_open`",
)];

/// What a label's event should be in sluice: one of these kinds, or a
/// provider event sluice reads and deliberately skips.
enum Expect {
    Kinds(&'static [EventKind]),
    Skipped,
}

/// Anymail's event types in sluice's words.
fn anymail(event_type: &str) -> Expect {
    use EventKind::*;
    Expect::Kinds(match event_type {
        "queued" => &[Queued],
        // SES `Send`: the provider took the message; sluice's `sent` is
        // "handed to the next hop, which said 2xx", and SES is that hop.
        "sent" => &[Sent],
        "delivered" => &[Delivered],
        "bounced" => &[Bounced],
        "deferred" => &[Deferred],
        // Anymail's one word for "the provider would not send it"; sluice
        // says why: `suppressed` (on the provider's suppression list:
        // Mailgun's `hardfail` drop, SendGrid's "Bounced Address"),
        // `invalid` (not an address: SendGrid's "Invalid"), `failed`
        // (Mailgun's `old` drop: retried until it gave up, "no hop could be
        // reached until it expired"), `rejected` (policy or content).
        "rejected" => &[Rejected, Suppressed, Invalid, Failed],
        // The provider could not make or send the message (a template).
        "failed" => &[Failed],
        "complained" => &[Complained],
        "unsubscribed" => &[Unsubscribed],
        "opened" => &[Opened],
        "clicked" => &[Clicked],
        // Out of office and the like: sluice's informational `autoreplied`.
        "autoresponded" => &[Autoreplied],
        // What Anymail could not name, and a re-subscription (no outcome
        // of a message): sluice reads these and skips them, with why.
        "unknown" | "subscribed" => return Expect::Skipped,
        other => panic!("an Anymail event type the table lacks: {other}"),
    })
}

/// SES's own `eventType` / `notificationType` in sluice's words.
fn ses(event_type: &str) -> EventKind {
    match event_type {
        // Permanent, and also Transient: SES reports a soft bounce only
        // after it stopped retrying, so the mail did not arrive.
        "Bounce" => EventKind::Bounced,
        "Complaint" => EventKind::Complained,
        "Delivery" => EventKind::Delivered,
        "Send" => EventKind::Sent,
        // SES found a virus and did not try.
        "Reject" => EventKind::Rejected,
        "Open" => EventKind::Opened,
        "Click" => EventKind::Clicked,
        "Rendering Failure" => EventKind::Failed,
        "DeliveryDelay" => EventKind::Deferred,
        // The sample leaves every topic (`unsubscribeAll`).
        "Subscription" => EventKind::Unsubscribed,
        other => panic!("an SES type the table lacks: {other}"),
    }
}

/// SparkPost's own `type` in sluice's words; `None` for what is no
/// outcome of sent mail (inbound relay, SMS), which must be skipped.
fn sparkpost(event_type: &str) -> Option<EventKind> {
    Some(match event_type {
        "injection" => EventKind::Queued,
        "delivery" => EventKind::Delivered,
        "delay" => EventKind::Deferred,
        "bounce" | "out_of_band" => EventKind::Bounced,
        "policy_rejection" | "generation_rejection" => EventKind::Rejected,
        "generation_failure" => EventKind::Failed,
        "spam_complaint" => EventKind::Complained,
        "open" | "initial_open" => EventKind::Opened,
        "click" => EventKind::Clicked,
        "list_unsubscribe" | "link_unsubscribe" => EventKind::Unsubscribed,
        t if t.starts_with("relay_") || t == "sms_status" => return None,
        other => panic!("a SparkPost type the table lacks: {other}"),
    })
}

/// SendGrid's own `event` (with a drop's `reason`) in sluice's words.
fn sendgrid(event: &str, reason: Option<&str>) -> EventKind {
    match (event, reason) {
        ("processed", _) => EventKind::Queued,
        ("bounce", _) => EventKind::Bounced,
        ("dropped", Some("Bounced Address")) => EventKind::Suppressed,
        other => panic!("a SendGrid event the table lacks: {other:?}"),
    }
}

/// The message id Anymail reports, from sluice's event. For SendGrid it
/// is the `anymail_id` custom argument Anymail adds to every send
/// (custom arguments arrive as top-level fields, kept in `raw`), else the
/// `smtp-id`, our `header_message_id`; for the others it is the
/// provider's message id.
fn anymail_message_id(provider: Provider, e: &ProviderEvent) -> Option<String> {
    match provider {
        Provider::Sendgrid => e
            .raw
            .get("anymail_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| e.header_message_id.clone()),
        _ => e.message_id.clone(),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks")
}

fn provider_of(dir: &str) -> Provider {
    dir.parse().unwrap_or_else(|e| panic!("{dir}: {e}"))
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Tallies: (provider, part) → (matched, total); and the misses.
#[derive(Default)]
struct Score {
    counts: BTreeMap<(String, &'static str), (usize, usize)>,
    misses: Vec<String>,
    allowed: Vec<String>,
}

impl Score {
    fn check(&mut self, provider: &str, file: &str, index: usize, ok: Result<(), String>) {
        let part = if file.starts_with("anymail-") { "tune" } else { "measure" };
        let entry = self.counts.entry((provider.to_string(), part)).or_default();
        entry.1 += 1;
        let path = format!("{provider}/{file}");
        match ok {
            Ok(()) => entry.0 += 1,
            Err(why) => match UNREACHABLE.iter().find(|(f, i, _)| *f == path && *i == index) {
                Some((_, _, reason)) => {
                    self.allowed.push(format!("{path} #{index}: {why}\n    allowed: {reason}"))
                }
                None => self.misses.push(format!("{path} #{index}: {why}")),
            },
        }
    }
}

#[test]
fn every_labelled_payload_parses_to_its_labels() {
    let mut score = Score::default();
    let mut dirs: Vec<String> = std::fs::read_dir(root())
        .expect("the fixtures")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 5, "one folder per provider: {dirs:?}");
    for dir in &dirs {
        let provider = provider_of(dir);
        let labels = std::fs::read_to_string(root().join(dir).join("labels.jsonl")).expect("labels.jsonl");
        for line in labels.lines().filter(|l| !l.trim().is_empty()) {
            let row: Value = serde_json::from_str(line).expect("a label row");
            let file = s(&row, "file").expect("a file name");
            let body = std::fs::read(root().join(dir).join(&file)).expect("the payload");
            let ct = s(&row, "content_type").unwrap_or_else(|| "application/json".into());
            let parsed = providers::parse_payload(provider, &ct, &body);
            let payload = match parsed {
                Ok(p) => p,
                Err(e) => {
                    score.check(dir, &file, 0, Err(format!("not parsed: {e}")));
                    continue;
                }
            };
            if let Some(expected) = row.get("expected") {
                let doc: Value = serde_json::from_slice(&body).expect("the sample is JSON");
                let ok = match provider {
                    Provider::Ses => ses_sample(expected, &doc, &payload),
                    Provider::Sparkpost => sparkpost_sample(expected, &doc, &payload),
                    other => panic!("{other} has no self-describing samples"),
                };
                score.check(dir, &file, 0, ok);
            } else if row.get("signature").is_some() {
                let expected = row["expected_events"].as_array().expect("expected_events");
                score.check(dir, &file, 0, sendgrid_sample(expected, &payload));
            } else {
                let expected = row.get("expected_events").and_then(Value::as_array).expect("expected_events");
                anymail_row(&mut score, provider, dir, &file, expected, &payload);
            }
        }
    }
    report(&score);
}

fn report(score: &Score) {
    let mut providers: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for ((p, _), (m, t)) in &score.counts {
        let e = providers.entry(p.as_str()).or_default();
        e.0 += m;
        e.1 += t;
    }
    println!("provider webhook agreement (matched/total):");
    for (p, (m, t)) in &providers {
        let parts: Vec<String> = ["tune", "measure"]
            .iter()
            .filter_map(|part| {
                score.counts.get(&(p.to_string(), *part)).map(|(m, t)| format!("{part} {m}/{t}"))
            })
            .collect();
        println!("  {p:<10} {m}/{t}  ({})", parts.join(", "));
    }
    for a in &score.allowed {
        println!("  unreachable, allowed: {a}");
    }
    let reached: Vec<String> = UNREACHABLE
        .iter()
        .map(|(f, i, _)| format!("{f} #{i}:"))
        .filter(|key| !score.allowed.iter().any(|a| a.starts_with(key.as_str())))
        .collect();
    assert!(reached.is_empty(), "allowed as unreachable, but matched or not checked: {reached:?}");
    assert!(score.misses.is_empty(), "labels missed:\n{}", score.misses.join("\n"));
}

/// Anymail's events, in order: one check per expected event (or one for
/// a payload that should give none).
fn anymail_row(
    score: &mut Score,
    provider: Provider,
    dir: &str,
    file: &str,
    expected: &[Value],
    p: &Payload,
) {
    if expected.is_empty() {
        let ok = if p.events.is_empty() && p.skipped.is_empty() {
            Ok(())
        } else {
            Err(format!("no event expected, got {} and {} skipped", p.events.len(), p.skipped.len()))
        };
        score.check(dir, file, 0, ok);
        return;
    }
    let mut events = p.events.iter();
    let mut skipped = p.skipped.iter();
    for (i, want) in expected.iter().enumerate() {
        let event_type = s(want, "event_type").expect("event_type");
        let ok = match anymail(&event_type) {
            // Events and skipped ones are listed apart: an event where a
            // skipped one was labelled takes that label's place.
            Expect::Skipped => {
                if skipped.next().is_some() {
                    Ok(())
                } else if let Some(e) = events.next() {
                    Err(format!("{event_type}: want it skipped, got {} ({})", e.event, e.provider_event))
                } else {
                    Err(format!("{event_type}: want it skipped, got nothing"))
                }
            }
            Expect::Kinds(kinds) => match events.next() {
                None => Err(format!("{event_type}: no event")),
                Some(e) => compare(provider, want, &event_type, kinds, e),
            },
        };
        score.check(dir, file, i, ok);
    }
    let extra = events.count();
    if extra > 0 {
        score.check(dir, file, expected.len(), Err(format!("{extra} event(s) more than labelled")));
    }
}

fn compare(
    provider: Provider,
    want: &Value,
    event_type: &str,
    kinds: &[EventKind],
    e: &ProviderEvent,
) -> Result<(), String> {
    let mut wrong = Vec::new();
    if !kinds.contains(&e.event) {
        wrong.push(format!("event {} for {event_type} (want one of {kinds:?})", e.event));
    }
    if e.recipient != s(want, "recipient") {
        wrong.push(format!("recipient {:?}, want {:?}", e.recipient, s(want, "recipient")));
    }
    let id = anymail_message_id(provider, e);
    if id != s(want, "message_id") {
        wrong.push(format!("message id {id:?}, want {:?}", s(want, "message_id")));
    }
    if wrong.is_empty() { Ok(()) } else { Err(wrong.join("; ")) }
}

/// An SES documentation sample: every event of the labelled type, the
/// labelled recipients (where the label lists them), the record's own
/// `mail.messageId` as the message id.
fn ses_sample(expected: &Value, doc: &Value, p: &Payload) -> Result<(), String> {
    let kind = ses(&s(expected, "type").expect("type"));
    if p.events.is_empty() {
        return Err(format!("no event; skipped {:?}", p.skipped.iter().map(|k| k.why).collect::<Vec<_>>()));
    }
    if let Some(e) = p.events.iter().find(|e| e.event != kind) {
        return Err(format!("event {}, want {kind}", e.event));
    }
    let want: Vec<String> = expected["recipients"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    let got: Vec<String> = p.events.iter().filter_map(|e| e.recipient.clone()).collect();
    if !want.is_empty() && got != want {
        return Err(format!("recipients {got:?}, want {want:?}"));
    }
    let id = doc.get("mail").and_then(|m| s(m, "messageId"));
    match p.events.iter().find(|e| e.message_id != id) {
        Some(e) => Err(format!("message id {:?}, want {id:?}", e.message_id)),
        None => Ok(()),
    }
}

/// A gosparkpost sample: one event of the labelled type for the labelled
/// recipient, or, for what is no outcome of sent mail, one skipped event.
fn sparkpost_sample(expected: &Value, doc: &Value, p: &Payload) -> Result<(), String> {
    let event_type = s(expected, "type").expect("type");
    let Some(kind) = sparkpost(&event_type) else {
        return match (p.events.len(), p.skipped.len()) {
            (0, 1) => Ok(()),
            (e, k) => Err(format!("{event_type}: want one skipped, got {e} event(s), {k} skipped")),
        };
    };
    let [e] = &p.events[..] else {
        return Err(format!("{event_type}: {} events, want one", p.events.len()));
    };
    let class = s(expected, "class").expect("class");
    let ev = &doc[0]["msys"][class.as_str()];
    let mut wrong = Vec::new();
    if e.event != kind {
        wrong.push(format!("event {}, want {kind}", e.event));
    }
    if e.recipient != s(expected, "recipient") {
        wrong.push(format!("recipient {:?}, want {:?}", e.recipient, s(expected, "recipient")));
    }
    if e.message_id != s(ev, "transmission_id") {
        wrong.push(format!(
            "message id {:?}, want the transmission_id {:?}",
            e.message_id,
            s(ev, "transmission_id")
        ));
    }
    if let Some(class) = s(expected, "bounce_class")
        && !e.reason.as_deref().is_some_and(|r| r.ends_with(&format!("({class})")))
    {
        wrong.push(format!("reason {:?} does not name bounce class {class}", e.reason));
    }
    if wrong.is_empty() { Ok(()) } else { Err(wrong.join("; ")) }
}

/// SendGrid's signed samples, labelled in SendGrid's own fields.
fn sendgrid_sample(expected: &[Value], p: &Payload) -> Result<(), String> {
    if p.events.len() != expected.len() {
        return Err(format!("{} events, want {}", p.events.len(), expected.len()));
    }
    for (e, want) in p.events.iter().zip(expected) {
        let event = s(want, "event").expect("event");
        let reason = s(want, "reason");
        let kind = sendgrid(&event, reason.as_deref());
        if e.event != kind || e.recipient != s(want, "email") || e.provider_event != event {
            return Err(format!("{} {:?}, want {kind} {:?}", e.event, e.recipient, s(want, "email")));
        }
        let said = if event == "bounce" { &e.smtp_response } else { &e.reason };
        if reason.is_some() && *said != reason {
            return Err(format!("{event}: {said:?}, want {reason:?}"));
        }
    }
    Ok(())
}

#[test]
fn every_payload_file_has_a_label() {
    for dir in Provider::ALL.map(|p| if p == Provider::Ses { "amazonses" } else { p.as_str() }) {
        let labels = std::fs::read_to_string(root().join(dir).join("labels.jsonl")).expect("labels.jsonl");
        for entry in std::fs::read_dir(root().join(dir)).expect("the folder").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "labels.jsonl" {
                assert!(labels.contains(&format!("\"file\": \"{name}\"")), "{dir}/{name} has no label");
            }
        }
    }
}

/// A body cut short or with a byte changed anywhere is read or refused,
/// never a panic: every prefix of every fixture (sampled on long ones),
/// and every fixture with one byte flipped, through every provider's
/// parser and both form encodings.
#[test]
fn mangled_bodies_never_panic() {
    let types = [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=BoUnDaRyStRiNg",
    ];
    for dir in Provider::ALL.map(|p| if p == Provider::Ses { "amazonses" } else { p.as_str() }) {
        for entry in std::fs::read_dir(root().join(dir)).expect("the folder").flatten() {
            let body = std::fs::read(entry.path()).expect("the payload");
            let step = (body.len() / 80).max(1);
            let mut bodies: Vec<Vec<u8>> =
                (0..body.len()).step_by(step).map(|n| body[..n].to_vec()).collect();
            for at in (0..body.len()).step_by(step * 4) {
                let mut flipped = body.clone();
                flipped[at] ^= 0x20;
                bodies.push(flipped);
            }
            for b in &bodies {
                for provider in Provider::ALL {
                    for ct in types {
                        let _ = providers::parse_payload(provider, ct, b);
                    }
                }
            }
        }
    }
}
