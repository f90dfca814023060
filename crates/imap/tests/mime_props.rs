//! Whatever bytes a stored message holds, describing it for IMAP never
//! panics, and every section handed out is a slice of the message.

use imap::mime::Entity;
use imap::wire::Out;
use proptest::prelude::*;

fn mime_like() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::collection::vec(
        prop_oneof![
            Just(b"Content-Type: multipart/mixed; boundary=b\r\n".to_vec()),
            Just(b"Content-Type: message/rfc822\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"--b\r\n".to_vec()),
            Just(b"--b--\r\n".to_vec()),
            Just(b"Subject: =?utf-8?q?x?=\r\n".to_vec()),
            Just(b"From: \"A\" <a@b>, c@d\r\n".to_vec()),
            Just(b" folded\r\n".to_vec()),
            prop::collection::vec(any::<u8>(), 0..40),
        ],
        0..40,
    );
    pieces.prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn describing_any_message_never_panics(raw in mime_like()) {
        let e = Entity::parse(&raw);
        let mut out = Out::default();
        e.structure(&mut out, true);
        e.envelope(&mut out);
        prop_assert!(!out.is_empty());
        for path in [&[1u32][..], &[1, 1], &[2, 1, 3], &[3]] {
            if let Some(p) = e.locate(path) {
                let range = raw.as_ptr_range();
                prop_assert!(range.contains(&p.body.as_ptr()) || p.body.is_empty());
                prop_assert!(range.contains(&p.header.as_ptr()) || p.header.is_empty());
            }
        }
    }
}
