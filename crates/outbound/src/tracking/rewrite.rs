//! Link rewriting in the HTML parts of a built message: every tracked link's
//! `href` becomes `{base_url}/t/c/TOKEN`, a 1×1 pixel `{base_url}/t/o/TOKEN`
//! goes before `</body>`, and `data-sluice-notrack` attributes are removed.
//! Everything else (headers, plain-text and other parts, the bytes around
//! each HTML body) is copied byte for byte, so the rewrite can run before
//! DKIM signing without touching what the application wrote elsewhere.
//!
//! mail-parser finds the parts and their body offsets; each HTML body is
//! decoded from its own Content-Transfer-Encoding, run through lol_html
//! (Cloudflare's streaming rewriter, which copies every byte it does not
//! change), and, if anything changed, encoded again with the same
//! Content-Transfer-Encoding (quoted-printable lines of at most 76
//! characters, base64 lines of 76, CRLF line ends).
//!
//! [`tracked_links`] and [`rewrite`] walk the parts with the same code, so
//! the link ids `rewrite` puts into click tokens are the indexes of the
//! destinations `tracked_links` lists; the record keeps that list and the
//! click endpoint looks the destination up there.
//!
//! Left alone: signed or encrypted messages (multipart/signed,
//! multipart/encrypted, application/pkcs7-mime: a change would break the
//! signature), HTML attachments and HTML inside attached messages, parts
//! with an unknown transfer encoding or a charset that is not
//! ASCII-compatible, and links past the 65,536th.

use encoding_rs::Encoding;
use lol_html::html_content::{ContentType, Element, EndTag};
use lol_html::{AsciiCompatibleEncoding, HtmlRewriter, Settings, element, end, end_tag};
use mail_parser::{MessageParser, MessagePart, MimeHeaders};
use std::cell::Cell;
use std::ops::Range;
use std::rc::Rc;

/// The attribute that keeps a link untracked; it never goes out.
pub const NOTRACK_ATTRIBUTE: &str = "data-sluice-notrack";
/// The longest line SMTP carries (RFC 5321: 1000 octets with CRLF).
const MAX_LINE: usize = 998;
/// Quoted-printable and base64 line length (RFC 2045).
const ENCODED_LINE: usize = 76;

/// What to rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// Where the tracking endpoints are served, e.g. `https://t.example.com`
    /// (no trailing slash; one is dropped if given).
    pub base_url: String,
    /// Rewrite tracked links to click URLs.
    pub clicks: bool,
    /// Add the open pixel.
    pub opens: bool,
}

/// The destination of every link [`rewrite`] tracks, in document order
/// across the HTML parts; a link's id is its index here.
pub fn tracked_links(message: &[u8]) -> Vec<String> {
    let mut links = Vec::new();
    for part in html_parts(message) {
        if let Some(html) = part.decode(message) {
            walk(&html, part.charset, None, &mut links);
        }
    }
    links
}

