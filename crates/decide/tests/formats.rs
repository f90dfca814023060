//! The non-standard report layouts of `formats/`: for each sample, the
//! verdict, the reason and the failed recipients it was written with.

use std::path::Path;

#[test]
fn every_layout_names_its_recipients_and_cause() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/formats");
    let expected = std::fs::read_to_string(dir.join("expected.txt")).expect("expected.txt");
    let mut wrong = Vec::new();
    let mut checked = 0;
    for line in expected.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let mut cols = line.split_whitespace();
        let (Some(file), Some(verdict), Some(reason)) = (cols.next(), cols.next(), cols.next()) else {
            panic!("malformed line in expected.txt: {line}");
        };
        let want: Vec<&str> = cols.collect();
        let raw = std::fs::read(dir.join(file)).expect("sample");
        let c = decide::classify(&raw);
        let got: Vec<&str> = c.recipients.iter().map(|r| r.address.as_str()).collect();
        let mut reasons: Vec<&str> = c.recipients.iter().map(|r| r.reason.as_str()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        if c.verdict.as_str() != verdict || got != want || reasons.join(",") != reason {
            wrong.push(format!(
                "{file}: want {verdict} {reason} {want:?}, got {} {} {got:?}",
                c.verdict.as_str(),
                reasons.join(",")
            ));
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} samples listed");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
