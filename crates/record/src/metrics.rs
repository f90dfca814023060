//! What the record counts for Prometheus (`docs/metrics.md`): every event
//! it commits, by the schema's name and a reason from a fixed vocabulary,
//! and the size of each batch its writers commit. Counted after the
//! commit, so the counters follow the `events` table row for row.

use serde::Deserialize;
use serde::de::IntoDeserializer;
use vocabulary::{EventKind, Reason};

use crate::events::NewEvent;

/// Filter mode's actions (`filtered`), the machine classes of opens and
/// clicks, and the folders filter mode files in (`filed`): with the
/// classifier's [`Reason`]s, every `reason` label there can be.
const OTHER_REASONS: [&str; 11] = [
    "deliver",
    "tag",
    "quarantine",
    "reject",
    "tempfail",
    "human",
    "privacy_proxy",
    "scanner",
    "unknown",
    "spam",
    "archive",
];

/// The `reason` label of an event: the reason itself when it is one of
/// the schema's words, `none` without one, `other` for anything else (a
/// provider's own wording, free text): never an address, so the label's
/// values stay few.
pub fn reason_label(reason: Option<&str>) -> &'static str {
    let Some(reason) = reason else { return "none" };
    if let Some(known) = OTHER_REASONS.iter().find(|r| **r == reason) {
        return known;
    }
    let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = reason.into_deserializer();
    Reason::deserialize(de).map_or("other", Reason::as_str)
}

/// Counts events the record has just committed.
pub(crate) fn committed<'a>(events: impl Iterator<Item = &'a NewEvent>) {
    for e in events {
        counted(e.kind, e.reason.as_deref());
    }
}

fn counted(kind: EventKind, reason: Option<&str>) {
    metrics::counter!("sluice_events_total", "type" => kind.as_str(), "reason" => reason_label(reason))
        .increment(1);
}

/// A batch a writer committed (`writer`: `api` for the writes callers wait
/// for, `front` for the front line's).
pub(crate) fn batch(writer: &'static str, writes: usize) {
    metrics::histogram!("sluice_record_batch_size", "writer" => writer).record(writes as f64);
}

#[cfg(test)]
mod tests {
    use super::reason_label;

    #[test]
    fn reasons_are_the_schemas_words_or_other() {
        assert_eq!(reason_label(None), "none");
        assert_eq!(reason_label(Some("userunknown")), "userunknown");
        assert_eq!(reason_label(Some("mailboxfull")), "mailboxfull");
        assert_eq!(reason_label(Some("quarantine")), "quarantine");
        assert_eq!(reason_label(Some("privacy_proxy")), "privacy_proxy");
        assert_eq!(reason_label(Some("spam")), "spam");
        // A provider's wording, an address, anything else: one value.
        assert_eq!(reason_label(Some("Permanent: General")), "other");
        assert_eq!(reason_label(Some("ann@example.com")), "other");
        assert_eq!(reason_label(Some("UserUnknown")), "other");
        assert_eq!(reason_label(Some("")), "other");
    }
}
