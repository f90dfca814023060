//! Fuzzes a send request's body: any bytes are refused or built into a
//! message, never a panic; and a built message's header section never holds
//! a Bcc line (the field that would leak hidden recipients).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<api::SendRequest>(data) else { return };
    if let Ok(c) = api::compose(&req, "fuzz.test") {
        let head_end = c.content.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(c.content.len());
        let head = String::from_utf8_lossy(&c.content[..head_end]).to_ascii_lowercase();
        assert!(!head.split("\r\n").any(|l| l.starts_with("bcc:")));
    }
});
