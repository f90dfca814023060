//! `sluice webhook parse PROVIDER FILE...`: a saved provider webhook body
//! read by the same parser as the endpoint (`outbound::providers`), one
//! JSON line per normalized event, nothing recorded. What the parser
//! skipped and any notice (SNS's subscription handshake) go to standard
//! error, so standard output is only events.

use std::io::Write;
use std::path::{Path, PathBuf};

use outbound::providers::{self, Provider, ProviderEvent};
use serde::Serialize;

/// What `sluice webhook parse` was asked to do.
pub struct Options {
    pub provider: String,
    pub files: Vec<PathBuf>,
    /// The body's content type; guessed from each file's name when absent.
    pub content_type: Option<String>,
    /// Print the provider's event object too.
    pub raw: bool,
}

/// One output line: the event's fields in the schema's order (`event`
/// first), then where it came from.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    event: &'a ProviderEvent,
    provider: &'static str,
    file: &'a str,
}

/// Runs `sluice webhook parse`; the exit code is non-zero when a file
/// could not be read or parsed (the others are still printed).
pub fn run(opts: Options) -> anyhow::Result<i32> {
    let provider: Provider = opts.provider.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    anyhow::ensure!(!opts.files.is_empty(), "give one or more payload files");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut code = 0;
    for file in &opts.files {
        let name = file.display().to_string();
        let body = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{name}: {e}");
                code = 1;
                continue;
            }
        };
        let ct = opts.content_type.clone().unwrap_or_else(|| guess_content_type(file, &body));
        let payload = match providers::parse_payload(provider, &ct, &body) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{name}: not a {provider} webhook body ({ct}): {e}");
                code = 1;
                continue;
            }
        };
        let providers::Payload { events, skipped, notices } = payload;
        for mut event in events {
            if !opts.raw {
                event.raw = serde_json::Value::Null;
            }
            let line = Line { event: &event, provider: provider.as_str(), file: &name };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        }
        for s in &skipped {
            let what =
                if s.provider_event.is_empty() { "an unnamed event" } else { s.provider_event.as_str() };
            eprintln!("{name}: skipped {what}: {}", s.why);
        }
        for n in &notices {
            eprintln!("{name}: {}", serde_json::to_string(n)?);
        }
    }
    out.flush()?;
    Ok(code)
}

/// The content type a saved body was most likely posted with: `.json` is
/// JSON; `.form` is a form, multipart when the body starts with a
/// `--boundary` line (its boundary taken from there), else urlencoded;
/// anything else JSON, which every provider but Mailgun's legacy hooks sends.
fn guess_content_type(file: &Path, body: &[u8]) -> String {
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext != "form" {
        return "application/json".into();
    }
    let first = body.split(|b| *b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    match first.trim_end().strip_prefix("--") {
        Some(boundary) if !boundary.is_empty() && !boundary.contains(char::is_whitespace) => {
            format!("multipart/form-data; boundary={boundary}")
        }
        _ => "application/x-www-form-urlencoded".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_from_names_and_bodies() {
        assert_eq!(guess_content_type(Path::new("a.json"), b"[]"), "application/json");
        assert_eq!(
            guess_content_type(Path::new("a.form"), b"event=delivered"),
            "application/x-www-form-urlencoded"
        );
        assert_eq!(
            guess_content_type(
                Path::new("a.form"),
                b"--BoUnDaRy\r\nContent-Disposition: form-data; name=x\r\n"
            ),
            "multipart/form-data; boundary=BoUnDaRy"
        );
    }
}
