//! Filter mode: mail for a domain in filter mode is scanned once, at the
//! end of DATA, and then each recipient's own policy (`record::policy`:
//! built in, the configuration, then the tenant's global, domain and user
//! rows, read for every message so a change applies to the next one on
//! every node) decides what happens to that recipient's copy:
//!
//! - `deliver`: relayed to the downstream mailbox system, unchanged;
//! - `tag`: relayed with an `X-Spam-Status` header (and the policy's
//!   subject prefix). Tagged recipients get a message of their own in the
//!   spool, one per prefix, so the others' copy stays byte for byte;
//! - `quarantine`: filed, as received, in the `Spam` folder of the
//!   recipient's store account (the account named by the address, else the
//!   domain's), browsable over IMAP;
//! - `reject`: refused at the end of DATA (`550 5.7.1`, naming the reason)
//!   when every recipient rejects; otherwise dropped from delivery;
//! - `tempfail` (the scan failed, or the policy could not be read, and
//!   `scan_failure = "tempfail"`): `451` for the whole message, so the
//!   sender's retry brings it to every recipient once.
//!
//! With sender authentication (`authenticate.rs`), every one of these
//! copies starts with an `Authentication-Results` header; recipients
//! outside filter mode still get the message byte for byte.
//!
//! `archive = true` also files a copy in the recipient's `Archive`. Each
//! decision is a `filtered` event of that recipient: the action as its
//! `reason`, and the score, class, signals and deciding policy level in
//! its `detail` (what `sluice policy simulate` replays).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use record::events::{EventKind, NewEvent, now_ms};
use record::policy::{self, Action, Class, Decision, Defaults, Policies, PolicyRow};
use vocabulary::{Envelope, QueueId, Recipient, Reply, Route, domain_of};

/// The filter's current model: replaced when it is retrained, without a
/// restart (cheap to clone).
#[derive(Clone)]
pub struct Scanner(Arc<RwLock<Arc<spam::Filter>>>);

impl Scanner {
    pub fn new(filter: spam::Filter) -> Scanner {
        Scanner(Arc::new(RwLock::new(Arc::new(filter))))
    }

    pub fn replace(&self, filter: spam::Filter) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(filter);
    }

    pub(crate) fn current(&self) -> Arc<spam::Filter> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What filter mode needs.
pub struct FilterMode {
    /// Lower-case domains in filter mode.
    pub domains: HashSet<String>,
    pub scanner: Scanner,
    pub policies: Arc<dyn Policies>,
    pub defaults: Arc<Defaults>,
    /// The store, asked about an account not (yet) known in memory.
    pub store: Arc<dyn record::QuarantineStore>,
    /// Store accounts, in memory: a recipient's own (named by the
    /// address), else its domain's, takes its Spam and Archive copies.
    pub accounts: crate::tee::Accounts,
    /// Users' own counts, taught by IMAP moves into and out of Spam.
    pub users: Option<crate::learn::UserModels>,
    /// rspamd, asked once per message when `[spam] rspamd_url` is set
    /// (`rspamd.rs`): its score is one more signal.
    pub rspamd: Option<crate::rspamd::Rspamd>,
    /// SPF, DKIM, DMARC and ARC, checked once per message when `[spam]
    /// authenticate` is on (`authenticate.rs`): signals, and an
    /// `Authentication-Results` header on every filter-mode copy.
    pub auth: Option<Arc<crate::authenticate::Authenticator>>,
}

/// What filter mode made of one message.
#[derive(Default)]
pub struct Filtered {
    /// Copies for tagged recipients: content and recipients, one per
    /// subject prefix.
    pub tagged: Vec<(Vec<u8>, Vec<Recipient>)>,
    /// Each recipient's `filtered` event; `idx` is filled in once the
    /// recipient's place in its message is known.
    pub events: Vec<(Placed, NewEvent)>,
    /// Every recipient refuses: the reply to the end of DATA.
    pub refuse: Option<Reply>,
    /// The content the message as accepted carries instead, when filter
    /// mode changed it: with the `Authentication-Results` header, when
    /// every recipient is in filter mode (otherwise they get a copy).
    pub content: Option<Vec<u8>>,
}

