//! Scoring the classifier against a labelled corpus (`labels.jsonl`, one row
//! per failed recipient). Pure: the CLI reads the files and prints the report.
//!
//! Rules: only rows with confidence `high` (or no confidence field) count; a
//! row whose `go_alt` is set counts either label; statuses are scored only
//! where the label is an RFC 3463 code.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;

use crate::Classification;

#[derive(Debug, Clone, Deserialize)]
pub struct LabelRow {
    pub file: String,
    #[serde(default)]
    pub engine: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub hardbounce: Option<bool>,
    #[serde(default)]
    pub recipient: Option<String>,
    #[serde(default)]
    pub confidence: Option<String>,
    /// The other library's reason where the labels disagree: a reason, or
    /// the whole alternative label (`{"reason": ..., "status": ...}`).
    #[serde(default, deserialize_with = "alternative_reason")]
    pub go_alt: Option<String>,
}

fn alternative_reason<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Alt {
        Reason(String),
        Label { reason: Option<String> },
    }
    Ok(match Option::<Alt>::deserialize(d)? {
        Some(Alt::Reason(r)) => Some(r),
        Some(Alt::Label { reason }) => reason,
        None => None,
    })
}

impl LabelRow {
    fn counts(&self) -> bool {
        self.confidence.as_deref().is_none_or(|c| c == "high") && self.reason.is_some()
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub right: u32,
    pub total: u32,
}

impl Tally {
    fn add(&mut self, ok: bool) {
        self.total += 1;
        self.right += u32::from(ok);
    }

    pub fn ratio(&self) -> f64 {
        if self.total == 0 { 1.0 } else { f64::from(self.right) / f64::from(self.total) }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub rows: u32,
    pub reason: Tally,
    pub recipient: Tally,
    pub status: Tally,
    pub hard: Tally,
    pub by_reason: BTreeMap<String, Tally>,
    pub by_status: BTreeMap<String, Tally>,
    pub by_engine: BTreeMap<String, Tally>,
    /// (expected, got) → count, mistakes only.
    pub confusion: BTreeMap<(String, String), u32>,
    /// Files with a wrong reason, for a look.
    pub misses: Vec<String>,
}

fn is_rfc3463(s: &str) -> bool {
    let mut parts = s.split('.');
    let class = parts.next().unwrap_or("");
    let subject = parts.next().unwrap_or("");
    let detail = parts.next().unwrap_or("");
    matches!(class, "2" | "4" | "5")
        && subject.len() == 1
        && subject.bytes().all(|b| (b'0'..=b'7').contains(&b))
        && !detail.is_empty()
        && detail.bytes().all(|b| b.is_ascii_digit())
        && parts.next().is_none()
        && !(subject == "0" && detail.len() == 3 && detail.starts_with('9'))
}

/// Scores classifications (by file name) against label rows.
pub fn evaluate(rows: &[LabelRow], results: &BTreeMap<String, Classification>) -> Report {
    let mut r = Report::default();
    for row in rows.iter().filter(|row| row.counts()) {
        r.rows += 1;
        let Some(expected) = row.reason.as_deref() else { continue };
        let got = results.get(&row.file);
        let entry = got.and_then(|c| {
            let want = row.recipient.as_deref().unwrap_or("");
            c.recipients
                .iter()
                .find(|x| x.address.eq_ignore_ascii_case(want))
                .or_else(|| c.recipients.first().filter(|_| want.is_empty()))
        });
        let got_reason = entry.map(|e| e.reason.as_str()).unwrap_or("(none)");
        let reason_ok = got_reason == expected || row.go_alt.as_deref() == Some(got_reason);
        r.reason.add(reason_ok);
        r.recipient.add(entry.is_some() || row.recipient.as_deref().is_none_or(str::is_empty));
        r.by_reason.entry(expected.to_string()).or_default().add(reason_ok);
        r.by_engine.entry(row.engine.clone().unwrap_or_default()).or_default().add(reason_ok);
        if !reason_ok {
            *r.confusion.entry((expected.to_string(), got_reason.to_string())).or_default() += 1;
            r.misses.push(format!("{} {} → {}", row.file, expected, got_reason));
        }
        if let Some(status) = row.status.as_deref().filter(|s| is_rfc3463(s)) {
            let ok = entry.and_then(|e| e.status.as_deref()) == Some(status);
            r.status.add(ok);
            r.by_status.entry(status.to_string()).or_default().add(ok);
        }
        if let Some(hard) = row.hardbounce {
            r.hard.add(entry.map(|e| e.hard) == Some(hard));
        }
    }
    r
}

impl Report {
    /// The report as text for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let pct = |t: &Tally| format!("{:6.2}% ({}/{})", 100.0 * t.ratio(), t.right, t.total);
        let _ = writeln!(out, "rows scored (confidence high): {}", self.rows);
        let _ = writeln!(out, "reason accuracy:    {}", pct(&self.reason));
        let _ = writeln!(out, "recipient accuracy: {}", pct(&self.recipient));
        let _ = writeln!(out, "status accuracy:    {}  (RFC 3463 labels only)", pct(&self.status));
        let _ = writeln!(out, "hard/soft accuracy: {}", pct(&self.hard));
        for (title, map) in
            [("reason", &self.by_reason), ("status", &self.by_status), ("engine", &self.by_engine)]
        {
            let _ = writeln!(out, "\nper {title}:");
            for (k, t) in map {
                let _ = writeln!(out, "  {k:24} {}", pct(t));
            }
        }
        let _ = writeln!(out, "\nconfusion (expected → got: count):");
        for ((e, g), n) in &self.confusion {
            let _ = writeln!(out, "  {e:16} → {g:16} {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels() {
        assert!(is_rfc3463("5.1.1"));
        assert!(is_rfc3463("4.4.7"));
        assert!(!is_rfc3463("5.0.910"));
        assert!(!is_rfc3463(""));
        assert!(!is_rfc3463("5.9.1"));
    }

    #[test]
    fn go_alt_may_be_a_whole_label() {
        let row: LabelRow = serde_json::from_str(
            r#"{"file":"a","reason":"blocked","go_alt":{"reason":"rejected","status":"5.7.1"}}"#,
        )
        .unwrap();
        assert_eq!(row.go_alt.as_deref(), Some("rejected"));
    }

    #[test]
    fn go_alt_counts_either_label() {
        let rows: Vec<LabelRow> = serde_json::from_str(
            r#"[{"file":"a","reason":"blocked","go_alt":"rejected","recipient":"x@y.test","confidence":"high","status":"5.7.1","hardbounce":false},
                {"file":"b","reason":"userunknown","recipient":"z@y","confidence":"disputed"}]"#,
        )
        .unwrap();
        let c = crate::classify(b"From: MAILER-DAEMON@y.test\r\nSubject: Undelivered Mail Returned to Sender\r\nTo: s@q.test\r\n\r\n<x@y.test>: 550 5.7.1 message rejected\r\n");
        let results = BTreeMap::from([("a".to_string(), c)]);
        let r = evaluate(&rows, &results);
        assert_eq!(r.rows, 1, "disputed rows do not count");
        assert_eq!(r.recipient.right, 1);
        assert_eq!(r.reason.right, 1, "{}", r.render());
        assert_eq!(r.status.right, 1);
    }
}
