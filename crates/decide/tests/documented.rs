//! Replies as their writers document them (`documented/replies.tsv`: the
//! provider's SMTP error reference, the MTA's source, the RFC), each with
//! the reason its documentation gives: the rules must read every one so,
//! whatever the fixtures say.

use std::path::Path;

#[test]
fn documented_replies_read_as_documented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/documented/replies.tsv");
    let table = std::fs::read_to_string(path).expect("replies.tsv");
    let mut wrong = Vec::new();
    let mut rows = 0;
    for line in table.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [reason, status, text, source] = cols[..] else { panic!("not four columns: {line}") };
        let got = decide::reason_of_reply(text, Some(status));
        if got.as_str() != reason {
            wrong.push(format!("{text}\n  documented {reason} ({source}), read as {}", got.as_str()));
        }
        rows += 1;
    }
    assert!(rows >= 40, "only {rows} rows");
    assert!(wrong.is_empty(), "{} of {rows} wrong:\n{}", wrong.len(), wrong.join("\n"));
}
