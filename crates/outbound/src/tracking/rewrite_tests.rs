//! Tests of `rewrite.rs`: messages built as mail-builder builds them.

use super::*;
use mail_builder::MessageBuilder;
use mail_builder::mime::MimePart;
use mail_parser::PartType;
use proptest::prelude::*;

const BASE: &str = "https://t.example.com";

fn build(text: &str, html: &str) -> Vec<u8> {
    MessageBuilder::new()
        .from(("App", "app@example.com"))
        .to("someone@example.net")
        .subject("Hello")
        .message_id("m1@example.com")
        .date(1_800_000_000i64)
        .text_body(text)
        .html_body(html)
        .write_to_vec()
        .unwrap()
}

fn mail() -> MessageBuilder<'static> {
    MessageBuilder::new().from("a@example.com").to("b@example.com").subject("s")
}

fn opts(clicks: bool, opens: bool) -> Rewrite {
    Rewrite { base_url: BASE.to_string(), clicks, opens }
}

fn token(which: Option<u16>) -> String {
    match which {
        Some(id) => format!("C{id}"),
        None => "OPEN".to_string(),
    }
}

/// The decoded HTML and text bodies of a message.
fn bodies(message: &[u8]) -> (String, String) {
    let parsed = MessageParser::default().parse(message).unwrap();
    let (mut html, mut text) = (String::new(), String::new());
    for part in &parsed.parts {
        match &part.body {
            PartType::Html(h) => html.push_str(h),
            PartType::Text(t) => text.push_str(t),
            _ => {}
        }
    }
    (html, text)
}

/// The only HTML part's encoded body range and transfer encoding.
fn html_range(message: &[u8]) -> (Range<usize>, TransferEncoding) {
    let parts = html_parts(message);
    assert_eq!(parts.len(), 1);
    (parts[0].body.clone(), parts[0].encoding)
}

/// Everything outside the HTML body is unchanged.
fn assert_outside_identical(before: &[u8], after: &[u8]) {
    let (old, _) = html_range(before);
    let (new, _) = html_range(after);
    assert_eq!(before[..old.start], after[..new.start], "bytes before the HTML body differ");
    assert_eq!(before[old.end..], after[new.end..], "bytes after the HTML body differ");
    assert_eq!(old.start, new.start);
}

const LINKS: &str = r##"<html><body>
<a href="https://example.com/a?x=1&amp;y=2">one</a>
<a href="mailto:x@example.com">mail</a> <a href="tel:+1555">call</a>
<a href="#top">top</a> <a href="javascript:alert(1)">js</a>
<a href="ftp://example.com/f">ftp</a> <a href="/relative">rel</a>
<a href>empty</a> <a name="anchor">no href</a>
<a data-sluice-notrack href="https://example.com/skip">skip</a>
<A HREF=" HTTP://Example.com/Upper ">upper</A>
<map><area shape="rect" coords="0,0,1,1"
 href='https://example.com/area'></map>
<a href="http&colon;//example.com/colon">colon</a>
<!-- <a href="https://example.com/comment">in a comment</a> -->
<script>var s = '<a href="https://example.com/script">';</script>
<p data-sluice-notrack>para</p>
</body></html>"##;

#[test]
fn tracked_links_in_order() {
    let message = build("plain https://example.com/text", LINKS);
    assert_eq!(
        tracked_links(&message),
        [
            "https://example.com/a?x=1&y=2",
            "HTTP://Example.com/Upper",
            "https://example.com/area",
            "http://example.com/colon",
        ]
    );
}