/// `message` with its HTML parts rewritten; `token(Some(id))` names the
/// click token of link `id`, `token(None)` the open token. A message
/// without an HTML part comes back unchanged.
pub fn rewrite(message: &[u8], opts: &Rewrite, token: impl Fn(Option<u16>) -> String) -> Vec<u8> {
    let parts = html_parts(message);
    if parts.is_empty() {
        return message.to_vec();
    }
    let base = escape_attribute(opts.base_url.trim_end_matches('/'));
    let click_prefix = format!("{base}/t/c/");
    let pixel_prefix = format!("{base}/t/o/");
    let edit = Edit {
        click_prefix: opts.clicks.then_some(click_prefix.as_str()),
        pixel: opts.opens.then(|| {
            let token = escape_attribute(&token(None));
            format!(r#"<img src="{pixel_prefix}{token}" width="1" height="1" alt="" style="display:none">"#)
        }),
        token: &token,
    };
    // Where a too-long 7bit/8bit line may be broken: the space before an
    // attribute sluice wrote.
    let breaks = [format!(r#" href="{click_prefix}"#), format!(r#" src="{pixel_prefix}"#)];
    let mut links = Vec::new();
    let mut out = Vec::with_capacity(message.len() + 4096);
    let mut copied = 0;
    for part in parts {
        let Some(html) = part.decode(message) else { continue };
        let Some(changed) = walk(&html, part.charset, Some(&edit), &mut links) else { continue };
        let Some(original) = message.get(part.body.clone()) else { continue };
        out.extend_from_slice(message.get(copied..part.body.start).unwrap_or_default());
        out.extend_from_slice(&part.encoding.encode(&changed, original, &breaks));
        copied = part.body.end;
    }
    out.extend_from_slice(message.get(copied..).unwrap_or_default());
    out
}

/// The changes `rewrite` makes; `tracked_links` walks with none.
struct Edit<'a> {
    click_prefix: Option<&'a str>,
    pixel: Option<String>,
    token: &'a dyn Fn(Option<u16>) -> String,
}

/// One HTML body in the message.
#[derive(Debug)]
struct HtmlPart {
    /// The encoded body's bytes in the message.
    body: Range<usize>,
    encoding: TransferEncoding,
    charset: AsciiCompatibleEncoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferEncoding {
    /// 7bit, 8bit, binary or none given.
    Identity,
    QuotedPrintable,
    Base64,
}

/// The HTML bodies of `message` that may be rewritten, in order.
fn html_parts(message: &[u8]) -> Vec<HtmlPart> {
    let Some(parsed) = MessageParser::default().parse(message) else { return Vec::new() };
    if parsed.parts.iter().any(is_signed_or_encrypted) {
        return Vec::new();
    }
    let mut parts: Vec<HtmlPart> = parsed.parts.iter().filter_map(|p| html_part(p, message.len())).collect();
    parts.sort_by_key(|p| p.body.start);
    // Never splice overlapping ranges, whatever the parser said.
    let mut end = 0;
    parts.retain(|p| {
        let keep = p.body.start >= end;
        if keep {
            end = p.body.end;
        }
        keep
    });
    parts
}

fn is_signed_or_encrypted(part: &MessagePart<'_>) -> bool {
    let Some(ct) = part.content_type() else { return false };
    let sub = ct.subtype().unwrap_or_default();
    let is = |t: &str, s: &str| ct.ctype().eq_ignore_ascii_case(t) && sub.eq_ignore_ascii_case(s);
    is("multipart", "signed")
        || is("multipart", "encrypted")
        || is("application", "pkcs7-mime")
        || is("application", "x-pkcs7-mime")
}

fn html_part(part: &MessagePart<'_>, message_len: usize) -> Option<HtmlPart> {
    let ct = part.content_type()?;
    if !ct.ctype().eq_ignore_ascii_case("text") || !ct.subtype()?.eq_ignore_ascii_case("html") {
        return None;
    }
    if part.is_encoding_problem || part.content_disposition().is_some_and(|d| d.is_attachment()) {
        return None;
    }
    let encoding = match part.content_transfer_encoding().map(str::trim) {
        None => TransferEncoding::Identity,
        Some(cte) if ["7bit", "8bit", "binary"].iter().any(|e| cte.eq_ignore_ascii_case(e)) => {
            TransferEncoding::Identity
        }
        Some(cte) if cte.eq_ignore_ascii_case("quoted-printable") => TransferEncoding::QuotedPrintable,
        Some(cte) if cte.eq_ignore_ascii_case("base64") => TransferEncoding::Base64,
        Some(_) => return None,
    };
    let charset = match ct.attribute("charset") {
        None => AsciiCompatibleEncoding::utf_8(),
        Some(label) => {
            AsciiCompatibleEncoding::new(Encoding::for_label_no_replacement(label.trim().as_bytes())?)?
        }
    };
    let body = usize::try_from(part.offset_body).ok()?..usize::try_from(part.offset_end).ok()?;
    (body.start <= body.end && body.end <= message_len).then_some(HtmlPart { body, encoding, charset })
}

impl HtmlPart {
    /// The HTML bytes, transfer encoding undone.
    fn decode(&self, message: &[u8]) -> Option<Vec<u8>> {
        let raw = message.get(self.body.clone())?;
        match self.encoding {
            TransferEncoding::Identity => Some(raw.to_vec()),
            TransferEncoding::QuotedPrintable => {
                mail_parser::decoders::quoted_printable::quoted_printable_decode(raw)
            }
            TransferEncoding::Base64 => mail_parser::decoders::base64::base64_decode(raw),
        }
    }
}

/// Runs one HTML body through lol_html, appending the destination of each
/// tracked link to `links`. With an `edit`, returns the rewritten HTML when
/// something changed. A body lol_html fails on adds no links and is left
/// as it is.
fn walk(
    html: &[u8],
    charset: AsciiCompatibleEncoding,
    edit: Option<&Edit<'_>>,
    links: &mut Vec<String>,
) -> Option<Vec<u8>> {
    let before = links.len();
    let changed = Cell::new(false);
    let pixel_done = Rc::new(Cell::new(false));
    let mut out = Vec::with_capacity(if edit.is_some() { html.len() + 1024 } else { 0 });
    let result = {
        let elements =
            element!("*", |el: &mut Element<'_, '_>| { on_element(el, edit, links, &changed, &pixel_done) });
        let doc_end = end!(|end| {
            // No `</body>`: the pixel goes at the end.
            if let Some(pixel) = edit.and_then(|e| e.pixel.as_deref())
                && !pixel_done.get()
            {
                end.append(pixel, ContentType::Html);
            }
            Ok(())
        });
        let settings = Settings::new()
            .append_element_content_handler(elements)
            .append_document_content_handler(doc_end)
            .with_encoding(charset)
            // Never bail out on an ambiguity: leaving a part unchanged
            // would let `data-sluice-notrack` out.
            .with_strict(false);
        let keep = edit.is_some();
        let mut rewriter = HtmlRewriter::new(settings, |chunk: &[u8]| {
            if keep {
                out.extend_from_slice(chunk);
            }
        });
        rewriter.write(html).and_then(|()| rewriter.end())
    };
    if result.is_err() {
        links.truncate(before);
        return None;
    }
    // The pixel always goes in, before `</body>` or at the end.
    let pixel = edit.is_some_and(|e| e.pixel.is_some());
    (edit.is_some() && (changed.get() || pixel)).then_some(out)
}

fn on_element(
    el: &mut Element<'_, '_>,
    edit: Option<&Edit<'_>>,
    links: &mut Vec<String>,
    changed: &Cell<bool>,
    pixel_done: &Rc<Cell<bool>>,
) -> lol_html::HandlerResult {
    let notrack = el.has_attribute(NOTRACK_ATTRIBUTE);
    if notrack && edit.is_some() {
        el.remove_attribute(NOTRACK_ATTRIBUTE);
        changed.set(true);
    }
    let tag = el.tag_name();
    if !notrack
        && (tag == "a" || tag == "area")
        && let Some(destination) = el.get_attribute("href").and_then(|href| destination(&href))
        && let Ok(id) = u16::try_from(links.len())
    {
        links.push(destination);
        if let Some(edit) = edit
            && let Some(prefix) = edit.click_prefix
        {
            let token = escape_attribute(&(edit.token)(Some(id)));
            el.set_attribute("href", &format!("{prefix}{token}"))?;
            changed.set(true);
        }
    }
    if tag == "body"
        && let Some(pixel) = edit.and_then(|e| e.pixel.clone())
        && !pixel_done.get()
        && el.can_have_content()
    {
        let done = Rc::clone(pixel_done);
        el.on_end_tag(end_tag!(move |end: &mut EndTag<'_>| {
            if !done.get() {
                end.before(&pixel, ContentType::Html);
                done.set(true);
            }
            Ok(())
        }))?;
    }
    Ok(())
}

/// The destination of a link with this `href` (as written, entities and
/// all), if it is tracked: an absolute http or https URL.
fn destination(href: &str) -> Option<String> {
    let decoded = decode_entities(href);
    // What a browser's URL parser strips: surrounding C0 controls and
    // spaces, and every tab and newline.
    let url: String = decoded
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let (scheme, _) = url.split_once(':')?;
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")).then_some(url)
}

/// The named references to ASCII punctuation and whitespace (the ones a
/// URL may carry), each name followed by its character; any other named
/// reference stays as written.
const NAMED: &str = "excl! quot\" QUOT\" num# dollar$ percnt% amp& AMP& apos' lpar( rpar) ast* midast* \
    plus+ comma, period. sol/ colon: semi; lt< LT< equals= gt> GT> quest? commat@ lsqb[ lbrack[ bsol\\ \
    rsqb] rbrack] Hat^ lowbar_ UnderBar_ grave` DiacriticalGrave` lcub{ lbrace{ verbar| vert| \
    VerticalLine| rcub} rbrace} Tab\t NewLine\n nbsp\u{a0} NonBreakingSpace\u{a0}";
/// Those HTML also reads without a `;` (in an attribute, only when no
/// letter, digit or `=` follows).
const LEGACY: &[&str] = &["amp", "AMP", "lt", "LT", "gt", "GT", "quot", "QUOT", "nbsp"];

fn named(name: &str) -> Option<char> {
    NAMED.split(' ').find_map(|entry| {
        let mut rest = entry.strip_prefix(name)?.chars();
        let ch = rest.next()?;
        rest.next().is_none().then_some(ch)
    })
}

/// Decodes character references as HTML does in an attribute value:
/// numeric ones, and the named ones in `NAMED`.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp + 1..];
        match reference(rest) {
            Some((ch, used)) => {
                out.push(ch);
                rest = &rest[used..];
            }
            None => out.push('&'),
        }
    }
    out.push_str(rest);
    out
}

