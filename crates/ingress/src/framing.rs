//! Sans-IO framing of an SMTP byte stream: command lines with a length cap,
//! and DATA content with dot-unstuffing. Nothing here touches a socket; the
//! session feeds bytes in and acts on what comes out, and the fuzz target
//! drives the same code.
//!
//! **Only `<CRLF>.<CRLF>` ends DATA.** A bare LF is content, never a line end,
//! so a message cannot smuggle a second one past us (CVE-2023-51764 family).

/// One framed command line, or the news that a line was too long.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line including its terminating LF (and CR if present).
    Line(&'a [u8]),
    /// A line longer than the cap was discarded up to its LF.
    TooLong,
}

/// Splits buffered input into command lines of at most `max` bytes.
#[derive(Debug)]
pub struct LineFramer {
    max: usize,
    /// We are inside an over-long line, discarding until its LF.
    discarding: bool,
}

impl LineFramer {
    pub fn new(max: usize) -> Self {
        LineFramer { max: max.max(16), discarding: false }
    }

    /// Takes the next frame from `buf[*pos..]`, advancing `pos`. `None` means
    /// more input is needed.
    pub fn next<'a>(&mut self, buf: &'a [u8], pos: &mut usize) -> Option<Frame<'a>> {
        let rest = buf.get(*pos..)?;
        match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => {
                *pos += nl + 1;
                if self.discarding || nl + 1 > self.max {
                    self.discarding = false;
                    Some(Frame::TooLong)
                } else {
                    Some(Frame::Line(&rest[..=nl]))
                }
            }
            None if rest.len() > self.max || self.discarding => {
                // Drop what we have; the line is answered once, at its end.
                *pos = buf.len();
                self.discarding = true;
                None
            }
            None => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DotState {
    /// Just after CRLF (or at the very start of DATA).
    LineStart,
    /// A dot at the start of a line.
    Dot,
    /// `CRLF . CR`
    DotCr,
    /// Inside a line.
    Mid,
    /// Inside a line, just after a CR.
    Cr,
}

/// Collects DATA content, undoing dot-stuffing, until `<CRLF>.<CRLF>`.
/// Bytes beyond `limit` are counted but not kept, so an oversized message is
/// read to its end and answered with 552 instead of desynchronising.
#[derive(Debug)]
pub struct DotReader {
    state: DotState,
    limit: usize,
    seen: usize,
}

impl DotReader {
    pub fn new(limit: usize) -> Self {
        DotReader { state: DotState::LineStart, limit, seen: 0 }
    }

    /// Content bytes seen so far (after unstuffing), kept or not.
    pub fn size(&self) -> usize {
        self.seen
    }

    pub fn exceeded(&self) -> bool {
        self.seen > self.limit
    }

    fn push(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.seen);
        out.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.seen += bytes.len();
    }

    /// Consumes input into `out`. Returns `(consumed, finished)`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                DotState::Mid => {
                    // Fast path: copy up to the next CR in one go.
                    let rest = &input[i..];
                    match rest.iter().position(|&b| b == b'\r') {
                        Some(cr) => {
                            self.push(out, &rest[..=cr]);
                            i += cr + 1;
                            self.state = DotState::Cr;
                        }
                        None => {
                            self.push(out, rest);
                            i = input.len();
                        }
                    }
                }
                DotState::Cr => {
                    let b = input[i];
                    i += 1;
                    self.push(out, &[b]);
                    self.state = match b {
                        b'\n' => DotState::LineStart,
                        b'\r' => DotState::Cr,
                        _ => DotState::Mid,
                    };
                }
                DotState::LineStart => {
                    let b = input[i];
                    i += 1;
                    if b == b'.' {
                        self.state = DotState::Dot;
                    } else {
                        self.push(out, &[b]);
                        self.state = if b == b'\r' { DotState::Cr } else { DotState::Mid };
                    }
                }
                DotState::Dot => {
                    let b = input[i];
                    i += 1;
                    if b == b'\r' {
                        self.state = DotState::DotCr;
                    } else {
                        // A stuffed dot: the leading dot is dropped.
                        self.push(out, &[b]);
                        self.state = DotState::Mid;
                    }
                }
                DotState::DotCr => {
                    let b = input[i];
                    i += 1;
                    if b == b'\n' {
                        self.state = DotState::LineStart;
                        return (i, true);
                    }
                    // ". CR x": the dot was stuffing, the CR is content.
                    self.push(out, b"\r");
                    self.push(out, &[b]);
                    self.state = match b {
                        b'\r' => DotState::Cr,
                        _ => DotState::Mid,
                    };
                }
            }
        }
        (i, false)
    }
}

