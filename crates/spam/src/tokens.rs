//! The tokenizer: what the Bayes filter counts.
//!
//! A message becomes a sorted, deduplicated list of 64-bit token hashes.
//! Presence, not frequency, is counted (Graham, Robinson and SpamBayes all
//! found that counting a word once per message works better: one spam that
//! repeats a word a hundred times must not outweigh a hundred hams).
//!
//! What is tokenized, after SpamBayes' tokenizer (whose choices were tested
//! on large corpora) with a few additions:
//! - decoded text parts: whitespace-separated words, lowercased, 3..=12
//!   bytes; longer words become a `skip` token (first byte and length
//!   bucket), so base64 junk and long hashes do not flood the counts; and
//!   pairs of adjacent words (phrases are clues single words are not);
//! - text in scripts written without spaces (CJK): overlapping character
//!   pairs, instead of one useless `skip` token per sentence;
//! - HTML parts: tags are stripped (words hidden in comments are counted
//!   apart, tag names not at all: they only say "HTML", a dozen times),
//!   but the hosts of links and images are kept, since where a message
//!   points is a strong and hard-to-vary clue;
//! - URLs anywhere in text: the host, its last two labels and the path's
//!   words;
//! - headers: Subject words (prefixed, so "free" in a subject is a different
//!   clue from "free" in a body), the From and Reply-To address and domain,
//!   the number of recipients, X-Mailer/User-Agent words, the hosts and
//!   network prefixes in Received, and each part's Content-Type, charset,
//!   transfer encoding and attachment extension. Which headers are present
//!   is not counted: in cross-validation those tokens were many, correlated
//!   and mostly about the mail path of the training corpus.
//!
//! `X-Spam-*` headers are skipped as SpamAssassin's Bayes skips them: another
//! filter's verdict, forgeable by the sender, is no evidence.

use mail_parser::{Address, HeaderName, HeaderValue, Host, Message, MessageParser, MimeHeaders, PartType};

/// FNV-1a, 64 bits: tokens are short, so a byte-at-a-time hash costs less
/// than setting up a block hash, and collisions among the ~10^6 tokens of a
/// large model are negligible at 64 bits.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Longest word kept as itself; longer ones become a `skip` token.
const MAX_WORD: usize = 12;
/// Shortest word kept (SpamBayes: shorter words are mostly noise).
const MIN_WORD: usize = 3;
/// Text beyond this many bytes of one part is not tokenized: the clues are
/// at the start, and a bound keeps scoring time flat for huge messages.
const MAX_PART_TEXT: usize = 64 * 1024;
/// Nested message/rfc822 parts followed at most this deep.
const MAX_DEPTH: usize = 3;

