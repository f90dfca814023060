//! The MIME structure of a stored message, read straight off its bytes so
//! that every section IMAP hands out is an exact slice of what was received:
//! BODYSTRUCTURE, ENVELOPE and `BODY[section]` are all computed here.

use base64::Engine;
use mail_parser::{Address, MessageParser};

use crate::wire::{Out, list_or_nil};

/// Nesting deeper than this is treated as an opaque leaf.
const MAX_DEPTH: usize = 32;

/// One MIME entity: its header block, its body, and its children.
pub struct Entity<'a> {
    /// The header block including the blank line that ends it.
    pub header: &'a [u8],
    pub body: &'a [u8],
    pub ctype: String,
    pub subtype: String,
    pub params: Vec<(String, String)>,
    /// Parts of a multipart.
    pub parts: Vec<Entity<'a>>,
    /// The message inside a message/rfc822 part.
    pub message: Option<Box<Entity<'a>>>,
}

impl<'a> Entity<'a> {
    pub fn parse(raw: &'a [u8]) -> Self {
        parse(raw, 0, ("text", "plain"))
    }

    /// Only the header and the body: enough for ENVELOPE, RFC822.* and the
    /// sections that name no part, and much cheaper. The content type is
    /// not read (`ctype` and `subtype` are empty) and there are no parts.
    pub fn top(raw: &'a [u8]) -> Self {
        let (header, body) = raw.split_at(header_end(raw));
        Entity {
            header,
            body,
            ctype: String::new(),
            subtype: String::new(),
            params: Vec::new(),
            parts: Vec::new(),
            message: None,
        }
    }

    pub fn is_multipart(&self) -> bool {
        self.ctype == "multipart"
    }

    /// The unfolded value of the first header field `name`.
    pub fn field(&self, name: &str) -> Option<String> {
        fields(self.header).find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| unfold(v))
    }

    /// The entity a section part number names (`1.2.3`), per RFC 3501 6.4.5.
    pub fn locate(&self, path: &[u32]) -> Option<&Entity<'a>> {
        let mut cur = self;
        for (i, &n) in path.iter().enumerate() {
            let container = match (&cur.message, i) {
                (Some(m), i) if i > 0 => m.as_ref(),
                _ => cur,
            };
            cur = if container.is_multipart() {
                container.parts.get(n.checked_sub(1)? as usize)?
            } else if n == 1 {
                container
            } else {
                return None;
            };
        }
        Some(cur)
    }

    /// The message a `HEADER`/`TEXT` section of this part refers to: the
    /// embedded message of a message/rfc822 part, else the entity itself.
    pub fn as_message(&self) -> &Entity<'a> {
        self.message.as_deref().unwrap_or(self)
    }

    /// BODY (`extended` false) or BODYSTRUCTURE (`extended` true).
    pub fn structure(&self, out: &mut Out, extended: bool) {
        out.raw("(");
        if self.is_multipart() {
            for p in &self.parts {
                p.structure(out, extended);
            }
            if self.parts.is_empty() {
                // RFC 3501 needs at least one part; describe an empty text part.
                out.raw("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0)");
            }
            out.raw(" ");
            out.string(self.subtype.as_bytes());
            if extended {
                out.raw(" ");
                self.params_list(out);
                out.raw(" ");
                self.disposition(out);
                out.raw(" NIL NIL");
            }
        } else {
            out.string(self.ctype.as_bytes());
            out.raw(" ");
            out.string(self.subtype.as_bytes());
            out.raw(" ");
            self.params_list(out);
            out.raw(" ");
            out.nstring(self.field("Content-ID").as_deref().map(str::as_bytes));
            out.raw(" ");
            out.nstring(self.field("Content-Description").as_deref().map(str::as_bytes));
            out.raw(" ");
            let enc = self.field("Content-Transfer-Encoding").map(|e| e.trim().to_ascii_lowercase());
            out.string(enc.as_deref().unwrap_or("7bit").as_bytes());
            out.raw(&format!(" {}", self.body.len()));
            if let Some(m) = &self.message {
                out.raw(" ");
                m.envelope(out);
                out.raw(" ");
                m.structure(out, extended);
                out.raw(&format!(" {}", lines(self.body)));
            } else if self.ctype == "text" {
                out.raw(&format!(" {}", lines(self.body)));
            }
            if extended {
                out.raw(" ");
                out.nstring(self.field("Content-MD5").as_deref().map(str::as_bytes));
                out.raw(" ");
                self.disposition(out);
                out.raw(" NIL NIL");
            }
        }
        out.raw(")");
    }

    fn params_list(&self, out: &mut Out) {
        list_or_nil(out, &self.params, " ", |out, (k, v)| {
            out.string(k.as_bytes());
            out.raw(" ");
            out.string(v.as_bytes());
        });
    }

    fn disposition(&self, out: &mut Out) {
        match self.field("Content-Disposition") {
            None => out.raw("NIL"),
            Some(d) => {
                let (kind, params) = split_params(&d);
                out.raw("(");
                out.string(kind.to_ascii_lowercase().as_bytes());
                out.raw(" ");
                list_or_nil(out, &params, " ", |out, (k, v)| {
                    out.string(k.as_bytes());
                    out.raw(" ");
                    out.string(v.as_bytes());
                });
                out.raw(")");
            }
        }
    }

    /// The ENVELOPE structure of this (message) entity.
    pub fn envelope(&self, out: &mut Out) {
        let parsed = MessageParser::new().parse_headers(self.header);
        let h = parsed.as_ref();
        out.raw("(");
        for name in ["Date", "Subject"] {
            out.nstring(self.field(name).as_deref().map(|v| v.trim().as_bytes()));
            out.raw(" ");
        }
        let from = h.and_then(|m| m.from());
        let sender = h.and_then(|m| m.sender()).or(from);
        let reply_to = h.and_then(|m| m.reply_to()).or(from);
        for (i, a) in
            [from, sender, reply_to, h.and_then(|m| m.to()), h.and_then(|m| m.cc()), h.and_then(|m| m.bcc())]
                .into_iter()
                .enumerate()
        {
            if i > 0 {
                out.raw(" ");
            }
            addresses(out, a);
        }
        for name in ["In-Reply-To", "Message-ID"] {
            out.raw(" ");
            out.nstring(self.field(name).as_deref().map(|v| v.trim().as_bytes()));
        }
        out.raw(")");
    }
}

