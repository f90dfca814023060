//! The whole server in process (issue 17, item 5): `serve` on listeners
//! bound to port 0, driven over SMTP, IMAP and HTTP as a client would, then
//! stopped by its shutdown future.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice::config::{AccountConfig, Config};
use sluice::serve::{Listeners, serve};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

type Conn = BufReader<TcpStream>;

async fn connect(addr: SocketAddr) -> Conn {
    BufReader::new(TcpStream::connect(addr).await.expect("connect"))
}

async fn line(c: &mut Conn) -> String {
    let mut l = String::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_line(&mut l))
        .await
        .expect("a reply in time")
        .expect("read");
    l
}

/// Sends `cmd`, returns the last line of the (possibly multi-line) SMTP reply.
async fn smtp(c: &mut Conn, cmd: &str) -> String {
    c.get_mut().write_all(cmd.as_bytes()).await.expect("write");
    loop {
        let l = line(c).await;
        if l.as_bytes().get(3) != Some(&b'-') {
            return l;
        }
    }
}

/// Sends an IMAP command, returns every line up to its tagged reply.
async fn imap(c: &mut Conn, tag: &str, cmd: &str) -> Vec<String> {
    c.get_mut().write_all(format!("{tag} {cmd}\r\n").as_bytes()).await.expect("write");
    let mut out = Vec::new();
    loop {
        let l = line(c).await;
        let done = l.starts_with(&format!("{tag} "));
        out.push(l);
        if done {
            return out;
        }
    }
}

async fn any_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

fn config(dir: &std::path::Path) -> Config {
    std::fs::write(dir.join("password"), "in-process-secret\n").expect("password file");
    let mut cfg = Config::default();
    cfg.server.data = dir.join("data");
    cfg.server.accept_domains = vec!["example.test".into()];
    cfg.imap.plaintext_loopback = true;
    cfg.accounts = vec![AccountConfig {
        name: "acme".into(),
        password_file: dir.join("password"),
        domains: vec!["example.test".into()],
        retention_days: None,
        folder_retention_days: Default::default(),
    }];
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_server_runs_in_process() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let listeners = Listeners {
        smtp: any_port().await,
        submission: any_port().await,
        imap: vec![(any_port().await, false)],
        http: any_port().await,
    };
    let smtp_addr = listeners.smtp.local_addr().expect("addr");
    let imap_addr = listeners.imap[0].0.local_addr().expect("addr");
    let http_addr = listeners.http.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(config(dir.path()), listeners, async {
        let _ = stopped.await;
    }));

    // SMTP: mail for the accepted domain is taken (250 once it is on disk).
    let mut s = connect(smtp_addr).await;
    assert!(line(&mut s).await.starts_with("220 "), "an SMTP greeting");
    assert!(smtp(&mut s, "EHLO client.test\r\n").await.starts_with("250 "));
    assert!(smtp(&mut s, "MAIL FROM:<bob@sender.test>\r\n").await.starts_with("250 "));
    assert!(smtp(&mut s, "RCPT TO:<ann@example.test>\r\n").await.starts_with("250 "));
    assert!(smtp(&mut s, "DATA\r\n").await.starts_with("354 "));
    let message = "From: Bob <bob@sender.test>\r\nTo: ann@example.test\r\nSubject: in process\r\n\
                   Message-ID: <in-process@sender.test>\r\n\r\nHello.\r\n.\r\n";
    let reply = smtp(&mut s, message).await;
    assert!(reply.starts_with("250 "), "the message is accepted: {reply}");
    assert!(smtp(&mut s, "QUIT\r\n").await.starts_with("221 "));

    // IMAP: the tee filed a copy for acme, a human's message in Human.
    let mut i = connect(imap_addr).await;
    assert!(line(&mut i).await.starts_with("* OK"), "an IMAP greeting");
    let login = imap(&mut i, "a1", "LOGIN acme in-process-secret").await;
    assert!(login.last().is_some_and(|l| l.starts_with("a1 OK")), "{login:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = imap(&mut i, "a2", "STATUS Human (MESSAGES)").await;
        if status.iter().any(|l| l.contains("(MESSAGES 1)")) {
            break;
        }
        assert!(Instant::now() < deadline, "no copy in acme's Human folder: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    imap(&mut i, "a3", "LOGOUT").await;

    // HTTP: the API answers, and refuses a request without a key.
    let mut h = TcpStream::connect(http_addr).await.expect("connect");
    h.write_all(b"GET /v1/events HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    h.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");

    // Shutdown: serve returns, and its ports are closed.
    stop.send(()).expect("the server is running");
    let result = tokio::time::timeout(Duration::from_secs(30), server).await.expect("stopped in time");
    result.expect("serve did not panic").expect("serve returned Ok");
    assert!(TcpStream::connect(smtp_addr).await.is_err(), "the SMTP port is closed after shutdown");

    // The record: the message was received (for its recipient and for
    // acme's copy) and the copy filed, under the default tenant.
    let queue_id = reply.trim().rsplit(' ').next().expect("a queue id in the 250");
    let store = record::Store::open(&dir.path().join("data")).await.expect("the database");
    let o = &store.events;
    let (tenant, id) = o.find_message("<in-process@sender.test>").await.expect("read").expect("recorded");
    assert_eq!((tenant.name.as_str(), id.as_str()), ("default", queue_id));
    let m = o.message(&tenant, &id, None).await.expect("read").expect("the message");
    let statuses: Vec<(&str, &str, &str)> =
        m.recipients.iter().map(|r| (r.address.as_str(), r.kind.as_str(), r.status.as_str())).collect();
    // No relay is configured: the original waits in the spool, received.
    assert_eq!(statuses, [("ann@example.test", "rcpt", "received"), ("acme", "copy", "filed")]);
    store.close().await;
}