/// The hash of `prefix` followed by `word`, lowercased (ASCII).
pub fn hash(prefix: &str, word: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in prefix.as_bytes().iter().chain(word) {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Collects token hashes; `finish` sorts and deduplicates them.
/// With `names`, it also keeps each token's text, for explaining a score.
#[derive(Default)]
pub struct Sink {
    hashes: Vec<u64>,
    names: Option<Vec<(u64, String)>>,
}

impl Sink {
    /// A sink that keeps token texts too.
    pub fn named() -> Sink {
        Sink { hashes: Vec::new(), names: Some(Vec::new()) }
    }

    /// Adds `prefix` + `word`.
    pub fn add(&mut self, prefix: &str, word: &[u8]) {
        let h = hash(prefix, word);
        self.hashes.push(h);
        if let Some(names) = &mut self.names {
            names.push((h, format!("{prefix}{}", String::from_utf8_lossy(word).to_lowercase())));
        }
    }

    /// The texts of the tokens (when created with [`Sink::named`]).
    pub fn finish_named(mut self) -> Vec<(u64, String)> {
        let mut names = self.names.take().unwrap_or_default();
        names.sort_unstable();
        names.dedup_by_key(|n| n.0);
        names
    }

    /// The message's tokens, each once.
    pub fn finish(mut self) -> Vec<u64> {
        self.hashes.sort_unstable();
        self.hashes.dedup();
        self.hashes
    }

    /// Adds one whitespace-separated word the way body text is counted.
    fn word(&mut self, prefix: &str, raw: &[u8]) {
        let w = trim_punct(raw);
        if w.len() < MIN_WORD {
            return;
        }
        if w.len() <= MAX_WORD {
            self.add(prefix, w);
            return;
        }
        if let Some(at) = w.iter().position(|&b| b == b'@') {
            // An address in the text: its domain is the clue.
            let domain = trim_punct(&w[at + 1..]);
            if domain.contains(&b'.') {
                self.add("email:", domain);
            }
            return;
        }
        // SpamBayes' "skip" token: first byte and length in tens.
        let bucket = [w[0].to_ascii_lowercase(), b'0' + (w.len() / 10).min(9) as u8];
        self.add("skip:", &bucket);
    }

    /// Tokenizes plain text: URLs, then words.
    pub fn text(&mut self, prefix: &str, text: &str) {
        let bytes = &text.as_bytes()[..text.len().min(MAX_PART_TEXT)];

        // The previous word, for word pairs.
        let mut prev: &[u8] = &[];
        for raw in bytes.split(|b| b.is_ascii_whitespace()) {
            if raw.is_empty() {
                continue;
            }
            let w = trim_punct(raw);
            if (MIN_WORD..=MAX_WORD).contains(&w.len()) {
                if !prev.is_empty() {
                    self.pair(prev, w);
                }
                prev = w;
            }
            if let Some(url) = find_url(raw) {
                self.url(url);
                continue;
            }
            if raw.len() > MAX_WORD && !raw.is_ascii() {
                self.bigrams(raw);
                continue;
            }
            self.word(prefix, raw);
        }
    }

    /// A pair of adjacent words: phrases ("click here", "dear friend")
    /// are clues their words alone are not, and they are harder to dodge
    /// with misspellings of single words (rspamd and CRM114 count word
    /// pairs for the same reason).
    fn pair(&mut self, a: &[u8], b: &[u8]) {
        let mut h = hash("pair:", a);
        for &c in b" ".iter().chain(b) {
            h ^= u64::from(c.to_ascii_lowercase());
            h = h.wrapping_mul(FNV_PRIME);
        }
        self.hashes.push(h);
        if let Some(names) = &mut self.names {
            let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
            names.push((h, format!("pair:{} {}", a.to_lowercase(), b.to_lowercase())));
        }
    }

    /// Scripts written without spaces (Chinese, Japanese; Korean spaces
    /// only between phrases) would otherwise become one `skip` token per
    /// sentence: their overlapping character pairs are counted instead, the
    /// usual tokenization for CJK text in search engines and spam filters.
    fn bigrams(&mut self, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        // From CJK Radicals (U+2E80) up: the ideographs, kana and hangul.
        let chars: Vec<char> =
            text.chars().filter(|c| *c >= '\u{2e80}' && c.is_alphanumeric()).take(64).collect();
        let mut buf = [0u8; 8];
        for pair in chars.windows(2) {
            let a = pair[0].encode_utf8(&mut buf).len();
            let b = pair[1].encode_utf8(&mut buf[a..]).len();
            self.add("cjk:", &buf[..a + b]);
        }
    }

    /// A URL's host (with its last two labels, which is what survives a
    /// spammer's rotation of subdomains) and the words of its path.
    fn url(&mut self, url: &[u8]) {
        let rest = match url.windows(3).position(|w| w == b"://") {
            Some(i) => {
                self.add("proto:", &url[..i]);
                &url[i + 3..]
            }
            None => url,
        };
        let end = rest
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#' | b'"' | b'\'' | b'>'))
            .unwrap_or(rest.len());
        let hostport = &rest[..end];
        let host = hostport.rsplit(|&b| b == b'@').next().unwrap_or(hostport);
        let host = host.split(|&b| b == b':').next().unwrap_or(host);
        self.host("url:", host);
        for piece in rest[end..].split(|b| !b.is_ascii_alphanumeric()) {
            if (MIN_WORD..=MAX_WORD).contains(&piece.len()) {
                self.add("urlpath:", piece);
            }
        }
    }

    /// A host name or address literal: the whole, and its last two labels;
    /// an IP address literal counts as `ip` (numeric links are a classic
    /// spam sign, SpamAssassin's NUMERIC_HTTP_ADDR).
    pub fn host(&mut self, prefix: &str, host: &[u8]) {
        let host = trim_punct(host);
        if host.is_empty() {
            return;
        }
        if host.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
            self.add(prefix, b"[ip]");
            return;
        }
        self.add(prefix, host);
        let dots: Vec<usize> = host.iter().enumerate().filter(|(_, b)| **b == b'.').map(|(i, _)| i).collect();
        if dots.len() >= 2 {
            self.add(prefix, &host[dots[dots.len() - 2] + 1..]);
        }
    }
}

/// Strips the punctuation that encloses or ends a word in running text.
fn trim_punct(w: &[u8]) -> &[u8] {
    let lead = |b: &u8| matches!(b, b'(' | b'[' | b'"' | b'\'' | b'<' | b'{' | b'*' | b'`');
    let trail = |b: &u8| {
        matches!(b, b')' | b']' | b'"' | b'\'' | b'>' | b'}' | b'.' | b',' | b';' | b':' | b'*' | b'`')
    };
    let start = w.iter().position(|b| !lead(b)).unwrap_or(w.len());
    let end = w.iter().rposition(|b| !trail(b)).map_or(start, |i| i + 1);
    if start >= end { &[] } else { &w[start..end] }
}

/// The URL inside a whitespace-separated word, if it is or contains one.
fn find_url(word: &[u8]) -> Option<&[u8]> {
    for marker in [&b"http://"[..], b"https://", b"www."] {
        if let Some(i) = find_ci(word, marker) {
            return Some(&word[i..]);
        }
    }
    None
}

/// Case-insensitive substring search (ASCII): the needle's first byte in
/// either case found with memchr, then the rest compared there.
pub(crate) fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let Some((&first, rest)) = needle.split_first() else { return Some(0) };
    let starts = hay.get(..=hay.len().checked_sub(needle.len())?)?;
    memchr::memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), starts)
        .find(|&i| hay[i + 1..i + needle.len()].eq_ignore_ascii_case(rest))
}