/// Where a decided recipient ended up.
#[derive(Clone, Debug, PartialEq)]
pub enum Placed {
    /// In the message as accepted, at this index.
    Original(usize),
    /// In tagged copy `n`, at this index.
    Tagged(usize, usize),
    /// Nowhere: rejected.
    Dropped,
}

impl FilterMode {
    /// Whether any recipient of `envelope` is in filter mode.
    pub fn applies(&self, envelope: &Envelope) -> bool {
        envelope.rcpts.iter().any(|r| self.covers(r))
    }

    fn covers(&self, r: &Recipient) -> bool {
        r.route == Route::Relay && self.domains.contains(&domain_of(&r.address))
    }

    /// Scans `content` once and applies each filter-mode recipient's
    /// policy: rewrites `envelope` (quarantined and archived recipients
    /// get their folder's route, tagged and rejected ones leave it) and
    /// returns the tagged copies and the events.
    pub async fn apply(
        &self,
        envelope: &mut Envelope,
        content: &[u8],
        tenant_of: &(dyn Fn(&str) -> i64 + Sync),
    ) -> Filtered {
        let filter = self.scanner.current();
        let covered: Vec<String> =
            envelope.rcpts.iter().filter(|r| self.covers(r)).map(|r| r.address.clone()).collect();
        // The two outside checks at once: a slow DNS and a slow rspamd
        // cost the longer of the two, not their sum.
        let seen: &Envelope = envelope;
        let (auth, rspamd) = tokio::join!(
            crate::authenticate::run(self.auth.as_deref(), seen, content),
            crate::rspamd::consult(self.rspamd.as_ref(), seen, &covered, content)
        );
        let results = auth.clone().unwrap_or_default();
        let verdict = filter.score(content, &results);
        let verdict = crate::rspamd::combine(&filter, verdict, rspamd.as_ref());
        let sender = sender_of(envelope, content);
        let rows = self.policy_rows(&covered, tenant_of).await;
        let (mut keep, mut tagged, mut events) = (Vec::new(), BTreeMap::new(), Vec::new());
        let mut refusals: Vec<(Action, String)> = Vec::new();
        let others = envelope.rcpts.iter().filter(|r| !self.covers(r)).count();
        // Authenticated with others in the message: filter mode's
        // recipients get a stamped copy, the others the original.
        let (split, mut outside) = (auth.is_some() && others > 0, Vec::new());
        let envelope_len = envelope.rcpts.len();
        for r in std::mem::take(&mut envelope.rcpts) {
            if !self.covers(&r) {
                (if split { &mut outside } else { &mut keep }).push((r, None));
                continue;
            }
            let tenant = tenant_of(&r.address);
            // A user who taught the filter gets the global model plus
            // their own counts; everyone else shares the one scan.
            let own = match &self.users {
                Some(users) => users.counts(&r.address).await,
                None => None,
            };
            let mine = own.map(|c| filter.score_for_user(content, &results, &c));
            let mine = mine.map(|v| crate::rspamd::combine(&filter, v, rspamd.as_ref()));
            let verdict = mine.as_ref().unwrap_or(&verdict);
            let failed = crate::rspamd::failure(rspamd.as_ref());
            let rows = match rows.get(&tenant) {
                Some(Ok(rows)) => Ok(rows.as_slice()),
                Some(Err(e)) => Err(e.as_str()),
                None => Err("no policy read"),
            };
            let (mut d, required) = self.decide(rows, &r.address, verdict, &sender, failed);
            // Only a copy to a folder needs the account: a delivered,
            // tagged or rejected recipient costs no look-up.
            let wants_folder = d.action == Action::Quarantine || d.archive;
            let account = if wants_folder { self.account_for(&r.address).await } else { None };
            if wants_folder && account.is_none() {
                without_account(&mut d, &r.address);
            }
            let mut event = filtered_event(tenant, &r.address, &d, verdict, &sender);
            crate::rspamd::note(&mut event, rspamd.as_ref());
            crate::authenticate::note(&mut event, auth.as_ref());
            match d.action {
                Action::Reject | Action::Tempfail => {
                    refusals.push((d.action, d.reason.clone()));
                    events.push((Placed::Dropped, event));
                }
                Action::Tag => {
                    let prefix = d.subject_prefix.clone().unwrap_or_default();
                    let status = status_for(verdict, d.class, required);
                    tagged.entry((status, prefix)).or_insert_with(Vec::new).push((r.clone(), event));
                }
                Action::Quarantine => {
                    let folder = folder_route(account.clone(), "Spam");
                    keep.push((Recipient::routed(r.address.clone(), folder), Some(event)));
                }
                Action::Deliver => keep.push((r.clone(), Some(event))),
            }
            if let Some(account) = account.filter(|_| d.archive && d.action != Action::Tempfail) {
                keep.push((
                    Recipient::routed(r.address.clone(), folder_route(Some(account), "Archive")),
                    None,
                ));
            }
        }
        // Refused at the end of DATA only when no recipient of the message
        // takes it (a recipient outside filter mode always does).
        // A recipient whose policy could not be read (or whose scan
        // failed) with `scan_failure = "tempfail"` makes the whole message
        // wait: nobody has it yet, so the sender's retry brings it to all.
        let decided = envelope_len - others;
        let tempfail = refusals.iter().any(|(a, _)| *a == Action::Tempfail);
        let refuse =
            (tempfail || (others == 0 && refusals.len() == decided)).then(|| refusal(&refusals)).flatten();
        if refuse.is_some() {
            // Refused whole: nothing is kept; the refusing decisions are
            // recorded (the others' did not happen: the message comes again
            // or not at all).
            return Filtered { tagged: Vec::new(), events, refuse, content: None };
        }
        let (keep, stamped) = if split { (outside, keep) } else { (keep, Vec::new()) };
        let body = auth.as_ref().map(|a| crate::authenticate::stamp(content, a));
        let content = body.as_deref().unwrap_or(content);
        for (idx, (r, e)) in keep.into_iter().enumerate() {
            envelope.rcpts.push(r);
            events.extend(e.map(|e| (Placed::Original(idx), e)));
        }
        let mut copies = Vec::new();
        for (n, ((header, prefix), rcpts)) in tagged.into_iter().enumerate() {
            let (rcpts, evs): (Vec<Recipient>, Vec<NewEvent>) = rcpts.into_iter().unzip();
            events.extend(evs.into_iter().enumerate().map(|(i, e)| (Placed::Tagged(n, i), e)));
            copies.push((tag(content, &header, &prefix), rcpts));
        }
        crate::authenticate::copy(&mut copies, &mut events, stamped, content);
        Filtered { tagged: copies, events, refuse: None, content: body.filter(|_| !split) }
    }

