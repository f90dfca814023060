//! Sessions over real TCP against an in-memory sink: the dialogue, framing
//! edge cases and limits, without the spool. (End-to-end tests with real
//! clients and peers live in the top-level `tests/` suite.)

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ingress::{Accepted, Authenticator, BoxFuture, Limits, ListenerKind, SessionConfig, Sink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use vocabulary::Reply;

#[derive(Default)]
struct MemorySink(Mutex<Vec<Accepted>>);

impl Sink for MemorySink {
    fn accept(&self, msg: Accepted) -> BoxFuture<'_, Result<(), Reply>> {
        self.0.lock().unwrap().push(msg);
        Box::pin(async { Ok(()) })
    }
}

struct NoUsers;
impl Authenticator for NoUsers {
    fn verify<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<bool, vocabulary::Reply>> {
        Box::pin(async { Ok(false) })
    }
}

async fn start(limits: Limits) -> (std::net::SocketAddr, Arc<MemorySink>, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = Arc::new(MemorySink::default());
    let cfg = Arc::new(SessionConfig {
        hostname: "mx.test".into(),
        kind: ListenerKind::Mx,
        accept_domains: HashSet::from(["example.test".to_string()]),
        limits,
        tls: None,
        sink: sink.clone(),
        auth: Arc::new(NoUsers),
    });
    let (tx, rx) = watch::channel(false);
    tokio::spawn(ingress::serve(ingress::Listener { listener, cfg }, rx, Duration::from_secs(1)));
    (addr, sink, tx)
}

/// Reads until `n` complete reply lines (not continuation lines) arrived.
async fn replies(s: &mut TcpStream, n: usize) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).to_string();
        let finals = text.lines().filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ').count();
        if finals >= n {
            return text;
        }
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Err(_) => return text,
            Ok(Ok(k)) => out.extend_from_slice(&buf[..k]),
            Ok(Err(e)) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn pipelined_transaction_and_exact_content() {
    let (addr, sink, _stop) = start(Limits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(replies(&mut s, 1).await.starts_with("220 mx.test"));
    s.write_all(b"EHLO client.test\r\n").await.unwrap();
    let ehlo = replies(&mut s, 1).await;
    for cap in ["PIPELINING", "CHUNKING", "SMTPUTF8", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE "] {
        assert!(ehlo.contains(cap), "{cap} missing in {ehlo}");
    }
    s.write_all(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.test>\r\nRCPT TO:<y@other.test>\r\nDATA\r\n")
        .await
        .unwrap();
    let r = replies(&mut s, 4).await;
    let codes: Vec<&str> = r.lines().map(|l| &l[..3]).collect();
    assert_eq!(codes, ["250", "250", "550", "354"], "{r}");
    assert!(r.contains("550 5.7.1"));
    s.write_all(b"Subject: t\r\n\r\n..dot\r\nbare\nlf\r\n.\r\nQUIT\r\n").await.unwrap();
    let r = replies(&mut s, 2).await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert!(r.contains("221 2.0.0"));
    let msgs = sink.0.lock().unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].content, b"Subject: t\r\n\r\n.dot\r\nbare\nlf\r\n");
    assert_eq!(msgs[0].envelope.rcpts.len(), 1);
    assert!(msgs[0].trace.starts_with("Received: from client.test ([127.0.0.1])"));
    assert!(msgs[0].trace.ends_with("\r\n"));
}

#[tokio::test]
async fn bdat_chunks_and_limits() {
    let limits = Limits { max_recipients: 2, max_message_size: 2048, ..Limits::default() };
    let (addr, sink, _stop) = start(limits).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    replies(&mut s, 1).await;
    s.write_all(b"EHLO c\r\nMAIL FROM:<> SIZE=999999\r\n").await.unwrap();
    assert!(replies(&mut s, 2).await.contains("552 5.3.4"));
    s.write_all(b"MAIL FROM:<>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\n")
        .await
        .unwrap();
    let r = replies(&mut s, 4).await;
    assert!(r.contains("452 4.5.3"), "{r}");
    s.write_all(b"BDAT 5\r\nab\r\ncBDAT 3 LAST\r\n\x00.\n").await.unwrap();
    let r = replies(&mut s, 2).await;
    assert!(r.contains("250 2.0.0 5 bytes received") && r.contains("queued as"), "{r}");
    assert_eq!(sink.0.lock().unwrap()[0].content, b"ab\r\nc\x00.\n");
    // DATA too big: read to the end, then 552; the session stays usable.
    s.write_all(b"MAIL FROM:<>\r\nRCPT TO:<a@example.test>\r\nDATA\r\n").await.unwrap();
    replies(&mut s, 3).await;
    let big = vec![b'x'; 4000];
    s.write_all(&big).await.unwrap();
    s.write_all(b"\r\n.\r\nNOOP\r\n").await.unwrap();
    let r = replies(&mut s, 2).await;
    assert!(r.contains("552 5.3.4") && r.contains("250 2.0.0 Ok"), "{r}");
}

