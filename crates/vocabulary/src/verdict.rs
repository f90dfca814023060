//! What a message is ([`Verdict`]) and why it was not delivered
//! ([`Reason`]): the classifier's words, and how each is said elsewhere,
//! as an event of the schema ([`Verdict::event`]), a store folder
//! ([`Verdict::folder`]) and IMAP keywords ([`Verdict::keyword`],
//! [`Reason::keyword`]). docs/events.md has the table.

use serde::{Deserialize, Serialize};

use crate::EventKind;

/// The kind of message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Bounce,
    Delay,
    Delivered,
    Autoreply,
    Complaint,
    Unsubscribe,
    Challenge,
    Human,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Bounce => "bounce",
            Verdict::Delay => "delay",
            Verdict::Delivered => "delivered",
            Verdict::Autoreply => "autoreply",
            Verdict::Complaint => "complaint",
            Verdict::Unsubscribe => "unsubscribe",
            Verdict::Challenge => "challenge",
            Verdict::Human => "human",
        }
    }
}

impl Verdict {
    pub const ALL: [Verdict; 8] = [
        Verdict::Bounce,
        Verdict::Delay,
        Verdict::Delivered,
        Verdict::Autoreply,
        Verdict::Complaint,
        Verdict::Unsubscribe,
        Verdict::Challenge,
        Verdict::Human,
    ];

    /// The event a report of this kind is about a recipient of ours, if
    /// any (a person's mail is no outcome).
    pub fn event(self) -> Option<EventKind> {
        Some(match self {
            Verdict::Bounce => EventKind::Bounced,
            Verdict::Delay => EventKind::Deferred,
            Verdict::Delivered => EventKind::Delivered,
            Verdict::Autoreply | Verdict::Challenge => EventKind::Autoreplied,
            Verdict::Complaint => EventKind::Complained,
            Verdict::Unsubscribe => EventKind::Unsubscribed,
            Verdict::Human => return None,
        })
    }

    /// The store folder a message of this kind is filed in (`hard`: a
    /// bounce whose address will never work).
    pub fn folder(self, hard: bool) -> &'static str {
        match self {
            Verdict::Bounce if hard => "Bounces/Hard",
            Verdict::Bounce => "Bounces/Soft",
            Verdict::Delay => "Delays",
            Verdict::Delivered => "Delivered",
            Verdict::Autoreply => "AutoReplies",
            Verdict::Complaint => "Complaints",
            Verdict::Unsubscribe => "Unsubscribes",
            Verdict::Challenge => "Challenges",
            Verdict::Human => "Human",
        }
    }

    /// Its IMAP keyword, `$Verdict_<verdict>`.
    pub fn keyword(self) -> String {
        format!("$Verdict_{}", self.as_str())
    }
}

/// Why a message was not delivered: one taxonomy across sluice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    Userunknown,
    Hostunknown,
    Mailboxfull,
    Suspend,
    Hasmoved,
    Filtered,
    Rejected,
    Blocked,
    Badreputation,
    Spamdetected,
    Virusdetected,
    Contenterror,
    Mesgtoobig,
    Exceedlimit,
    Policyviolation,
    Securityerror,
    Authfailure,
    Requireptr,
    Notcompliantrfc,
    Failedstarttls,
    Norelaying,
    Notaccept,
    Toomanyconn,
    Speeding,
    Syntaxerror,
    Systemerror,
    Systemfull,
    Networkerror,
    Mailererror,
    Expired,
    Onhold,
    Delivered,
    Vacation,
    Feedback,
    Undefined,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Userunknown => "userunknown",
            Reason::Hostunknown => "hostunknown",
            Reason::Mailboxfull => "mailboxfull",
            Reason::Suspend => "suspend",
            Reason::Hasmoved => "hasmoved",
            Reason::Filtered => "filtered",
            Reason::Rejected => "rejected",
            Reason::Blocked => "blocked",
            Reason::Badreputation => "badreputation",
            Reason::Spamdetected => "spamdetected",
            Reason::Virusdetected => "virusdetected",
            Reason::Contenterror => "contenterror",
            Reason::Mesgtoobig => "mesgtoobig",
            Reason::Exceedlimit => "exceedlimit",
            Reason::Policyviolation => "policyviolation",
            Reason::Securityerror => "securityerror",
            Reason::Authfailure => "authfailure",
            Reason::Requireptr => "requireptr",
            Reason::Notcompliantrfc => "notcompliantrfc",
            Reason::Failedstarttls => "failedstarttls",
            Reason::Norelaying => "norelaying",
            Reason::Notaccept => "notaccept",
            Reason::Toomanyconn => "toomanyconn",
            Reason::Speeding => "speeding",
            Reason::Syntaxerror => "syntaxerror",
            Reason::Systemerror => "systemerror",
            Reason::Systemfull => "systemfull",
            Reason::Networkerror => "networkerror",
            Reason::Mailererror => "mailererror",
            Reason::Expired => "expired",
            Reason::Onhold => "onhold",
            Reason::Delivered => "delivered",
            Reason::Vacation => "vacation",
            Reason::Feedback => "feedback",
            Reason::Undefined => "undefined",
        }
    }

    /// A hard bounce as the de facto standard (Sisimai) counts one: the
    /// address will never work. A suspended mailbox is soft (it can be
    /// reactivated), though it is still a reason to suppress
    /// ([`Reason::is_address_level`]). Notaccept is hard only when final
    /// ([`is_hard`]).
    pub fn is_hard(self) -> bool {
        matches!(self, Reason::Userunknown | Reason::Hostunknown | Reason::Hasmoved)
    }

    /// The address itself is bad: suppress it (when the failure is final).
    /// Everything else is about the message, the sender or the path, never a
    /// reason to suppress.
    pub fn is_address_level(self) -> bool {
        matches!(
            self,
            Reason::Userunknown
                | Reason::Hostunknown
                | Reason::Suspend
                | Reason::Hasmoved
                | Reason::Notaccept
        )
    }
}

impl Reason {
    /// Its IMAP keyword, `$Reason_<reason>`.
    pub fn keyword(self) -> String {
        format!("$Reason_{}", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verdict_has_a_folder_a_keyword_and_at_most_one_event() {
        let mut folders = std::collections::HashSet::new();
        for v in Verdict::ALL {
            assert!(folders.insert(v.folder(false)), "{v:?} shares a folder");
            assert_eq!(v.keyword(), format!("$Verdict_{}", v.as_str()));
            // A report's event is one a recipient's status can take.
            if let Some(e) = v.event() {
                assert!(EventKind::ALL.contains(&e), "{v:?} -> {e:?}");
            }
        }
        assert_ne!(Verdict::Bounce.folder(true), Verdict::Bounce.folder(false));
        assert_eq!(Verdict::Human.event(), None);
        assert_eq!(Reason::Userunknown.keyword(), "$Reason_userunknown");
    }
}
