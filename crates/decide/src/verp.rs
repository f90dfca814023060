//! VERP addresses: `local+token@domain`. The token's format (and its HMAC)
//! belongs to the outbound stage; here we only find it.

/// The token of `local+token@domain` (or of a bare local part).
pub fn parse(address: &str) -> Option<String> {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
    let (_, token) = local.split_once('+')?;
    (!token.is_empty() && token.len() <= 200 && token.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| token.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn tokens() {
        assert_eq!(parse("bounces+abc123.x@b.example.com").as_deref(), Some("abc123.x"));
        assert_eq!(parse("<bounces+t@b.test>").as_deref(), Some("t"));
        assert_eq!(parse("plain@b.test"), None);
        assert_eq!(parse("bounces+@b.test"), None);
    }
}
