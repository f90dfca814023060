//! Whatever bytes a stored copy holds, describing it for IMAP (BODYSTRUCTURE,
//! ENVELOPE, section lookup) must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let e = imap::mime::Entity::parse(data);
    let mut out = imap::wire::Out::default();
    e.structure(&mut out, true);
    e.envelope(&mut out);
    for path in [&[1u32][..], &[1, 1], &[2, 3, 1]] {
        let _ = e.locate(path);
    }
});