fn addresses(out: &mut Out, a: Option<&Address<'_>>) {
    let mut list: Vec<(Option<String>, String, String)> = Vec::new();
    let mut push = |addr: &mail_parser::Addr<'_>| {
        let Some(email) = addr.address.as_deref() else { return };
        let (local, host) = email.rsplit_once('@').unwrap_or((email, ""));
        list.push((addr.name.as_deref().map(encode_word), local.to_string(), host.to_string()));
    };
    match a {
        Some(Address::List(l)) => l.iter().for_each(&mut push),
        Some(Address::Group(groups)) => groups.iter().flat_map(|g| g.addresses.iter()).for_each(&mut push),
        None => {}
    }
    list_or_nil(out, &list, "", |out, (name, local, host)| {
        out.raw("(");
        out.nstring(name.as_deref().map(str::as_bytes));
        out.raw(" NIL ");
        out.string(local.as_bytes());
        out.raw(" ");
        if host.is_empty() {
            out.raw("NIL")
        } else {
            out.string(host.as_bytes())
        }
        out.raw(")");
    });
}

/// A display name as IMAP carries it: ASCII as is, anything else as an
/// RFC 2047 encoded word.
fn encode_word(name: &str) -> String {
    if name.is_ascii() {
        name.to_string()
    } else {
        format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(name))
    }
}

fn parse<'a>(raw: &'a [u8], depth: usize, default: (&str, &str)) -> Entity<'a> {
    let mut e = Entity { ctype: default.0.into(), subtype: default.1.into(), ..Entity::top(raw) };
    let body = e.body;
    if let Some(ct) = e.field("Content-Type") {
        let (kind, params) = split_params(&ct);
        if let Some((t, s)) = kind.split_once('/') {
            e.ctype = t.trim().to_ascii_lowercase();
            e.subtype = s.trim().to_ascii_lowercase();
        }
        e.params = params;
    }
    if e.ctype == "text" && !e.params.iter().any(|(k, _)| k == "charset") && e.field("Content-Type").is_none()
    {
        e.params.push(("charset".into(), "us-ascii".into()));
    }
    if depth >= MAX_DEPTH {
        return e;
    }
    if e.is_multipart() {
        let boundary = e.params.iter().find(|(k, _)| k == "boundary").map(|(_, v)| v.clone());
        if let Some(b) = boundary {
            let child_default = if e.subtype == "digest" { ("message", "rfc822") } else { ("text", "plain") };
            e.parts = split_multipart(body, b.as_bytes())
                .into_iter()
                .map(|p| parse(p, depth + 1, child_default))
                .collect();
        }
    } else if e.ctype == "message" && e.subtype == "rfc822" {
        e.message = Some(Box::new(parse(body, depth + 1, ("text", "plain"))));
    }
    e
}

/// Where the header block ends (after its blank line); the whole input
/// when there is no blank line.
fn header_end(raw: &[u8]) -> usize {
    if raw.starts_with(b"\r\n") {
        return 2;
    }
    if raw.starts_with(b"\n") {
        return 1;
    }
    let mut i = 0;
    while let Some(nl) = raw[i..].iter().position(|&b| b == b'\n') {
        let next = i + nl + 1;
        match raw.get(next..) {
            Some([b'\r', b'\n', ..]) => return next + 2,
            Some([b'\n', ..]) => return next + 1,
            _ => i = next,
        }
    }
    raw.len()
}