    /// The policy rows of each tenant of these recipients, one query per
    /// tenant (read per message: a change applies to the next one).
    async fn policy_rows(
        &self,
        addresses: &[String],
        tenant_of: &(dyn Fn(&str) -> i64 + Sync),
    ) -> HashMap<i64, Result<Vec<PolicyRow>, String>> {
        let mut by_tenant: HashMap<i64, Vec<&str>> = HashMap::new();
        for a in addresses {
            by_tenant.entry(tenant_of(a)).or_default().push(a);
        }
        let mut rows = HashMap::new();
        for (tenant, addresses) in by_tenant {
            let got = policy::rows_for(self.policies.as_ref(), tenant, &addresses).await;
            rows.insert(tenant, got.map_err(|e| e.to_string()));
        }
        rows
    }

    /// The recipient's store account, from memory; one added since the
    /// last refresh is found in the store (the rare path: a recipient
    /// without any account asks the store each time).
    async fn account_for(&self, address: &str) -> Option<String> {
        if let Some(known) = self.accounts.account_for(address) {
            return Some(known);
        }
        let address = address.to_ascii_lowercase();
        match self.store.folders(&address).await {
            Ok(folders) if !folders.is_empty() => Some(address),
            Ok(_) => None,
            Err(e) => {
                // Not known to be missing: the copy waits in the queue
                // for the store, as any copy does.
                tracing::warn!(rcpt = %address, error = %e, "store accounts unreadable: the copy waits in the queue");
                Some(address)
            }
        }
    }

