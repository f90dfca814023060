//! HTML form bodies, the two encodings Mailgun's legacy webhooks post:
//! `application/x-www-form-urlencoded` (the URL standard's
//! application/x-www-form-urlencoded parser) and `multipart/form-data`
//! (RFC 7578). Fields keep their order and repeats: Mailgun sends a
//! custom variable named like one of its own fields as a second field of
//! that name, and which one is Mailgun's depends on the field.
//!
//! Written here rather than taken from a crate: the workspace has no form
//! parser, and the part of each format a webhook uses is small.

use super::ParseError;

/// The fields of a form body of the given content type.
pub(crate) fn fields(content_type: &str, body: &[u8]) -> Result<Vec<(String, String)>, ParseError> {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "multipart/form-data" => {
            let boundary = parameter(content_type, "boundary")
                .ok_or_else(|| ParseError::Form("multipart/form-data without a boundary".into()))?;
            multipart(&boundary, body)
        }
        _ => urlencoded(body),
    }
}

/// A parameter of a header value (`boundary=...`, `name="..."`), quotes
/// removed. Parameter names are case-insensitive.
pub(crate) fn parameter(header: &str, name: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| {
            let v = v.trim();
            v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v).replace("\\\"", "\"")
        })
    })
}

/// `a=1&b=two+words&c=%C3%A9`: `+` is a space, `%XX` a byte; a `%` not
/// followed by two hex digits stays as it is (the standard's rule).
pub(crate) fn urlencoded(body: &[u8]) -> Result<Vec<(String, String)>, ParseError> {
    let text = std::str::from_utf8(body).map_err(|e| ParseError::Form(format!("not UTF-8: {e}")))?;
    let mut out = Vec::new();
    for pair in text.trim_end_matches(['\r', '\n']).split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((decode(k), decode(v)));
    }
    Ok(out)
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (
            bytes[i],
            bytes.get(i + 1).and_then(|b| hex(*b)),
            bytes.get(i + 2).and_then(|b| hex(*b)),
        ) {
            (b'%', Some(hi), Some(lo)) => Some(hi * 16 + lo),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 2;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// RFC 7578: parts between `--boundary` lines, each headers, a blank line,
/// and the value up to the line break before the next delimiter. CRLF as
/// the RFC says, or bare LF as saved files often have. File parts (with a
/// `filename`, Mailgun's attached original) are left out: no event field
/// is a file.
pub(crate) fn multipart(boundary: &str, body: &[u8]) -> Result<Vec<(String, String)>, ParseError> {
    let delimiter = format!("--{boundary}");
    let starts = delimiters(body, delimiter.as_bytes());
    if starts.is_empty() {
        return Err(ParseError::Form(format!("no {delimiter} line in the body")));
    }
    let mut out = Vec::new();
    let mut closed = false;
    for pair in starts.windows(2) {
        let (at, next) = (pair[0], pair[1]);
        let after = &body[at + delimiter.len()..];
        if after.starts_with(b"--") {
            closed = true;
            break;
        }
        let part = &body[at + delimiter.len()..next];
        if let Some(field) = part_field(part)? {
            out.push(field);
        }
    }
    let last = starts.last().copied().unwrap_or_default();
    if !closed && !body[last + delimiter.len()..].starts_with(b"--") {
        return Err(ParseError::Form("the multipart body has no closing delimiter".into()));
    }
    Ok(out)
}

/// Where each delimiter line starts: at the body's start or after a line
/// break, and followed by a line break, `--`, or transport padding.
fn delimiters(body: &[u8], delimiter: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(pos) = find(&body[i..], delimiter) {
        let at = i + pos;
        let line_start = at == 0 || body[at - 1] == b'\n';
        let rest = &body[at + delimiter.len()..];
        let padding = rest.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
        let after = &rest[padding..];
        let line_end = rest.starts_with(b"--")
            || after.is_empty()
            || after.starts_with(b"\n")
            || after.starts_with(b"\r\n");
        if line_start && line_end {
            out.push(at);
        }
        i = at + delimiter.len();
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One part (the bytes after its delimiter up to the next one): its name
/// and value, or none for a file part.
fn part_field(part: &[u8]) -> Result<Option<(String, String)>, ParseError> {
    // The rest of the delimiter line, then headers up to a blank line.
    let Some(nl) = part.iter().position(|b| *b == b'\n') else {
        return Err(ParseError::Form("a part without headers".into()));
    };
    let part = &part[nl + 1..];
    let (head, value) = match find(part, b"\r\n\r\n") {
        Some(p) if find(part, b"\n\n").is_none_or(|q| p < q) => (&part[..p], &part[p + 4..]),
        _ => match find(part, b"\n\n") {
            Some(p) => (&part[..p], &part[p + 2..]),
            None => return Err(ParseError::Form("a part without a blank line after its headers".into())),
        },
    };
    // The line break before the next delimiter belongs to the delimiter.
    let value = value.strip_suffix(b"\n").map(|v| v.strip_suffix(b"\r").unwrap_or(v)).unwrap_or(value);
    let head = String::from_utf8_lossy(head);
    let disposition = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("content-disposition").then(|| v.trim().to_string())
        })
        .ok_or_else(|| ParseError::Form("a part without Content-Disposition".into()))?;
    if parameter(&disposition, "filename").is_some() {
        return Ok(None);
    }
    let name = parameter(&disposition, "name")
        .ok_or_else(|| ParseError::Form("a part without a field name".into()))?;
    Ok(Some((name, String::from_utf8_lossy(value).into_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_fields_in_order() {
        let f = urlencoded(b"event=bounced&recipient=a%40example.com&error=550+no+such+user&bad=%zz&event=x")
            .expect("parses");
        assert_eq!(f[1], ("recipient".into(), "a@example.com".into()));
        assert_eq!(f[2].1, "550 no such user");
        assert_eq!(f[3].1, "%zz");
        assert_eq!(f[4], ("event".into(), "x".into()));
        assert!(urlencoded(b"\xff=1").is_err());
    }

    #[test]
    fn multipart_with_crlf_or_lf_and_a_file_part() {
        let crlf = b"--XyZ\r\nContent-Disposition: form-data; name=\"event\"\r\n\r\ndropped\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"attachment-1\"; filename=\"m.eml\"\r\nContent-Type: message/rfc822\r\n\r\n\
From: a\r\n\r\nbody\r\n--XyZ\r\nContent-Disposition: form-data; name=\"two\"\r\n\r\nline 1\r\nline 2\r\n--XyZ--\r\n";
        let f = fields("multipart/form-data; boundary=XyZ", crlf).expect("parses");
        assert_eq!(f, vec![("event".into(), "dropped".into()), ("two".into(), "line 1\r\nline 2".into())]);
        let lf = b"--XyZ\nContent-Disposition: form-data; name=event\n\ndelivered\n--XyZ--\n";
        assert_eq!(fields("multipart/form-data; boundary=\"XyZ\"", lf).expect("parses")[0].1, "delivered");
    }

    #[test]
    fn broken_multipart_is_refused() {
        assert!(fields("multipart/form-data", b"--a\r\n\r\n--a--").is_err());
        assert!(fields("multipart/form-data; boundary=a", b"no delimiter here").is_err());
        assert!(
            fields(
                "multipart/form-data; boundary=a",
                b"--a\r\nContent-Disposition: form-data; name=x\r\n\r\nv"
            )
            .is_err()
        );
        assert!(fields("multipart/form-data; boundary=a", b"--a\r\nX: y\r\n\r\nv\r\n--a--").is_err());
    }
}
