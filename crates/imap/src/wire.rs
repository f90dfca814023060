//! Writing IMAP response data: strings as quoted or literal, NIL, lists.

/// A response being built.
#[derive(Default)]
pub struct Out(Vec<u8>);

impl Out {
    pub fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }

    /// A string: quoted when it is short 7-bit text without CR/LF, else a
    /// literal (`{n}\r\n` and the exact bytes).
    pub fn string(&mut self, s: &[u8]) {
        let quotable =
            s.len() < 1024 && s.iter().all(|&b| b.is_ascii() && b != b'\r' && b != b'\n' && b != 0);
        if quotable {
            self.0.push(b'"');
            for &b in s {
                if b == b'"' || b == b'\\' {
                    self.0.push(b'\\');
                }
                self.0.push(b);
            }
            self.0.push(b'"');
        } else {
            self.literal(s);
        }
    }

    pub fn literal(&mut self, s: &[u8]) {
        self.0.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        self.0.extend_from_slice(s);
    }

    pub fn nstring(&mut self, s: Option<&[u8]>) {
        match s {
            Some(s) => self.string(s),
            None => self.raw("NIL"),
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// `(a b c)` (items joined by `sep`) with `item` writing each element, or
/// `NIL` when empty.
pub fn list_or_nil<T>(out: &mut Out, items: &[T], sep: &str, mut item: impl FnMut(&mut Out, &T)) {
    if items.is_empty() {
        out.raw("NIL");
        return;
    }
    out.raw("(");
    for (i, t) in items.iter().enumerate() {
        if i > 0 {
            out.raw(sep);
        }
        item(out, t);
    }
    out.raw(")");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_quote_or_go_literal() {
        let mut o = Out::default();
        o.string(b"a \"b\" \\c");
        o.raw(" ");
        o.string("caf\u{e9}".as_bytes());
        o.raw(" ");
        o.nstring(None);
        assert_eq!(o.into_bytes(), b"\"a \\\"b\\\" \\\\c\" {5}\r\ncaf\xc3\xa9 NIL".to_vec());
    }
}