#[test]
fn rewrites_7bit_html() {
    let message = build("plain https://example.com/text", LINKS);
    let (_, cte) = html_range(&message);
    assert_eq!(cte, TransferEncoding::Identity);
    let out = rewrite(&message, &opts(true, true), token);
    assert_outside_identical(&message, &out);
    let (html, text) = bodies(&out);
    assert_eq!(text, bodies(&message).1);
    assert!(html.contains(r#"href="https://t.example.com/t/c/C0""#), "{html}");
    assert!(
        ["HREF=\"https://t.example.com/t/c/C1", "/t/c/C2\"", "/t/c/C3\""].iter().all(|c| html.contains(c))
    );
    assert!(!html.contains("/t/c/C4"));
    for untouched in ["mailto:x@example.com", "tel:+1555", "#top", "javascript:alert(1)", "/relative"] {
        assert!(html.contains(&format!("href=\"{untouched}\"")), "{untouched} in {html}");
    }
    assert!(html.contains("https://example.com/skip") && html.contains("https://example.com/comment"));
    assert!(html.contains("https://example.com/script"));
    assert!(!html.contains("data-sluice-notrack"), "{html}");
    let pixel = r#"<img src="https://t.example.com/t/o/OPEN" width="1" height="1" alt="" style="display:none"></body>"#;
    assert!(html.contains(pixel), "{html}");
    assert_eq!(html.matches("/t/o/").count(), 1);
    assert!(out.windows(2).filter(|w| w[1] == b'\n').all(|w| w[0] == b'\r'), "CRLF line ends");
}

#[test]
fn quoted_printable_part_is_reencoded() {
    let long = format!("Grüße! {}", "Mostly ASCII keeps quoted-printable cheaper. ".repeat(12));
    let html = format!(
        "<html><body><p>{long}</p><p><a href=\"https://example.com/é?q=1\" data-sluice-notrack>x</a> \
         <a class=\"btn\" href=\"https://example.com/track-me\">y</a></p>\r\n</body></html>\r\n"
    );
    let message = build("text", &html);
    let (range, cte) = html_range(&message);
    assert_eq!(cte, TransferEncoding::QuotedPrintable, "{}", String::from_utf8_lossy(&message[range]));
    assert_eq!(tracked_links(&message), ["https://example.com/track-me"]);
    let out = rewrite(&message, &opts(true, true), token);
    assert_outside_identical(&message, &out);
    let (new, _) = html_range(&out);
    for line in out[new.clone()].split(|&b| b == b'\n') {
        assert!(line.len() <= 77, "{}", String::from_utf8_lossy(line));
    }
    let (decoded, _) = bodies(&out);
    let expected = html
        .replace(" data-sluice-notrack", "")
        .replace("https://example.com/track-me", "https://t.example.com/t/c/C0")
        .replace("</body>", r#"<img src="https://t.example.com/t/o/OPEN" width="1" height="1" alt="" style="display:none"></body>"#);
    assert_eq!(decoded.replace("\r\n", "\n"), expected.replace("\r\n", "\n"));
}

#[test]
fn base64_part_is_reencoded() {
    let html = format!(
        "<html><body>{}<a href=\"https://example.com/ünïcode\">リンク</a></body></html>",
        "日本語のテキスト。".repeat(40)
    );
    let message = build("text", &html);
    let (range, cte) = html_range(&message);
    assert_eq!(cte, TransferEncoding::Base64);
    let original = &message[range];
    let out = rewrite(&message, &opts(true, false), token);
    assert_outside_identical(&message, &out);
    let (new, _) = html_range(&out);
    let encoded = &out[new];
    let lines: Vec<&[u8]> = encoded.split(|&b| b == b'\n').collect();
    for line in &lines[..lines.len().saturating_sub(2)] {
        assert_eq!(line.len(), 77, "76 characters and the CR");
    }
    assert_eq!(encoded.ends_with(b"\r\n"), original.ends_with(b"\r\n"));
    let (decoded, _) = bodies(&out);
    assert_eq!(decoded, html.replace("https://example.com/ünïcode", "https://t.example.com/t/c/C0"));
    assert_eq!(tracked_links(&message), ["https://example.com/ünïcode"]);
}

#[test]
fn clicks_off_still_strips_notrack() {
    let message = build("t", LINKS);
    let out = rewrite(&message, &opts(false, false), token);
    let (html, _) = bodies(&out);
    assert!(!html.contains("data-sluice-notrack") && !html.contains("/t/c/") && !html.contains("/t/o/"));
    assert!(html.contains("https://example.com/a?x=1&amp;y=2"));
    // Opens only: a pixel, links as they were.
    let (html, _) = bodies(&rewrite(&message, &opts(false, true), token));
    assert!(html.contains("/t/o/OPEN") && !html.contains("/t/c/"));
}

#[test]
fn nothing_to_change_is_byte_identical() {
    let message = build("t", "<html><body><p>No links at all.</p><a href=\"mailto:a@b\">m</a></body></html>");
    assert_eq!(rewrite(&message, &opts(true, false), token), message);
    let text_only =
        mail().text_body("see https://example.com <a href=\"https://example.com\">").write_to_vec().unwrap();
    assert_eq!(rewrite(&text_only, &opts(true, true), token), text_only);
    assert!(tracked_links(&text_only).is_empty());
    assert_eq!(rewrite(b"", &opts(true, true), token), b"");
}

#[test]
fn pixel_placement() {
    for (html, expected) in [
        ("<html><body>Hi</BODY></html>", "Hi<img"),
        ("<p>fragment</p>", "</p><img"),
        ("<html><body>Hi</body><!-- </body> --></html>", "Hi<img"),
    ] {
        let message = build("t", html);
        let (out, _) = bodies(&rewrite(&message, &opts(true, true), token));
        assert!(out.contains(expected), "{html} -> {out}");
        assert_eq!(out.matches("<img").count(), 1, "{out}");
    }
}

#[test]
fn attachments_and_signed_messages_are_left_alone() {
    let page = "<html><body><a href=\"https://example.com/attached\">x</a></body></html>";
    let message = mail()
        .html_body("<html><body><a href=\"https://example.com/body\">x</a></body></html>")
        .attachment("text/html", "page.html", page)
        .write_to_vec()
        .unwrap();
    assert_eq!(tracked_links(&message), ["https://example.com/body"]);
    let out = rewrite(&message, &opts(true, true), token);
    assert!(String::from_utf8_lossy(&out).contains("https://example.com/attached"));

    let signed = mail()
        .body(MimePart::new(
            "multipart/signed; protocol=\"application/pkcs7-signature\"",
            vec![
                MimePart::new("text/html", "<a href=\"https://example.com/signed\">x</a>"),
                MimePart::new("application/pkcs7-signature", b"sig".as_slice()),
            ],
        ))
        .write_to_vec()
        .unwrap();
    assert!(tracked_links(&signed).is_empty());
    assert_eq!(rewrite(&signed, &opts(true, true), token), signed);
}

#[test]
fn other_charsets_keep_their_bytes() {
    let message = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
Content-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
<p>Gr\xfc\xdfe</p><a title=\"K\xf6ln\" href=\"https://example.com/k\xf6ln\">x</a>\r\n";
    assert_eq!(tracked_links(message), ["https://example.com/köln"]);
    let out = rewrite(message, &opts(true, false), token);
    let expected = String::from_utf8_lossy(message)
        .replace("https://example.com/k\u{fffd}ln", "https://t.example.com/t/c/C0");
    assert_eq!(String::from_utf8_lossy(&out), expected);
    assert!(out.windows(4).any(|w| w == b"K\xf6ln"), "the other attribute keeps its Latin-1 byte");
    // A charset that is not ASCII-compatible is left alone.
    let utf16 = b"Content-Type: text/html; charset=utf-16\r\n\r\n<a href=\"https://x.example\">x</a>";
    assert_eq!(rewrite(utf16, &opts(true, true), token), utf16);
}

#[test]
fn long_7bit_lines_are_folded_inside_tags() {
    let filler = "x".repeat(900);
    let html = format!(
        "<p>{filler}<a href=\"https://e.example/1\">a</a><a href=\"https://e.example/2\">b</a></p>\r\n"
    );
    let message =
        format!("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{html}");
    let long_token = |w: Option<u16>| format!("{}{}", "T".repeat(60), w.map_or(0, |i| i));
    let out = rewrite(message.as_bytes(), &opts(true, true), long_token);
    for line in out.split(|&b| b == b'\n') {
        assert!(line.len() <= MAX_LINE + 1, "line of {} bytes", line.len());
    }
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("<a\r\nhref=\"https://t.example.com/t/c/"), "{text}");
    assert!(text.contains(&filler));
}

#[test]
fn references_and_schemes() {
    let cases = [
        ("https://a.example/?a=1&amp;b=2", Some("https://a.example/?a=1&b=2")),
        ("https://a.example/?a=1&ampb=2", Some("https://a.example/?a=1&ampb=2")),
        ("https://a.example/?a=1&amp=2", Some("https://a.example/?a=1&amp=2")),
        ("https://a.example/?x&amp", Some("https://a.example/?x&")),
        ("https://a.example/&#x41;&#66;&#0;&#xFFFFFFFFF;", Some("https://a.example/AB\u{fffd}\u{fffd}")),
        ("https://a.example/&copy;&unknown;&#;", Some("https://a.example/&copy;&unknown;&#;")),
        ("https://a.example/&commat;&lowbar&#0000000065;&NewLine;x", Some("https://a.example/@&lowbarAx")),
        ("https://a.example/?a=&QUOT&nbsp", Some("https://a.example/?a=\"\u{a0}")),
        ("  \thttps://a.example/\n1\t ", Some("https://a.example/1")),
        ("h&#116;tp://a.example/", Some("http://a.example/")),
        ("HTTPS:a.example", Some("HTTPS:a.example")),
        ("java\nscript:alert(1)", None),
        ("//a.example/path", None),
        ("data:text/html,hi", None),
        ("mailto:x@y", None),
        ("", None),
    ];
    for (href, want) in cases {
        assert_eq!(destination(href).as_deref(), want, "{href:?}");
    }
}

#[test]
fn quoted_printable_encoder() {
    let data = format!("{}\r\nend with space \r\ntab\t\r\n=eq\u{e9}\rCR\nLF{}", "a".repeat(200), " ");
    let encoded = quoted_printable(data.as_bytes());
    for line in encoded.split(|&b| b == b'\n') {
        assert!(line.len() <= 77);
    }
    let text = String::from_utf8(encoded.clone()).unwrap();
    assert!(
        text.contains("space=20\r\n") && text.contains("tab=09\r\n") && text.contains("=3Deq=C3=A9=0DCR")
    );
    assert!(text.ends_with("LF=20"));
    let decoded = mail_parser::decoders::quoted_printable::quoted_printable_decode(&encoded).unwrap();
    assert_eq!(decoded, data.replace("CR\nLF", "CR\r\nLF").as_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_and_leaves_non_html_alone(
        noise in proptest::collection::vec(any::<u8>(), 0..600),
        html in "[<>a-z=\"' /&;#:.\\-]{0,300}",
        text in "[ -~\\r\\n]{0,300}",
    ) {
        // Arbitrary bytes, alone and behind HTML part headers.
        let _ = rewrite(&noise, &opts(true, true), token);
        let mut framed = b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n".to_vec();
        framed.extend_from_slice(&noise);
        let _ = rewrite(&framed, &opts(true, true), token);
        let _ = tracked_links(&framed);
        let built = build(&text, &html);
        let out = rewrite(&built, &opts(true, true), token);
        prop_assert_eq!(tracked_links(&built).len(), out.windows(5).filter(|w| w == b"/t/c/").count());
        // A message without an HTML part comes back as it was.
        let plain = mail().text_body(text).write_to_vec().unwrap();
        prop_assert_eq!(rewrite(&plain, &opts(true, true), token), plain);
    }
}
