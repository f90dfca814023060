//! Fuzzes the SMTP input path: command framing, command parsing and DATA
//! dot-unstuffing, fed the same bytes in arbitrary chunkings. None may panic,
//! and unstuffing must never produce more bytes than it consumed.
#![no_main]

use ingress::framing::{DotReader, Frame, LineFramer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |b| usize::from(*b % 64) + 1);
    let mut framer = LineFramer::new(512);
    let mut buf = Vec::new();
    let mut pos = 0;
    for chunk in data.chunks(split) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = framer.next(&buf, &mut pos) {
            if let Frame::Line(line) = frame {
                let _ = smtp_proto::Request::parse(&mut line.iter());
            }
        }
    }
    let mut reader = DotReader::new(1 << 16);
    let mut out = Vec::new();
    let mut consumed = 0;
    for chunk in data.chunks(split) {
        let (used, done) = reader.feed(chunk, &mut out);
        consumed += used;
        assert!(used <= chunk.len());
        if done {
            break;
        }
    }
    assert!(out.len() <= consumed);
});