/// The character the reference at the start of `text` (just after `&`)
/// stands for, and how many bytes it takes.
fn reference(text: &str) -> Option<(char, usize)> {
    if let Some(num) = text.strip_prefix('#') {
        let (radix, digits_at) = match num.as_bytes().first() {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        let digits = text.get(digits_at..)?;
        let len = digits.bytes().take_while(|b| (*b as char).is_digit(radix)).count();
        if len == 0 {
            return None;
        }
        let significant = digits.get(..len)?.trim_start_matches('0');
        let value = match significant.len() {
            0 => 0,
            1..=8 => u32::from_str_radix(significant, radix).unwrap_or(u32::MAX),
            _ => u32::MAX,
        };
        let ch = char::from_u32(value).filter(|&c| c != '\0').unwrap_or('\u{fffd}');
        let semicolon = usize::from(digits.as_bytes().get(len) == Some(&b';'));
        return Some((ch, digits_at + len + semicolon));
    }
    let name_len = text.bytes().take_while(u8::is_ascii_alphanumeric).count();
    let name = text.get(..name_len)?;
    let ch = named(name)?;
    if text.as_bytes().get(name_len) == Some(&b';') {
        return Some((ch, name_len + 1));
    }
    let next = text.as_bytes().get(name_len);
    (LEGACY.contains(&name) && next != Some(&b'=')).then_some((ch, name_len))
}

/// `text` safe inside a double-quoted attribute value.
fn escape_attribute(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(ch),
        }
    }
    out
}

