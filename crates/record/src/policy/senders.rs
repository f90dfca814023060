//! Sender patterns (`allow_senders`, `block_senders`) and their matcher.

/// A sender pattern, lowercased: an address, a domain, or either with `*`s.
pub fn sender_pattern(p: &str) -> Result<String, String> {
    let p = p.trim().to_ascii_lowercase();
    let ok = !p.is_empty()
        && p.len() <= 254
        && p.matches('@').count() <= 1
        && p.bytes().all(|b| b.is_ascii_graphic() && !b"\"<>()[]\\,;:".contains(&b));
    let (local, dom) = p.split_once('@').unwrap_or(("*", &p));
    let dom_ok = !dom.is_empty()
        && dom.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.*".contains(&b))
        && !dom.contains("..");
    if !ok || local.is_empty() || !dom_ok {
        return Err(format!(
            "{p:?} is not a sender pattern (an address, a domain, or one with * such as *@*.example.com)"
        ));
    }
    Ok(p)
}

/// The first pattern of `list` that `sender` matches. A pattern without
/// `@` is about the sender's domain; `*` stands for any characters (none
/// included). The empty (null) sender matches nothing.
pub fn matches<'a>(list: &'a [String], sender: &str) -> Option<&'a str> {
    let sender = sender.trim().trim_start_matches('<').trim_end_matches('>').to_ascii_lowercase();
    let (_, dom) = sender.rsplit_once('@')?;
    list.iter()
        .find(|p| match p.contains('@') {
            true => glob(p.as_bytes(), sender.as_bytes()),
            false => glob(p.as_bytes(), dom.as_bytes()),
        })
        .map(String::as_str)
}

/// `*` matches any run of bytes; everything else itself.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(b"*.example.com", b"mx.example.com"));
        assert!(!glob(b"*.example.com", b"example.com"));
        assert!(glob(b"*@*.example.com", b"a@b.c.example.com"));
        assert!(glob(b"news-*@x.org", b"news-42@x.org"));
        assert!(!glob(b"news-*@x.org", b"news-42@x.org.evil"));
        assert!(glob(b"*", b""));
    }
}