    /// One recipient's decision; a policy that cannot be read decides as
    /// the scan failing would (the recipient's `scan_failure`, built in
    /// `tempfail`): never a silent default.
    /// With the recipient's spam threshold. When rspamd `failed`, the
    /// message was not scanned: `scan_failure` decides, naming why.
    fn decide(
        &self,
        rows: Result<&[PolicyRow], &str>,
        address: &str,
        v: &spam::Verdict,
        sender: &str,
        failed: Option<&str>,
    ) -> (Decision, f64) {
        let effective = rows
            .map_err(|e| e.to_string())
            .and_then(|rows| policy::effective_in(rows, &self.defaults, address).map_err(|e| e.to_string()));
        match effective {
            Ok(e) => {
                let mut d = policy::decide(&e, failed.is_none().then_some(v.score), None, sender);
                if let Some(why) = failed {
                    d.reason = format!("rspamd unavailable: {why}; {}", d.reason);
                }
                (d, e.spam_threshold())
            }
            Err(err) => {
                tracing::warn!(rcpt = %address, error = %err, "policy unavailable: the message is tempfailed for this recipient");
                let e = policy::resolve(&self.defaults, &[]);
                let mut d = policy::decide(&e, None, None, sender);
                d.action = Action::Tempfail;
                d.reason = format!("policy unavailable: {err}");
                (d, e.spam_threshold())
            }
        }
    }
}

/// The route to `folder` of the recipient's store `account`.
fn folder_route(account: Option<String>, folder: &str) -> Route {
    Route::Folder { account: account.unwrap_or_default(), folder: folder.to_string() }
}

/// A recipient with no store account of its own nor of its domain has no
/// Spam or Archive folder: a copy routed there would wait in the queue
/// until it expired and bounced a spam's forged sender. Quarantine becomes
/// tag (delivered, marked: a false positive still arrives), except for a
/// blocked sender, which is never delivered (rejected instead); archive is
/// skipped. Each is said in the decision and at WARN.
fn without_account(d: &mut Decision, address: &str) {
    // A quarantine without a class is a sender list's: the block list.
    if d.action == Action::Quarantine && d.class.is_none() {
        tracing::warn!(rcpt = %address, "no store account for this recipient: a blocked sender is rejected instead of quarantined");
        d.action = Action::Reject;
        d.reason = format!("{} (no store account: rejected instead of quarantined)", d.reason);
    }
    if d.action == Action::Quarantine {
        tracing::warn!(rcpt = %address, "no store account for this recipient: tagged instead of quarantined");
        d.action = Action::Tag;
        d.reason = format!("{} (no store account: tagged instead of quarantined)", d.reason);
    }
    if d.archive {
        tracing::warn!(rcpt = %address, "no store account for this recipient: not archived");
        d.archive = false;
        d.reason = format!("{} (no store account: not archived)", d.reason);
    }
}

/// The `X-Spam-Status` a tagged recipient sees: the filter's score and
/// signals judged by the recipient's own threshold and class.
fn status_for(v: &spam::Verdict, class: Option<Class>, required: f64) -> String {
    let class = match class {
        Some(Class::Spam) => spam::Class::Spam,
        Some(Class::Unsure) => spam::Class::Unsure,
        Some(Class::Ham) => spam::Class::Ham,
        None => v.class,
    };
    let mine = spam::Verdict { class, is_spam: class == spam::Class::Spam, ..v.clone() };
    spam::x_spam_status(&mine, required)
}

/// Who sent it, for allow and block lists: the envelope sender, or the
/// From header's address for a null sender (bounces).
fn sender_of(envelope: &Envelope, content: &[u8]) -> String {
    if !envelope.mail_from.is_empty() {
        return envelope.mail_from.to_ascii_lowercase();
    }
    mail_parser::MessageParser::default()
        .parse_headers(content)
        .and_then(|m| m.from().and_then(|f| f.first()).and_then(|a| a.address()).map(str::to_ascii_lowercase))
        .unwrap_or_default()
}

