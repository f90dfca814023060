//! Why the classifier decided what it did: `sluice classify --explain`.
//!
//! The decisions are noted as they are made (which format parser read the
//! report, where each recipient's status came from, which rule or status
//! code gave the reason, and every adjustment after it), so what is printed
//! is what ran, not a second reading of the result. Noting is off unless
//! [`explain`] is running on this thread: a closure that is never called
//! and one thread-local flag read is all it costs the classifier.

use std::cell::{Cell, RefCell};

use crate::Classification;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static NOTES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Notes one step of the decision, when someone is listening.
pub(crate) fn note(step: impl FnOnce() -> String) {
    if ON.with(Cell::get) {
        let step = step();
        NOTES.with(|n| n.borrow_mut().push(step));
    }
}

/// Where the next note will go: the parser is named after it has read the
/// report, but its note belongs before the recipients it found.
pub(crate) fn mark() -> usize {
    if ON.with(Cell::get) { NOTES.with(|n| n.borrow().len()) } else { 0 }
}

/// Notes a step at `mark` (see [`mark`]).
pub(crate) fn note_at(mark: usize, step: impl FnOnce() -> String) {
    if ON.with(Cell::get) {
        let step = step();
        NOTES.with(|n| {
            let mut n = n.borrow_mut();
            let at = mark.min(n.len());
            n.insert(at, step);
        });
    }
}

/// Classifies `raw` as [`crate::classify`] does, and says how: the steps
/// in the order they were taken.
pub fn explain(raw: &[u8]) -> (Classification, Vec<String>) {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            ON.with(|on| on.set(false));
        }
    }
    NOTES.with(|n| n.borrow_mut().clear());
    ON.with(|on| on.set(true));
    let off = Off;
    let c = crate::classify(raw);
    drop(off);
    let notes = NOTES.with(|n| std::mem::take(&mut *n.borrow_mut()));
    (c, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postfix_bounce_is_explained_step_by_step() {
        let raw = b"From: MAILER-DAEMON@mx.test (Mail Delivery System)\r\n\
To: a@x.test\r\nSubject: Undelivered Mail Returned to Sender\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.test.\r\n\r\n\
<nobody@y.test>: host y.test said: 550 5.1.1 <nobody@y.test>: Recipient address rejected: \
User unknown in local recipient table (in reply to RCPT TO command)\r\n\r\n\
--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.test\r\n\r\n\
Final-Recipient: rfc822; nobody@y.test\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <nobody@y.test>: Recipient address rejected: User unknown\r\n\r\n\
--b--\r\n";
        let (c, steps) = explain(raw);
        assert_eq!(c, crate::classify(raw), "explaining changes nothing");
        let text = steps.join("\n");
        assert!(text.contains("nobody@y.test"), "{text}");
        assert!(text.contains("rule"), "{text}");
        assert!(text.contains("5.1.1"), "{text}");
        // Off again afterwards: nothing is noted by a plain classify.
        crate::classify(raw);
        assert!(NOTES.with(|n| n.borrow().is_empty()));
    }
}