#[tokio::test]
async fn hostile_input_gets_replies() {
    let limits = Limits { max_bad_commands: 3, max_line_length: 512, ..Limits::default() };
    let (addr, sink, _stop) = start(limits).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    replies(&mut s, 1).await;
    let mut long = vec![b'A'; 1 << 20];
    long.extend_from_slice(b"\r\n");
    s.write_all(&long).await.unwrap();
    assert!(replies(&mut s, 1).await.contains("500 5.5.2 Line too long"));
    s.write_all(b"HE\x00LO x\r\nMAIL FROM:<\xff\xfe@x>\r\nFOO\r\n").await.unwrap();
    let r = replies(&mut s, 3).await;
    assert!(r.contains("500 5.5.2 Invalid character"), "{r}");
    assert!(r.contains("421 4.7.0"), "fourth bad command closes: {r}");
    // A client that vanishes mid-DATA leaves nothing behind.
    let mut s = TcpStream::connect(addr).await.unwrap();
    replies(&mut s, 1).await;
    s.write_all(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.test>\r\nDATA\r\n").await.unwrap();
    replies(&mut s, 4).await;
    s.write_all(b"Subject: partial\r\n\r\nhalf a mess").await.unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sink.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn connection_limits_and_timeouts() {
    let limits = Limits {
        max_connections_per_ip: 1,
        command_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (addr, _sink, stop) = start(limits).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    assert!(replies(&mut first, 1).await.starts_with("220"));
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert!(replies(&mut second, 1).await.starts_with("421 4.7.0"));
    // The idle first session times out with 421 4.4.2.
    assert!(replies(&mut first, 1).await.contains("421 4.4.2"));
    // Shutdown: an idle session is told 421 4.3.2.
    let mut third = TcpStream::connect(addr).await.unwrap();
    replies(&mut third, 1).await;
    stop.send(true).unwrap();
    assert!(replies(&mut third, 1).await.contains("421 4.3.2"));
}

/// A sink that would refuse every recipient at RCPT, if asked.
struct RefusingSink;

impl Sink for RefusingSink {
    fn accept(&self, _: Accepted) -> BoxFuture<'_, Result<(), Reply>> {
        Box::pin(async { Ok(()) })
    }
    fn check_rcpt<'a>(&'a self, _: &'a str, rcpt: &'a str) -> BoxFuture<'a, Option<Reply>> {
        Box::pin(async move { Some(Reply::new(550, "5.7.1", format!("<{rcpt}> is suppressed: test"))) })
    }
}

#[tokio::test]
async fn the_mx_listener_never_asks_the_sink_about_a_recipient() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = Arc::new(SessionConfig {
        hostname: "mx.test".into(),
        kind: ListenerKind::Mx,
        accept_domains: HashSet::from(["example.test".to_string()]),
        limits: Limits::default(),
        tls: None,
        sink: Arc::new(RefusingSink),
        auth: Arc::new(NoUsers),
    });
    let (_stop, rx) = watch::channel(false);
    tokio::spawn(ingress::serve(ingress::Listener { listener, cfg }, rx, Duration::from_secs(1)));
    let mut s = TcpStream::connect(addr).await.unwrap();
    replies(&mut s, 1).await;
    s.write_all(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.test>\r\n").await.unwrap();
    let r = replies(&mut s, 3).await;
    assert!(r.lines().last().is_some_and(|l| l.starts_with("250 2.1.5")), "{r}");
}