/// The bodies between `--boundary` lines (each without the line break that
/// belongs to the next delimiter).
fn split_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut line_start = 0;
    while line_start < body.len() {
        let line_end =
            body[line_start..].iter().position(|&b| b == b'\n').map_or(body.len(), |p| line_start + p + 1);
        let line = &body[line_start..line_end];
        if line.len() >= 2 + boundary.len()
            && line.starts_with(b"--")
            && &line[2..2 + boundary.len()] == boundary
        {
            let rest = &line[2 + boundary.len()..];
            if let Some(s) = start {
                // The CRLF before the delimiter belongs to the delimiter.
                let mut end = line_start;
                if end > s && body[end - 1] == b'\n' {
                    end -= 1;
                    if end > s && body[end - 1] == b'\r' {
                        end -= 1;
                    }
                }
                parts.push(&body[s..end.max(s)]);
            }
            if rest.starts_with(b"--") {
                return parts;
            }
            start = Some(line_end);
        }
        line_start = line_end;
    }
    if let Some(s) = start {
        parts.push(&body[s..]);
    }
    parts
}

/// Each whole field of a header block (name, colon, value, line breaks).
fn raw_fields(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = header;
    std::iter::from_fn(move || {
        if rest.is_empty() || rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            return None;
        }
        // A field runs to the first line break not followed by whitespace.
        let mut end = 0;
        loop {
            match rest[end..].iter().position(|&b| b == b'\n') {
                None => {
                    end = rest.len();
                    break;
                }
                Some(p) => {
                    end += p + 1;
                    if !matches!(rest.get(end), Some(b' ' | b'\t')) {
                        break;
                    }
                }
            }
        }
        let (field, tail) = rest.split_at(end);
        rest = tail;
        Some(field)
    })
}

/// `(name, raw value)` for each field of a header block.
pub fn fields(header: &[u8]) -> impl Iterator<Item = (&str, &[u8])> {
    raw_fields(header).filter_map(|field| {
        let colon = field.iter().position(|&b| b == b':')?;
        let name = std::str::from_utf8(&field[..colon]).ok()?;
        Some((name.trim(), &field[colon + 1..]))
    })
}

/// The whole fields of a header block, each with its name (as received,
/// trimmed; empty for a line without a colon). Compare names with
/// `eq_ignore_ascii_case`: nothing is allocated per field.
pub fn field_blocks(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    raw_fields(header).map(|field| {
        let name = field.iter().position(|&b| b == b':').map_or(&b""[..], |c| field[..c].trim_ascii());
        (name, field)
    })
}

fn unfold(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    s.replace("\r\n", "").replace('\n', "").trim().to_string()
}

/// `kind; a=b; c="d"` into the kind and lower-cased parameter names.
fn split_params(v: &str) -> (String, Vec<(String, String)>) {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for ch in v.chars() {
        if escaped {
            cur.push(ch);
            escaped = false;
            continue;
        }
        match ch {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    parts.push(cur);
    let kind = parts.first().map(|s| s.trim().to_string()).unwrap_or_default();
    let params = parts
        .iter()
        .skip(1)
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let k = k.trim().to_ascii_lowercase();
            (!k.is_empty()).then(|| (k, v.trim().to_string()))
        })
        .collect();
    (kind, params)
}

fn lines(body: &[u8]) -> usize {
    let n = body.iter().filter(|&&b| b == b'\n').count();
    if body.last().is_some_and(|&b| b != b'\n') { n + 1 } else { n }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &[u8] = b"From: A <a@example.com>\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--XX--\r\n";

    #[test]
    fn sections_are_exact_slices() {
        let e = Entity::parse(MULTI);
        assert!(e.is_multipart());
        assert_eq!(e.parts.len(), 2);
        assert_eq!(e.locate(&[1]).map(|p| p.body), Some(&b"hello"[..]));
        let inner = e.locate(&[2]).and_then(|p| p.message.as_deref()).map(|m| m.header);
        assert_eq!(inner, Some(&b"Subject: inner\r\n\r\n"[..]));
        assert_eq!(e.locate(&[2, 1]).map(|p| p.body), Some(&b"inner body"[..]));
        assert!(e.locate(&[3]).is_none());
        let mut out = Out::default();
        e.structure(&mut out, true);
        let s = String::from_utf8(out.into_bytes()).unwrap();
        assert!(s.starts_with("((\"text\" \"plain\""), "{s}");
        assert!(s.contains("\"mixed\" (\"boundary\" \"XX\")"), "{s}");
    }

    #[test]
    fn envelope_lists_addresses() {
        let e = Entity::parse(MULTI);
        let mut out = Out::default();
        e.envelope(&mut out);
        let s = String::from_utf8(out.into_bytes()).unwrap();
        assert_eq!(
            s,
            "(NIL \"hi\" ((\"A\" NIL \"a\" \"example.com\")) ((\"A\" NIL \"a\" \"example.com\")) \
             ((\"A\" NIL \"a\" \"example.com\")) NIL NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn single_part_body_is_part_one() {
        let e = Entity::parse(b"Subject: x\r\n\r\nbody\r\n");
        assert_eq!(e.locate(&[1]).map(|p| p.body), Some(&b"body\r\n"[..]));
        assert!(e.locate(&[2]).is_none());
    }
}