/// Parses `raw` and returns its tokens (an unparseable message has none
/// but its `parse:failed` clue).
pub fn tokenize_bytes(raw: &[u8]) -> Vec<u64> {
    match MessageParser::default().parse(raw) {
        Some(msg) => tokenize(&msg),
        None => {
            let mut sink = Sink::default();
            sink.add("parse:", b"failed");
            sink.finish()
        }
    }
}

/// The tokens of a parsed message, sorted and deduplicated.
pub fn tokenize(msg: &Message<'_>) -> Vec<u64> {
    let mut sink = Sink::default();
    headers(msg, &mut sink);
    parts(msg, &mut sink, 0);
    sink.finish()
}

/// The tokens of a parsed message with their texts, for explaining.
pub fn tokenize_named(msg: &Message<'_>) -> Vec<(u64, String)> {
    let mut sink = Sink::named();
    headers(msg, &mut sink);
    parts(msg, &mut sink, 0);
    sink.finish_named()
}

/// Header tokens of the top-level message.
fn headers(msg: &Message<'_>, sink: &mut Sink) {
    if let Some(subject) = msg.subject() {
        for w in subject.split(|c: char| c.is_whitespace()) {
            let w = trim_punct(w.as_bytes());
            if !w.is_empty() && w.len() <= 40 {
                sink.add("subject:", w);
            }
        }
    } else {
        sink.add("subject:", b"[none]");
    }
    address_tokens(msg.from(), "from", sink);
    address_tokens(msg.reply_to(), "reply-to", sink);

    let recipients = msg.to().map_or(0, |a| a.iter().count()) + msg.cc().map_or(0, |a| a.iter().count());
    // Powers of two, as SpamBayes: a count is a clue, its exact value is not.
    let bucket = usize::BITS - recipients.leading_zeros();
    sink.add("rcpts:", &[b'0' + bucket.min(9) as u8]);
    for header in msg.headers() {
        let name = header.name();
        if name.len() > 6 && name[..6].eq_ignore_ascii_case("x-spam") {
            continue;
        }
        match (&header.name, header.value()) {
            (HeaderName::Received, HeaderValue::Received(r)) => received(r, sink),
            (HeaderName::Other(n), HeaderValue::Text(t))
                if n.eq_ignore_ascii_case("x-mailer") || n.eq_ignore_ascii_case("user-agent") =>
            {
                for w in t.split(|c: char| c.is_whitespace() || c == '/' || c == '(' || c == ')').take(4) {
                    if !w.is_empty() {
                        sink.add("mailer:", w.as_bytes());
                    }
                }
            }
            _ => {}
        }
    }
}

