//! Pattern rules: SpamAssassin's own rule kinds as data — `header`
//! (a header's value against a regular expression, or its presence),
//! `body` (the message's visible text), `rawbody` (the decoded parts,
//! HTML tags and all), `uri` (each link) and `meta` (other rules combined)
//! — so a documented SpamAssassin rule is written into `data/rules.toml`
//! as it stands in SpamAssassin's `.cf` files, not re-invented as code.
//!
//! Patterns are Rust `regex` syntax: SpamAssassin's Perl patterns carry over
//! except look-around, which the rule file says instead with `unless` (a
//! second pattern that must not match the same value). Rules whose name
//! starts with `__` are parts of a `meta` rule: they score nothing and are
//! never reported, as in SpamAssassin.

use mail_parser::{Message, PartType};
use regex::Regex;

/// What a pattern is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Body,
    RawBody,
    Uri,
}

/// A compiled pattern rule's test.
#[derive(Clone, Debug)]
pub enum Pattern {
    /// Any value of the header matches `pattern` (and not `unless`).
    Header { name: String, pattern: Regex, unless: Option<Regex> },
    /// The header is present.
    Exists(String),
    /// The text `target` names matches `pattern` (and not `unless`).
    Text { target: Target, pattern: Regex, unless: Option<Regex> },
}

/// Compiles `pattern`, naming the rule in the error.
pub fn regex(rule: &str, pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("rule {rule}: bad pattern: {e}"))
}

/// The message's texts, made once per message and only when a rule asks.
#[derive(Default)]
pub struct Texts {
    /// Subject and visible text, whitespace runs made one space.
    body: String,
    /// Decoded text and HTML parts as they are.
    raw: String,
    uris: Vec<String>,
}

/// Text read from one part, at most (as the tokenizer bounds its work).
const MAX_PART: usize = 64 * 1024;

impl Texts {
    pub fn of(msg: &Message<'_>) -> Texts {
        let mut t = Texts::default();
        if let Some(s) = msg.subject() {
            t.body.push_str(s);
            t.body.push(' ');
        }
        for part in &msg.parts {
            match &part.body {
                PartType::Text(text) => {
                    let text = cut(text);
                    t.raw.push_str(text);
                    push_words(&mut t.body, text);
                    links_in_text(text, &mut t.uris);
                }
                PartType::Html(html) => {
                    let html = cut(html);
                    t.raw.push_str(html);
                    let visible = visible_text(html);
                    push_words(&mut t.body, &visible);
                    links_in_html(html, &mut t.uris);
                    links_in_text(&visible, &mut t.uris);
                }
                _ => {}
            }
        }
        t.uris.sort();
        t.uris.dedup();
        t
    }

    pub fn matches(&self, target: Target, pattern: &Regex, unless: Option<&Regex>) -> Option<String> {
        let ok = |s: &str| pattern.is_match(s) && !unless.is_some_and(|u| u.is_match(s));
        match target {
            Target::Body => pattern.find(&self.body).filter(|_| ok(&self.body)).map(|m| short(m.as_str())),
            Target::RawBody => ok(&self.raw).then(String::new),
            Target::Uri => self.uris.iter().find(|u| ok(u)).map(|u| short(u)),
        }
    }
}

fn cut(s: &str) -> &str {
    if s.len() <= MAX_PART {
        return s;
    }
    let mut end = MAX_PART;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

fn push_words(out: &mut String, text: &str) {
    for w in text.split_whitespace() {
        out.push_str(w);
        out.push(' ');
    }
}

/// HTML without its tags, comments, styles and scripts, with the commonest
/// entities decoded: what a reader sees.
fn visible_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        out.push(' ');
        let tag = &rest[open..];
        let lower: String = tag.chars().take(8).collect::<String>().to_ascii_lowercase();
        let close = if lower.starts_with("<!--") {
            tag.find("-->").map(|i| i + 3)
        } else if lower.starts_with("<style") || lower.starts_with("<script") {
            let end = if lower.starts_with("<style") { "</style" } else { "</script" };
            find_ci(tag, end).and_then(|i| tag[i..].find('>').map(|j| i + j + 1))
        } else {
            tag.find('>').map(|i| i + 1)
        };
        match close {
            Some(c) => rest = &tag[c..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    for (entity, ch) in [("&nbsp;", " "), ("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&amp;", "&")] {
        if out.contains(entity) {
            out = out.replace(entity, ch);
        }
    }
    out
}

/// The tokenizer's case-insensitive search, over text.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    crate::tokens::find_ci(hay.as_bytes(), needle.as_bytes())
}

/// `href=` and `src=` values: where the message's links and images point.
fn links_in_html(html: &str, out: &mut Vec<String>) {
    let bytes = html.as_bytes();
    for attr in ["href", "src"] {
        let mut from = 0;
        while let Some(i) = find_ci(&html[from..], attr) {
            let mut j = from + i + attr.len();
            from = j;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if bytes.get(j) != Some(&b'=') {
                continue;
            }
            j += 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            let quote = bytes.get(j).copied().filter(|b| *b == b'"' || *b == b'\'');
            let start = j + usize::from(quote.is_some());
            let end = html[start..]
                .find(|c: char| quote.map_or(c.is_whitespace() || c == '>', |q| c == q as char))
                .map_or(html.len(), |e| start + e);
            let value = html[start..end].trim();
            if !value.is_empty() {
                out.push(value.to_string());
            }
            from = end.max(from);
        }
    }
}

/// `http://`, `https://` and bare `www.` addresses in text.
fn links_in_text(text: &str, out: &mut Vec<String>) {
    for word in text.split(|c: char| c.is_whitespace() || "<>\"'()[]".contains(c)) {
        let lower = word.get(..8).unwrap_or(word).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            out.push(word.trim_end_matches(['.', ',', ';']).to_string());
        } else if lower.starts_with("www.") {
            out.push(format!("http://{}", word.trim_end_matches(['.', ',', ';'])));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn texts(raw: &str) -> Texts {
        let msg = MessageParser::default().parse(raw.as_bytes()).expect("parses");
        Texts::of(&msg)
    }

    #[test]
    fn html_becomes_visible_text_and_links() {
        let t = texts(
            "Subject: hi\r\nContent-Type: text/html\r\n\r\n<html><style>p{x}</style><!-- hidden -->\
             <p>Act&nbsp;now <a href=\"http://203.0.113.9/click?id=1\">here</a>\
             <img src='http://img.example/a.gif'></p> see www.example.org.</html>",
        );
        assert_eq!(t.body, "hi Act now here see www.example.org. ");
        assert!(t.uris.contains(&"http://203.0.113.9/click?id=1".to_string()), "{:?}", t.uris);
        assert!(t.uris.contains(&"http://img.example/a.gif".to_string()));
        assert!(t.uris.contains(&"http://www.example.org".to_string()));
        assert!(t.raw.contains("<style>"));
    }

    #[test]
    fn unless_vetoes_a_match() {
        let t = texts("Subject: x\r\n\r\nsee http://10.1.2.3/ and nothing else\r\n");
        let ip = regex("T", r"(?i)^https?://\d+\.\d+\.\d+\.\d+\b").expect("compiles");
        let private = regex("T", r"^https?://10\.").expect("compiles");
        assert!(t.matches(Target::Uri, &ip, None).is_some());
        assert!(t.matches(Target::Uri, &ip, Some(&private)).is_none());
    }

    #[test]
    fn a_truncated_tag_ends_the_text() {
        let words = |h: &str| visible_text(h).split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(words("a <b"), ["a"]);
        assert_eq!(words("<script>x</SCRIPT>y"), ["y"]);
    }
}
