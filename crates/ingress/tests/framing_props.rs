//! Property tests of the sans-IO framing (the same code the `smtp` fuzz target
//! drives): arbitrary bytes in arbitrary chunkings never panic, unstuffing is
//! independent of how the input is split, and stuffed content round-trips.

use ingress::framing::{DotReader, Frame, LineFramer};
use proptest::prelude::*;

fn unstuff_in_chunks(data: &[u8], chunk: usize) -> (Vec<u8>, bool, usize) {
    let mut r = DotReader::new(1 << 20);
    let mut out = Vec::new();
    let mut consumed = 0;
    for c in data.chunks(chunk.max(1)) {
        let (used, done) = r.feed(c, &mut out);
        consumed += used;
        if done {
            return (out, true, consumed);
        }
    }
    (out, false, consumed)
}

/// What a sender does: a dot at a line start (after CRLF) is doubled, and the
/// terminator follows.
fn stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line_start = true;
    for (i, &b) in content.iter().enumerate() {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n' && i > 0 && content[i - 1] == b'\r';
    }
    out.extend_from_slice(b".\r\n");
    out
}

proptest! {
    #[test]
    fn framing_never_panics(data in proptest::collection::vec(any::<u8>(), 0..4096), chunk in 1usize..64) {
        let mut framer = LineFramer::new(512);
        let mut buf = Vec::new();
        let mut pos = 0;
        for c in data.chunks(chunk) {
            buf.extend_from_slice(c);
            while let Some(frame) = framer.next(&buf, &mut pos) {
                if let Frame::Line(line) = frame {
                    prop_assert!(line.len() <= 512);
                    let _ = smtp_proto::Request::parse(&mut line.iter());
                }
            }
        }
        let (a, done_a, used_a) = unstuff_in_chunks(&data, chunk);
        let (b, done_b, used_b) = unstuff_in_chunks(&data, data.len().max(1));
        prop_assert_eq!(a, b);
        prop_assert_eq!(done_a, done_b);
        prop_assert_eq!(used_a, used_b);
    }

    #[test]
    fn stuffed_content_round_trips(lines in proptest::collection::vec("[.a-z]{0,4}(\r[.a-z]{1,3})?", 0..20), chunk in 1usize..16) {
        // Content is CRLF-terminated lines (what DATA can carry), some with a
        // bare CR inside.
        let content: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect();
        let wire = stuff(&content);
        let (out, done, used) = unstuff_in_chunks(&wire, chunk);
        prop_assert!(done);
        prop_assert_eq!(used, wire.len());
        prop_assert_eq!(out, content);
    }
}
