//! The client against a smart host: a small in-process SMTP server that can
//! offer STARTTLS or speak TLS from the start, offers AUTH, and records what
//! it received and whether TLS was up at the time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use deliver::smtp::{
    Attempt, Client, ClientConfig, Credentials, Destination, OutboundMessage, Outcome, TlsMode,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const USER: &str = "relay-user";
const PASSWORD: &str = "s3cret pass";

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Clone)]
struct Server {
    starttls: bool,
    implicit: bool,
    /// The AUTH keyword's value; empty offers no AUTH.
    mechanisms: &'static str,
}

/// What the server saw: commands (AUTH lines decoded) with the TLS state.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn push(&self, tls: bool, line: String) {
        self.0.lock().unwrap().push(format!("{}{line}", if tls { "tls " } else { "" }));
    }
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct Tls {
    acceptor: TlsAcceptor,
    cert: CertificateDer<'static>,
}

fn tls() -> Tls {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
    Tls { acceptor: TlsAcceptor::from(Arc::new(config)), cert }
}

async fn read_line(stream: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            return Some(String::from_utf8_lossy(&line).trim_end().to_string());
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn b64d(s: &str) -> String {
    String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(s.trim()).unwrap_or_default())
        .into_owned()
}

async fn session(stream: tokio::net::TcpStream, server: Server, acceptor: TlsAcceptor, log: Arc<Log>) {
    let mut tls = false;
    let mut stream: Box<dyn Io> = Box::new(stream);
    if server.implicit {
        let Ok(s) = acceptor.accept(stream).await else { return };
        stream = Box::new(s);
        tls = true;
    }
    let mut buf = Vec::new();
    let mut authed = false;
    macro_rules! say {
        ($s:expr) => {
            if stream.write_all($s.as_bytes()).await.is_err() {
                return;
            }
        };
    }
    say!("220 sink.test ESMTP\r\n");
    while let Some(line) = read_line(&mut stream, &mut buf).await {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            log.push(tls, "EHLO".into());
            let mut r = String::from("250-sink.test\r\n");
            if server.starttls && !tls {
                r.push_str("250-STARTTLS\r\n");
            }
            if !server.mechanisms.is_empty() {
                r.push_str(&format!("250-AUTH {}\r\n", server.mechanisms));
            }
            r.push_str("250 8BITMIME\r\n");
            say!(r);
        } else if upper == "STARTTLS" && server.starttls && !tls {
            log.push(tls, "STARTTLS".into());
            say!("220 2.0.0 go ahead\r\n");
            buf.clear();
            let Ok(s) = acceptor.clone().accept(stream).await else { return };
            stream = Box::new(s);
            tls = true;
        } else if let Some(initial) = upper.strip_prefix("AUTH PLAIN ").map(|_| &line[11..]) {
            let decoded = b64d(initial);
            let mut parts = decoded.split('\0').skip(1);
            let (user, pass) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            log.push(tls, format!("AUTH PLAIN {user}:{pass}"));
            authed = user == USER && pass == PASSWORD;
            say!(if authed { "235 2.7.0 ok\r\n" } else { "535 5.7.8 bad credentials\r\n" });
        } else if upper == "AUTH LOGIN" {
            say!("334 VXNlcm5hbWU6\r\n");
            let Some(user) = read_line(&mut stream, &mut buf).await else { return };
            say!("334 UGFzc3dvcmQ6\r\n");
            let Some(pass) = read_line(&mut stream, &mut buf).await else { return };
            let (user, pass) = (b64d(&user), b64d(&pass));
            log.push(tls, format!("AUTH LOGIN {user}:{pass}"));
            authed = user == USER && pass == PASSWORD;
            say!(if authed { "235 2.7.0 ok\r\n" } else { "535 5.7.8 bad credentials\r\n" });
        } else if upper.starts_with("MAIL FROM") {
            log.push(tls, "MAIL".into());
            say!(if authed || server.mechanisms.is_empty() {
                "250 ok\r\n"
            } else {
                "530 5.7.0 auth first\r\n"
            });
        } else if upper.starts_with("RCPT TO") {
            say!("250 ok\r\n");
        } else if upper == "DATA" {
            say!("354 go\r\n");
            while let Some(l) = read_line(&mut stream, &mut buf).await {
                if l == "." {
                    break;
                }
            }
            log.push(tls, "DATA".into());
            say!("250 2.0.0 queued\r\n");
        } else if upper == "RSET" {
            say!("250 ok\r\n");
        } else if upper == "QUIT" {
            say!("221 bye\r\n");
            return;
        } else {
            say!("500 5.5.1 what\r\n");
        }
    }
}

/// Starts a server on port 0; returns its port, its certificate and its log.
async fn start(server: Server) -> (u16, CertificateDer<'static>, Arc<Log>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let Tls { acceptor, cert } = tls();
    let log = Arc::new(Log::default());
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(session(stream, server.clone(), acceptor.clone(), l.clone()));
        }
    });
    (port, cert, log)
}

fn config() -> ClientConfig {
    ClientConfig {
        helo: "client.test".into(),
        max_connections: 2,
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        data_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        starttls: true,
        max_messages_per_connection: 100,
    }
}

async fn send(client: &Client, dest: &Destination) -> Attempt {
    let msg = OutboundMessage {
        mail_from: "a@example.com",
        rcpts: &["b@example.org"],
        smtputf8: false,
        eight_bit: false,
        content: &[b"Subject: hi\r\n\r\nhello\r\n"],
        dsn: None,
    };
    client.send(dest, &msg).await
}

fn delivered(attempt: &Attempt) -> bool {
    matches!(&attempt.outcome, Outcome::PerRecipient(r) if r.len() == 1 && r[0].code == 250)
}