impl TransferEncoding {
    /// `html` encoded to replace `original`, the part's old encoded body.
    fn encode(self, html: &[u8], original: &[u8], breaks: &[String]) -> Vec<u8> {
        match self {
            TransferEncoding::Identity => fold_long_lines(html, breaks),
            TransferEncoding::QuotedPrintable => quoted_printable(html),
            TransferEncoding::Base64 => {
                let mut out = base64_lines(html);
                if original.ends_with(b"\n") && !out.is_empty() {
                    out.extend_from_slice(b"\r\n");
                }
                out
            }
        }
    }
}

/// Quoted-printable (RFC 2045 §6.7): CRLF (or a bare LF) in `data` is a
/// line break, lines are at most 76 characters, whitespace before a line
/// break is encoded.
fn quoted_printable(data: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(data.len() + data.len() / 8);
    let mut line = 0;
    let mut i = 0;
    while let Some(&b) = data.get(i) {
        let crlf = b == b'\r' && data.get(i + 1) == Some(&b'\n');
        if crlf || b == b'\n' {
            out.extend_from_slice(b"\r\n");
            line = 0;
            i += if crlf { 2 } else { 1 };
            continue;
        }
        let next = data.get(i + 1).copied();
        let at_line_end =
            matches!(next, None | Some(b'\n')) || (next == Some(b'\r') && data.get(i + 2) == Some(&b'\n'));
        let literal = matches!(b, b'!'..=b'<' | b'>'..=b'~') || (matches!(b, b' ' | b'\t') && !at_line_end);
        let width = if literal { 1 } else { 3 };
        // Keep room for the soft break's `=`.
        if line + width > ENCODED_LINE - 1 {
            out.extend_from_slice(b"=\r\n");
            line = 0;
        }
        if literal {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
        line += width;
        i += 1;
    }
    out
}

/// Base64 in lines of 76 characters joined by CRLF (no CRLF after the last).
fn base64_lines(data: &[u8]) -> Vec<u8> {
    let encoded = data_encoding::BASE64.encode(data);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / ENCODED_LINE * 2);
    for (n, chunk) in encoded.as_bytes().chunks(ENCODED_LINE).enumerate() {
        if n > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(chunk);
    }
    out
}

/// A 7bit/8bit body whose lines grew past what SMTP carries gets line
/// breaks where they change nothing: in place of the space before an
/// attribute sluice wrote (`breaks`), inside a tag.
fn fold_long_lines(html: &[u8], breaks: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(html.len() + 64);
    for line in html.split_inclusive(|&b| b == b'\n') {
        let content = line.strip_suffix(b"\n").map_or(line, |l| l.strip_suffix(b"\r").unwrap_or(l)).len();
        let mut start = 0;
        if content > MAX_LINE {
            let mut spaces: Vec<usize> = breaks
                .iter()
                .flat_map(|marker| find_all(line, marker.as_bytes()))
                .filter(|&at| at > 0)
                .collect();
            spaces.sort_unstable();
            spaces.dedup();
            let mut prev = None;
            // The line's end is the last place a segment must fit before.
            for at in spaces.into_iter().chain([content]) {
                if at.saturating_sub(start) > MAX_LINE
                    && let Some(space) = prev.filter(|&p| p > start)
                {
                    out.extend_from_slice(line.get(start..space).unwrap_or_default());
                    out.extend_from_slice(b"\r\n");
                    start = space + 1;
                }
                prev = Some(at);
            }
        }
        out.extend_from_slice(line.get(start..).unwrap_or_default());
    }
    out
}

fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    // Case-blind: an existing `HREF` keeps its spelling when its value is set.
    haystack
        .windows(needle.len().max(1))
        .enumerate()
        .filter(move |(_, w)| w.eq_ignore_ascii_case(needle))
        .map(|(at, _)| at)
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