/// From / Reply-To: the address, its domain, and whether a name is given.
fn address_tokens(addr: Option<&Address<'_>>, what: &str, sink: &mut Sink) {
    let Some(first) = addr.and_then(Address::first) else {
        sink.add(what, b":[none]");
        return;
    };
    let prefix = if what == "from" { "from:" } else { "reply-to:" };
    if let Some(a) = first.address() {
        sink.add(prefix, a.as_bytes());
        if let Some((_, domain)) = a.rsplit_once('@') {
            sink.host(prefix, domain.as_bytes());
        }
    }
    match first.name() {
        Some(n) if !n.is_empty() => {
            for w in n.split_whitespace().take(4) {
                sink.add("fromname:", w.as_bytes());
            }
        }
        _ => sink.add(prefix, b"[noname]"),
    }
}

/// A Received header: the hosts named (from, helo, by) and the relay's
/// network prefixes (/16 and /24), which identify a sending network even
/// when its hosts change names.
fn received(r: &mail_parser::Received<'_>, sink: &mut Sink) {
    for host in [&r.from, &r.helo, &r.by].into_iter().flatten() {
        if let Host::Name(n) = host {
            sink.host("rcvd:", n.as_bytes());
        }
    }
    if let Some(std::net::IpAddr::V4(ip)) = r.from_ip {
        let o = ip.octets();
        sink.add("rcvdip:", format!("{}.{}", o[0], o[1]).as_bytes());
        sink.add("rcvdip:", format!("{}.{}.{}", o[0], o[1], o[2]).as_bytes());
    }
}

/// Every part: its type facts, then its decoded content.
fn parts(msg: &Message<'_>, sink: &mut Sink, depth: usize) {
    for part in &msg.parts {
        if let Some(ct) = part.content_type() {
            let mut t = String::with_capacity(32);
            t.push_str(ct.ctype());
            if let Some(sub) = ct.subtype() {
                t.push('/');
                t.push_str(sub);
            }
            sink.add("ctype:", t.as_bytes());
            if let Some(cs) = ct.attribute("charset") {
                sink.add("charset:", cs.as_bytes());
            }
        }
        if let Some(cte) = part.content_transfer_encoding() {
            sink.add("cte:", cte.as_bytes());
        }
        if let Some(name) = part.attachment_name()
            && let Some((_, ext)) = name.rsplit_once('.')
        {
            sink.add("filext:", ext.as_bytes());
        }
        match &part.body {
            PartType::Text(t) => sink.text("", t),
            PartType::Html(h) => html(h, sink),
            PartType::Message(m) if depth < MAX_DEPTH => parts(m, sink, depth + 1),
            _ => {}
        }
    }
}

/// HTML: text with tags stripped, plus tag names, link and image hosts, and
/// a clue for text hidden in comments. A simple scanner, not a parser: it
/// only has to find where tags begin and end, and quoted attribute values.
pub fn html(h: &str, sink: &mut Sink) {
    let bytes = &h.as_bytes()[..h.len().min(MAX_PART_TEXT)];
    let mut text = String::with_capacity(bytes.len() / 2);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            let next = memchr_lt(&bytes[i..]).map_or(bytes.len(), |n| i + n);
            text.push_str(&String::from_utf8_lossy(&bytes[i..next]));
            i = next;
            continue;
        }
        if bytes[i..].starts_with(b"<!--") {
            sink.add("html:", b"comment");
            i = find_ci(&bytes[i..], b"-->").map_or(bytes.len(), |n| i + n + 3);
            continue;
        }
        let end = tag_end(bytes, i);
        tag(&bytes[i + 1..end], sink);
        text.push(' ');
        i = (end + 1).min(bytes.len());
    }
    sink.text("", &decode_entities(&text));
}

/// Text with HTML character references decoded: numeric ones (spam
/// spells words as `&#86;&#105;...` to hide them from word filters) and the
/// few named ones common in mail; others are left as they are.
fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        // Bytes, not a str slice: the tenth byte may be inside a character.
        let end = rest.bytes().take(12).position(|b| b == b';');
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "nbsp" => Some(' '),
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => match name.strip_prefix('#') {
                    Some(n) => match n.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => n.parse().ok(),
                    }
                    .and_then(char::from_u32),
                    None => None,
                },
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The index of `<`'s matching `>`, skipping quoted attribute values.
fn tag_end(bytes: &[u8], start: usize) -> usize {
    let mut quote = 0u8;
    for (j, &b) in bytes.iter().enumerate().skip(start + 1) {
        match (quote, b) {
            (0, b'"' | b'\'') => quote = b,
            (0, b'>') => return j,
            (q, b) if q == b => quote = 0,
            _ => {}
        }
    }
    bytes.len()
}