fn failure(attempt: &Attempt) -> (u16, String, String) {
    match &attempt.outcome {
        Outcome::Failed(r) => (r.code, r.status.clone().unwrap_or_default(), r.text.clone()),
        Outcome::PerRecipient(r) => panic!("expected a failed attempt, got {r:?}"),
    }
}

fn smart_host(port: u16, tls: TlsMode) -> Destination {
    Destination::new("127.0.0.1", port).with_tls(tls).with_auth(Credentials::new(USER, PASSWORD))
}

#[tokio::test]
async fn required_starttls_then_auth_plain() {
    let (port, _, log) = start(Server { starttls: true, implicit: false, mechanisms: "PLAIN LOGIN" }).await;
    let client = Client::new(config());
    let dest = smart_host(port, TlsMode::Required { verify: false });
    let attempt = send(&client, &dest).await;
    assert!(delivered(&attempt), "{:?}", attempt.outcome_text());
    assert!(attempt.tls.is_some());
    // A second message reuses the authenticated connection.
    assert!(delivered(&send(&client, &dest).await));
    assert_eq!(
        log.lines(),
        [
            "EHLO",
            "STARTTLS",
            "tls EHLO",
            &format!("tls AUTH PLAIN {USER}:{PASSWORD}"),
            "tls MAIL",
            "tls DATA",
            "tls MAIL",
            "tls DATA"
        ]
    );
}

#[tokio::test]
async fn auth_login_when_plain_is_not_offered() {
    let (port, _, log) = start(Server { starttls: true, implicit: false, mechanisms: "LOGIN" }).await;
    let client = Client::new(config());
    let attempt = send(&client, &smart_host(port, TlsMode::Required { verify: false })).await;
    assert!(delivered(&attempt));
    assert!(log.lines().contains(&format!("tls AUTH LOGIN {USER}:{PASSWORD}")));
}

#[tokio::test]
async fn required_tls_fails_when_starttls_is_not_offered() {
    let (port, _, log) = start(Server { starttls: false, implicit: false, mechanisms: "PLAIN" }).await;
    let client = Client::new(config());
    let attempt = send(&client, &smart_host(port, TlsMode::Required { verify: false })).await;
    let (code, status, _) = failure(&attempt);
    assert_eq!((code, status.as_str()), (451, "4.7.4"));
    assert_eq!(log.lines(), ["EHLO"], "no AUTH, no MAIL");
}

#[tokio::test]
async fn credentials_are_not_sent_in_plaintext_unless_allowed() {
    let (port, _, log) = start(Server { starttls: false, implicit: false, mechanisms: "PLAIN" }).await;
    let client = Client::new(config());
    let attempt = send(&client, &smart_host(port, TlsMode::Opportunistic)).await;
    let (code, status, text) = failure(&attempt);
    assert_eq!((code, status.as_str()), (451, "4.7.0"));
    assert!(text.contains("without TLS"), "{text}");
    assert_eq!(log.lines(), ["EHLO"]);

    let dest =
        Destination::new("127.0.0.1", port).with_auth(Credentials::new(USER, PASSWORD).allow_plaintext());
    assert!(delivered(&send(&client, &dest).await));
    assert!(log.lines().contains(&format!("AUTH PLAIN {USER}:{PASSWORD}")));
}

#[tokio::test]
async fn implicit_tls_from_the_first_byte() {
    let (port, _, log) = start(Server { starttls: false, implicit: true, mechanisms: "PLAIN" }).await;
    let client = Client::new(config());
    let attempt = send(&client, &smart_host(port, TlsMode::Implicit { verify: false })).await;
    assert!(delivered(&attempt));
    assert!(attempt.tls.is_some());
    assert_eq!(log.lines()[..2], ["tls EHLO".to_string(), format!("tls AUTH PLAIN {USER}:{PASSWORD}")]);
}

#[tokio::test]
async fn rejected_credentials_are_a_temporary_failure_without_the_password() {
    let (port, _, _) = start(Server { starttls: true, implicit: false, mechanisms: "PLAIN" }).await;
    let client = Client::new(config());
    let dest = Destination::new("127.0.0.1", port)
        .with_tls(TlsMode::Required { verify: false })
        .with_auth(Credentials::new(USER, "wrong"));
    let (code, status, text) = failure(&send(&client, &dest).await);
    assert_eq!((code, status.as_str()), (451, "4.7.8"));
    assert!(text.contains("535") && !text.contains("wrong"), "{text}");
    assert!(!format!("{dest:?}").contains("wrong"), "Debug redacts the password");
}

#[tokio::test]
async fn verified_tls_checks_the_certificate() {
    let (port, cert, _) = start(Server { starttls: true, implicit: false, mechanisms: "PLAIN" }).await;
    let dest = smart_host(port, TlsMode::Required { verify: true });

    let mut trusted = rustls::RootCertStore::empty();
    trusted.add(cert).unwrap();
    let client = Client::with_root_certificates(config(), trusted);
    assert!(delivered(&send(&client, &dest).await));

    // Trusting some other certificate: the handshake is refused.
    let mut other = rustls::RootCertStore::empty();
    other.add(tls().cert).unwrap();
    let client = Client::with_root_certificates(config(), other);
    let (code, status, _) = failure(&send(&client, &dest).await);
    assert_eq!((code, status.as_str()), (451, "4.7.5"));
}

trait OutcomeText {
    fn outcome_text(&self) -> String;
}

impl OutcomeText for Attempt {
    fn outcome_text(&self) -> String {
        match &self.outcome {
            Outcome::Failed(r) => format!("failed: {r}"),
            Outcome::PerRecipient(r) => format!("{r:?}"),
        }
    }
}
