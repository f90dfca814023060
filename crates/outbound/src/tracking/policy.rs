//! Whether a message is tracked: what the send asked for, else its
//! stream's default, else the server's (`[tracking]`). Nothing is tracked
//! without a tracking base URL.

use std::collections::HashMap;

/// Opens and clicks, each on or off (or, for a stream, unsaid).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Track<T = bool> {
    pub opens: T,
    pub clicks: T,
}

/// The server's tracking settings.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Where `/t/o/TOKEN` and `/t/c/TOKEN` are served (`https://t.example.com`).
    pub base_url: String,
    /// When neither the send nor its stream says.
    pub default: Track,
    /// Per stream, what it says.
    pub streams: HashMap<String, Track<Option<bool>>>,
}

impl Policy {
    /// What a send is tracked for: each of `asked` when given, else the
    /// stream's, else the default.
    pub fn decide(&self, stream: Option<&str>, asked: Track<Option<bool>>) -> Track {
        let s = stream.and_then(|s| self.streams.get(s)).copied().unwrap_or_default();
        Track {
            opens: asked.opens.or(s.opens).unwrap_or(self.default.opens),
            clicks: asked.clicks.or(s.clicks).unwrap_or(self.default.clicks),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_then_the_stream_then_the_default_decides() {
        let mut p = Policy { default: Track { opens: true, clicks: false }, ..Policy::default() };
        p.streams.insert("receipts".into(), Track { opens: Some(false), clicks: None });
        let unsaid = Track { opens: None, clicks: None };
        assert_eq!(p.decide(None, unsaid), Track { opens: true, clicks: false });
        assert_eq!(p.decide(Some("receipts"), unsaid), Track { opens: false, clicks: false });
        assert_eq!(
            p.decide(Some("receipts"), Track { opens: Some(true), clicks: Some(true) }),
            Track { opens: true, clicks: true }
        );
        assert_eq!(
            p.decide(Some("other"), Track { opens: None, clicks: Some(true) }),
            Track { opens: true, clicks: true }
        );
    }
}