/// The end of DATA's reply when the message is refused: `451 4.7.1` when
/// any recipient asks to try again, else `550 5.7.1`.
fn refusal(refusals: &[(Action, String)]) -> Option<Reply> {
    let (_, why) = refusals.first()?;
    if let Some((_, why)) = refusals.iter().find(|(a, _)| *a == Action::Tempfail) {
        return Some(Reply::new(451, "4.7.1", format!("Message not scanned, try again later: {why}")));
    }
    Some(Reply::new(550, "5.7.1", format!("Message rejected as spam: {why}")))
}

/// The message with the `X-Spam-Status` header first and, when set, the
/// subject prefixed (once: a prefix already there is not repeated).
pub fn tag(content: &[u8], status: &str, prefix: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + status.len() + 32);
    out.extend_from_slice(b"X-Spam-Status: ");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\r\n");
    let end = deliver::dsn::header_end(content);
    let (head, body) = content.split_at(end);
    let mut done = prefix.is_empty();
    for line in head.split_inclusive(|&b| b == b'\n') {
        if !done && line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"subject:") {
            let value = &line[8..];
            let text = value.strip_prefix(b" ").unwrap_or(value);
            out.extend_from_slice(b"Subject: ");
            if !text.starts_with(prefix.as_bytes()) {
                out.extend_from_slice(prefix.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(text);
            done = true;
            continue;
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(body);
    out
}

/// The `filtered` event of one recipient.
fn filtered_event(tenant: i64, address: &str, d: &Decision, v: &spam::Verdict, sender: &str) -> NewEvent {
    let class = d.class.map(Class::as_str);
    NewEvent {
        tenant: Some(tenant),
        message: String::new(),
        idx: None,
        address: Some(address.to_ascii_lowercase()),
        kind: EventKind::Filtered,
        at: now_ms(),
        reason: Some(d.action.as_str().to_string()),
        smtp: None,
        detail: Some(serde_json::json!({
            "score": (v.score * 100.0).round() / 100.0,
            "class": class,
            "action": d.action.as_str(),
            "level": d.level.to_string(),
            "why": d.reason,
            "archive": d.archive,
            "sender": sender,
            "signals": v.signals,
        })),
        suppress: None,
        source: None,
        group: Vec::new(),
    }
}

/// Names each event's message and index, now that they are known.
pub fn place(events: Vec<(Placed, NewEvent)>, original: QueueId, tagged: &[QueueId]) -> Vec<NewEvent> {
    events
        .into_iter()
        .map(|(p, mut e)| {
            let (message, idx) = match p {
                Placed::Original(i) => (original, Some(i as i64)),
                Placed::Tagged(n, i) => (tagged.get(n).copied().unwrap_or(original), Some(i as i64)),
                Placed::Dropped => (original, None),
            };
            e.message = message.to_string();
            e.idx = idx;
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_adds_the_header_first_and_prefixes_the_subject_once() {
        let msg = b"From: a@b\r\nSubject: Cheap pills\r\n\r\nbody\r\nSubject: not a header\r\n";
        let out = String::from_utf8(tag(msg, "Yes, score=9.0", "[SPAM]")).unwrap();
        assert!(out.starts_with(
            "X-Spam-Status: Yes, score=9.0\r\nFrom: a@b\r\nSubject: [SPAM] Cheap pills\r\n\r\n"
        ));
        assert!(out.ends_with("body\r\nSubject: not a header\r\n"), "the body is untouched: {out}");
        let again = String::from_utf8(tag(out.as_bytes(), "x", "[SPAM]")).unwrap();
        assert_eq!(again.matches("[SPAM]").count(), 1, "{again}");
        let plain = tag(msg, "No", "");
        assert_eq!(&plain[b"X-Spam-Status: No\r\n".len()..], msg, "no prefix: the rest byte for byte");
    }

    #[test]
    fn refused_whole_only_with_a_reason_and_tempfail_wins() {
        assert_eq!(refusal(&[]), None);
        let r = refusal(&[(Action::Reject, "score 9 >= 5".into())]).unwrap();
        assert_eq!((r.code, r.to_string().contains("score 9")), (550, true));
        let t = refusal(&[(Action::Reject, "x".into()), (Action::Tempfail, "down".into())]).unwrap();
        assert_eq!(t.code, 451);
    }
}
