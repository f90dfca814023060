//! Line endings on the wire. A message may arrive with bare LF or bare CR
//! line ends (a script piping an `.eml` file), or lines longer than SMTP
//! allows; sluice keeps those bytes exactly in its spool and store, and sends
//! downstream what a strict SMTP server accepts, as Postfix does: every line
//! ends in CRLF (RFC 5321 §2.3.8), and a line longer than 998 octets (§4.5.3.1.6)
//! is broken by inserting CRLF SP (Postfix's `smtp_line_length_limit`).
//! The relay's dot-stuffing runs after this, over the normalized lines, so
//! a `.` line behind a bare LF is stuffed like any other.

use std::borrow::Cow;

/// The most octets of one line before its CRLF (RFC 5321 §4.5.3.1.6).
pub const MAX_LINE: usize = 998;

/// What a message needs changed to be valid SMTP content.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LineFaults {
    /// LF not preceded by CR.
    pub bare_lf: usize,
    /// CR not followed by LF.
    pub bare_cr: usize,
    /// Lines longer than `MAX_LINE` octets.
    pub long_lines: usize,
}

impl LineFaults {
    pub fn any(&self) -> bool {
        self.bare_lf + self.bare_cr + self.long_lines > 0
    }

    /// Bare LF or bare CR line ends (what `bare_newlines = "reject"` refuses).
    pub fn bare_newlines(&self) -> bool {
        self.bare_lf + self.bare_cr > 0
    }

    pub fn is_clean(&self) -> bool {
        !self.any()
    }

    /// Counts the faults of `content` (a scan over its CR and LF bytes).
    pub fn of(content: &[u8]) -> Self {
        let mut faults = LineFaults::default();
        let mut line_start = 0usize;
        let mut skip_lf_at = usize::MAX;
        for at in memchr::memchr2_iter(b'\r', b'\n', content) {
            if at == skip_lf_at {
                continue;
            }
            if at - line_start > MAX_LINE {
                faults.long_lines += 1;
            }
            if content[at] == b'\r' {
                if content.get(at + 1) == Some(&b'\n') {
                    skip_lf_at = at + 1;
                    line_start = at + 2;
                    continue;
                }
                faults.bare_cr += 1;
            } else {
                faults.bare_lf += 1;
            }
            line_start = at + 1;
        }
        if content.len() - line_start > MAX_LINE {
            faults.long_lines += 1;
        }
        faults
    }
}

/// `content` with every line ended by CRLF and no line over `MAX_LINE`
/// octets; borrowed unchanged when it is already so (nearly all mail).
pub fn normalize(content: &[u8]) -> Cow<'_, [u8]> {
    if !LineFaults::of(content).any() {
        return Cow::Borrowed(content);
    }
    let mut out = Vec::with_capacity(content.len() + content.len() / 32 + 2);
    let mut line_len = 0usize;
    let mut i = 0usize;
    while i < content.len() {
        let b = content[i];
        match b {
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                line_len = 0;
                // CRLF is one line end; a bare CR or LF is one too.
                i += if b == b'\r' && content.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                continue;
            }
            _ if line_len == MAX_LINE => {
                out.extend_from_slice(b"\r\n ");
                line_len = 1;
            }
            _ => {}
        }
        out.push(b);
        line_len += 1;
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_mail_is_borrowed_untouched() {
        let m = b"Subject: x\r\n\r\nbody\r\n.\r\n";
        assert!(matches!(normalize(m), Cow::Borrowed(_)));
        assert_eq!(LineFaults::of(m), LineFaults::default());
    }

    #[test]
    fn bare_lf_and_bare_cr_become_crlf() {
        let m = b"Subject: x\n\nline one\rline two\r\nthree\n";
        assert_eq!(LineFaults::of(m), LineFaults { bare_lf: 3, bare_cr: 1, long_lines: 0 });
        assert_eq!(&*normalize(m), b"Subject: x\r\n\r\nline one\r\nline two\r\nthree\r\n");
    }

    #[test]
    fn a_dot_line_behind_a_bare_lf_is_a_line_of_its_own_to_stuff() {
        // Normalizing makes "\n.\n" a real "CRLF . CRLF": the dot-stuffer
        // that runs next doubles it, so the message cannot end early.
        // (deliver's wire tests check the stuffing itself.)
        assert_eq!(&*normalize(b"a\n.\nb\n"), b"a\r\n.\r\nb\r\n");
    }

    #[test]
    fn long_lines_are_broken_with_crlf_space() {
        let long = vec![b'a'; 2500];
        let f = LineFaults::of(&long);
        assert_eq!(f.long_lines, 1);
        let n = normalize(&long);
        let lines: Vec<&[u8]> = n.split(|b| *b == b'\n').collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines.iter().all(|l| l.len() <= MAX_LINE + 1),
            "{:?}",
            lines.iter().map(|l| l.len()).collect::<Vec<_>>()
        );
        assert!(lines[1].starts_with(b" "));
        // Nothing but the inserted CRLF SP: the text is all there.
        let back: Vec<u8> = n.iter().copied().filter(|b| !matches!(b, b'\r' | b'\n' | b' ')).collect();
        assert_eq!(back, long);
        // A line of exactly 998 octets is valid as it is.
        let mut ok = vec![b'b'; MAX_LINE];
        ok.extend_from_slice(b"\r\n");
        assert!(!LineFaults::of(&ok).any());
    }

    #[test]
    fn nul_bytes_pass_through() {
        let m = b"a\0b\r\n";
        assert!(matches!(normalize(m), Cow::Borrowed(_)));
    }
}
