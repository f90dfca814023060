//! Client-side SMTP wire helpers, sans-IO: reply parsing, EHLO capabilities
//! and DATA dot-stuffing.

use vocabulary::Reply;

/// What the server said it supports.
#[derive(Debug, Default, Clone)]
pub struct Caps {
    pub pipelining: bool,
    pub chunking: bool,
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub starttls: bool,
    /// RFC 3461 DSN.
    pub dsn: bool,
    pub size: Option<usize>,
    /// AUTH mechanisms offered, upper-cased.
    pub auth: Vec<String>,
}

impl Caps {
    /// Reads the EHLO reply's keyword lines (the first line is the greeting).
    pub fn from_ehlo(reply: &Reply) -> Caps {
        let mut caps = Caps::default();
        for line in reply.text.lines().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else { continue };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "CHUNKING" => caps.chunking = true,
                "8BITMIME" => caps.eight_bit = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "DSN" => caps.dsn = true,
                "SIZE" => caps.size = words.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0),
                "AUTH" => caps.auth.extend(words.map(str::to_ascii_uppercase)),
                // The pre-RFC 4954 form some servers still send beside AUTH.
                k if k.starts_with("AUTH=") => {
                    caps.auth.extend(k[5..].split(',').chain(words).map(str::to_ascii_uppercase))
                }
                _ => {}
            }
        }
        caps.auth.sort();
        caps.auth.dedup();
        caps
    }
}

/// Outcome of feeding bytes to [`parse_reply`].
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete reply and how many bytes it used.
    Reply(Reply, usize),
    Incomplete,
    Malformed,
}

/// The most lines one reply may have before we call it hostile.
const MAX_REPLY_LINES: usize = 200;

/// Parses one (possibly multi-line) reply from the start of `buf`.
/// The enhanced status code, when every line carries the same one, is taken
/// out of the text into `Reply::status`.
pub fn parse_reply(buf: &[u8]) -> Parsed {
    let mut pos = 0;
    let mut code = None;
    let mut lines: Vec<String> = Vec::new();
    loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else { return Parsed::Incomplete };
        let line = &buf[pos..pos + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += nl + 1;
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Parsed::Malformed;
        }
        let this: u16 =
            (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
        if !(200..600).contains(&this) || code.is_some_and(|c| c != this) {
            return Parsed::Malformed;
        }
        code = Some(this);
        let sep = line.get(3).copied().unwrap_or(b' ');
        let text = String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned();
        lines.push(text);
        match sep {
            b' ' => break,
            b'-' if lines.len() < MAX_REPLY_LINES => continue,
            _ => return Parsed::Malformed,
        }
    }
    let code = code.unwrap_or(451);
    let status = common_status(code, &lines);
    if let Some(s) = &status {
        for l in &mut lines {
            if let Some(rest) = l.strip_prefix(s.as_str()) {
                *l = rest.trim_start().to_string();
            }
        }
    }
    Parsed::Reply(Reply { code, status, text: lines.join("\n") }, pos)
}

/// The enhanced status (`x.y.z`, class matching the code) at the start of
/// the first line, if present.
fn common_status(code: u16, lines: &[String]) -> Option<String> {
    let first = lines.first()?.split_whitespace().next()?;
    let mut parts = first.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || class.len() != 1 || class != ((code / 100).to_string()) {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(subject) && digits(detail)).then(|| first.to_string())
}

/// The content as DATA sends it: a dot at the start of any line gets a second
/// dot, and the content ends with CRLF before the final `.` line.
///
/// A line starts after CRLF *and after a bare LF*: downstreams that treat a
/// bare LF as a line end (many do) must not see `LF . CRLF` as the end of data
/// — that is how SMTP smuggling works. Against a strict downstream this adds a
/// dot to such a line; ingress keeps bare LFs rare (they are invalid in DATA),
/// and BDAT, used whenever offered, needs no stuffing at all.
///
/// Content that does not end with CRLF gets one appended: the only change DATA
/// can force on a message (ingress guarantees DATA content already ends so).
pub fn dot_stuff(parts: &[&[u8]]) -> Vec<u8> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(total + total / 64 + 8);
    let mut at_line_start = true;
    for part in parts {
        let mut rest: &[u8] = part;
        while !rest.is_empty() {
            if at_line_start && rest[0] == b'.' {
                out.push(b'.');
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    out.extend_from_slice(&rest[..=nl]);
                    rest = &rest[nl + 1..];
                    at_line_start = true;
                }
                None => {
                    out.extend_from_slice(rest);
                    at_line_start = false;
                    rest = &[];
                }
            }
        }
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let Parsed::Reply(r, used) = parse_reply(b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\nrest")
        else {
            panic!()
        };
        assert_eq!(used, 43);
        assert_eq!(r.code, 250);
        let caps = Caps::from_ehlo(&r);
        assert!(caps.pipelining && !caps.chunking);
        assert_eq!(caps.size, Some(100));
        let Parsed::Reply(r, _) =
            parse_reply(b"250-mx.test\r\n250-AUTH=LOGIN\r\n250-AUTH login Plain\r\n250 STARTTLS\r\n")
        else {
            panic!()
        };
        assert_eq!(Caps::from_ehlo(&r).auth, ["LOGIN", "PLAIN"]);
        let Parsed::Reply(r, _) = parse_reply(b"550 5.1.1 <x@y>: no such user\r\n") else { panic!() };
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.text, "<x@y>: no such user");
        let Parsed::Reply(r, _) = parse_reply(b"250 2.0.0 Ok\n") else { panic!() };
        assert_eq!(r.status.as_deref(), Some("2.0.0"));
        let Parsed::Reply(r, _) = parse_reply(b"451 5.1.1 mismatched class\r\n") else { panic!() };
        assert_eq!(r.status, None);
        assert_eq!(parse_reply(b"250-partial\r\n"), Parsed::Incomplete);
        assert_eq!(parse_reply(b"hello\r\n"), Parsed::Malformed);
        assert_eq!(parse_reply(b"250-a\r\n354 b\r\n"), Parsed::Malformed);
        assert_eq!(parse_reply(b"999 x\r\n"), Parsed::Malformed);
    }

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(&[b".a\r\nb\r\n..c\r\n"]), b"..a\r\nb\r\n...c\r\n.\r\n");
        assert_eq!(dot_stuff(&[b"x\n.\r\n"]), b"x\n..\r\n.\r\n", "dot after bare LF is stuffed");
        assert_eq!(dot_stuff(&[b"no end"]), b"no end\r\n.\r\n");
        assert_eq!(dot_stuff(&[b"Received: x\r\n", b".body\r\n"]), b"Received: x\r\n..body\r\n.\r\n");
        assert_eq!(dot_stuff(&[b"a\r", b"\n.b\r\n"]), b"a\r\n..b\r\n.\r\n", "line start across parts");
        assert_eq!(dot_stuff(&[b""]), b"\r\n.\r\n");
        assert_eq!(dot_stuff(&[b"cr\r.x\r\n"]), b"cr\r.x\r\n.\r\n", "a bare CR is not a line end");
    }
}
