//! Fuzzes the classifier: any bytes give a classification, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let c = decide::classify(data);
    let _ = c.verdict.as_str();
});
