//! Arbitrary bytes never panic the classifier, nor do damaged reports: the
//! fixtures cut short, or with bytes flipped.

use proptest::prelude::*;

fn fixture_bytes() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces");
    std::fs::read_dir(dir)
        .expect("fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .take(20)
        .map(|p| std::fs::read(p).expect("fixture"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decide::classify(&data);
    }

    #[test]
    fn damaged_reports(which in 0usize..20, cut in 0.0f64..1.0, flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 0..16)) {
        let all = fixture_bytes();
        let mut m = all[which % all.len()].clone();
        m.truncate((m.len() as f64 * cut) as usize);
        for (at, b) in flips {
            if !m.is_empty() {
                let i = ((m.len() - 1) as f64 * at) as usize;
                m[i] = b;
            }
        }
        let c = decide::classify(&m);
        // Whatever the damage, the result serialises.
        prop_assert!(serde_json::to_string(&c).is_ok());
    }
}
