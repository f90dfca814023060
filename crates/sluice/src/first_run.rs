//! What `sluice serve` says on standard output when it was started without
//! a config file: where it listens and the next three commands to try (the
//! start of the README's walk-through). Given `--config`, sluice is set up
//! on purpose and says only its one `sluice listening:` line.

use std::net::SocketAddr;
use std::path::Path;

/// The listeners `serve` ended up on.
pub struct Listening {
    pub smtp: SocketAddr,
    pub submission: SocketAddr,
    pub imap: Vec<SocketAddr>,
    pub http: SocketAddr,
}

/// The block printed after the `sluice listening:` line: the listeners,
/// then three commands that work against them as they are (an API key, a
/// message over HTTP, its tracking), each with `--data` when the data
/// directory is not the default one, so they find the same record.
pub fn hints(on: &Listening, data: &Path) -> String {
    let data_flag = match data == Path::new("./sluice-data") || data == Path::new("sluice-data") {
        true => String::new(),
        false => format!(" --data {}", data.display()),
    };
    let imap = on.imap.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
    let http = on.http;
    let body = r#"{"from":"app@demo.example","to":["ann@example.net"],"subject":"Hi","text":"Hello"}"#;
    format!(
        "\
sluice is running on its defaults (no --config), its data in {data}:
  SMTP (MX)         {smtp}
  SMTP submission   {submission} (STARTTLS, then AUTH)
  IMAP              {imap}
  HTTP API          http://{http}/v1 (dashboard http://{http}/, metrics /metrics)
Try next, from this directory in another terminal:
  sluice apikey create --tenant demo{data_flag} > demo.key
  curl -sS -H \"Authorization: Bearer $(cat demo.key)\" -H 'Content-Type: application/json' -d '{body}' http://{http}/v1/messages
  sluice track ann@example.net{data_flag}
More in the README, \"Five minutes with sluice\".
",
        data = data.display(),
        smtp = on.smtp,
        submission = on.submission,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> Listening {
        Listening {
            smtp: "127.0.0.1:2525".parse().unwrap_or_else(|e| panic!("{e}")),
            submission: "127.0.0.1:2587".parse().unwrap_or_else(|e| panic!("{e}")),
            imap: vec!["127.0.0.1:1143".parse().unwrap_or_else(|e| panic!("{e}"))],
            http: "127.0.0.1:8025".parse().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    #[test]
    fn the_hints_name_every_listener_and_three_commands() {
        let text = hints(&on(), Path::new("./sluice-data"));
        for want in ["127.0.0.1:2525", "127.0.0.1:2587", "127.0.0.1:1143", "http://127.0.0.1:8025/v1"] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        let commands: Vec<&str> =
            text.lines().filter(|l| l.starts_with("  sluice ") || l.starts_with("  curl ")).collect();
        assert_eq!(commands.len(), 3, "{text}");
        assert!(!text.contains("--data"), "the default data directory needs no flag:\n{text}");
    }

    #[test]
    fn another_data_directory_is_named_in_the_commands() {
        let text = hints(&on(), Path::new("/srv/mail"));
        assert_eq!(text.matches("--data /srv/mail").count(), 2, "{text}");
    }
}