/// Trims the line terminator (CRLF or LF) off a command line.
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unstuff(chunks: &[&[u8]]) -> (Vec<u8>, bool, usize) {
        let mut r = DotReader::new(1 << 20);
        let mut out = Vec::new();
        let mut leftover = 0;
        for c in chunks {
            let (used, done) = r.feed(c, &mut out);
            if done {
                leftover = c.len() - used;
                return (out, true, leftover);
            }
        }
        (out, false, leftover)
    }

    #[test]
    fn data_cases() {
        let cases: &[(&[u8], &[u8])] = &[
            (b".\r\n", b""),
            (b"a\r\n.\r\n", b"a\r\n"),
            (b"..x\r\n.\r\n", b".x\r\n"),
            (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n"),
            (b"bare\nlf\n.\nnot end\r\n.\r\n", b"bare\nlf\n.\nnot end\r\n"),
            (b"cr\ronly\r\n.\r\n", b"cr\ronly\r\n"),
            (b"x\r\n.\rz\r\n.\r\n", b"x\r\n\rz\r\n"),
            (b"\x00\xff\xfe\r\n.\r\n", b"\x00\xff\xfe\r\n"),
        ];
        for (input, want) in cases {
            let (out, done, _) = unstuff(&[input]);
            assert!(done, "{input:?}");
            assert_eq!(&out, want, "{input:?}");
            // Same result fed one byte at a time.
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            let (out, done, _) = unstuff(&bytes);
            assert!(done);
            assert_eq!(&out, want);
        }
    }

    #[test]
    fn data_stops_at_terminator_and_leaves_pipelined_bytes() {
        let (out, done, left) = unstuff(&[b"hi\r\n.\r\nQUIT\r\n"]);
        assert!(done);
        assert_eq!(out, b"hi\r\n");
        assert_eq!(left, 6);
    }

    #[test]
    fn oversize_is_counted_not_kept() {
        let mut r = DotReader::new(4);
        let mut out = Vec::new();
        let (_, done) = r.feed(b"123456789\r\n.\r\n", &mut out);
        assert!(done);
        assert!(r.exceeded());
        assert_eq!(out, b"1234");
    }

    #[test]
    fn lines_and_overlong_lines() {
        let mut f = LineFramer::new(16);
        let buf = b"EHLO x\r\nNOOP\n";
        let mut pos = 0;
        assert_eq!(f.next(buf, &mut pos), Some(Frame::Line(b"EHLO x\r\n")));
        assert_eq!(f.next(buf, &mut pos), Some(Frame::Line(b"NOOP\n")));
        assert_eq!(f.next(buf, &mut pos), None);

        let long = vec![b'A'; 40];
        let mut pos = 0;
        assert_eq!(f.next(&long, &mut pos), None);
        assert_eq!(pos, 40);
        let tail = b"AAAA\r\nNOOP\r\n";
        let mut pos = 0;
        assert_eq!(f.next(tail, &mut pos), Some(Frame::TooLong));
        assert_eq!(f.next(tail, &mut pos), Some(Frame::Line(b"NOOP\r\n")));
    }
}