fn memchr_lt(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'<')
}

/// The hosts of a tag's `href`/`src` attributes.
fn tag(inner: &[u8], sink: &mut Sink) {
    let name_end = inner.iter().position(|b| b.is_ascii_whitespace() || *b == b'>').unwrap_or(inner.len());
    let name = &inner[..name_end];
    if name.is_empty() || name[0] == b'/' || name.len() > 10 {
        return;
    }
    // Tag names are not counted: every HTML message has the same few, so
    // they are a dozen correlated clues that say only "this is HTML" and
    // drown the real ones (SpamBayes drops them for the same reason).
    for attr in [&b"href="[..], b"src="] {
        if let Some(at) = find_ci(inner, attr) {
            let v = &inner[at + attr.len()..];
            let v = v.strip_prefix(b"\"").or_else(|| v.strip_prefix(b"'")).unwrap_or(v);
            let end = v.iter().position(|b| matches!(b, b'"' | b'\'' | b' ' | b'>')).unwrap_or(v.len());
            let url = &v[..end];
            if find_ci(url, b"mailto:") == Some(0) {
                let addr = url.split(|&b| b == b'?').next().unwrap_or(url);
                if let Some(at) = addr.iter().position(|&b| b == b'@') {
                    sink.host("mailto:", &addr[at + 1..]);
                }
            } else if find_url(url).is_some() {
                sink.url(url);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_skips() {
        assert_eq!(trim_punct(b"(hello),"), b"hello");
        assert_eq!(trim_punct(b"..."), b"");
        let mut s = Sink::default();
        s.text("", "hi there verylongwordthatisjunkjunkjunk");
        let t = s.finish();
        assert!(t.contains(&hash("", b"there")));
        assert!(!t.contains(&hash("", b"hi")));
        assert!(t.contains(&hash("skip:", b"v3")));
    }

    #[test]
    fn entities_and_cjk() {
        assert_eq!(decode_entities("&#86;&#x69;agra &amp; co &bogus; &"), "Viagra & co &bogus; &");
        // A reference cut inside a multi-byte character must not panic.
        assert_eq!(decode_entities("&ééééééééé"), "&ééééééééé");
        let mut s = Sink::default();
        s.text("", "会議の日程を変更します");
        let t = s.finish();
        assert!(t.contains(&hash("cjk:", "会議".as_bytes())));
        assert!(!t.contains(&hash("skip:", "会3".as_bytes())));
    }

    #[test]
    fn find_ci_finds_what_a_window_compare_finds() {
        let naive = |hay: &[u8], needle: &[u8]| {
            (hay.len() >= needle.len())
                .then(|| {
                    (0..=hay.len() - needle.len())
                        .find(|&i| hay[i..i + needle.len()].eq_ignore_ascii_case(needle))
                })
                .flatten()
        };
        let hays: [&[u8]; 6] =
            [b"", b"h", b"xxHTTP://a", b"Www.WWW.", b"ahttps:/https://", b"\xffH\xffhTtP://"];
        let needles: [&[u8]; 5] = [b"", b"http://", b"www.", b"https://", b"h"];
        for hay in hays {
            for needle in needles {
                assert_eq!(find_ci(hay, needle), naive(hay, needle), "{hay:?} {needle:?}");
            }
        }
    }

    #[test]
    fn urls_and_html() {
        let mut s = Sink::default();
        html("<p>Buy <a href=\"http://shop.pills.example.com/buy?now=1\">now</a><!-- hidden --></p>", &mut s);
        let t = s.finish();
        assert!(t.contains(&hash("url:", b"shop.pills.example.com")));
        assert!(t.contains(&hash("url:", b"example.com")));
        assert!(t.contains(&hash("html:", b"comment")));
        assert!(t.contains(&hash("", b"buy")));
        assert!(!t.contains(&hash("", b"hidden")));
    }
}
