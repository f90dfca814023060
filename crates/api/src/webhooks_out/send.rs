//! One attempt: a POST of a delivery's body to its endpoint, signed now,
//! through a client that resolves names only to addresses the guard
//! allows, follows no redirect, uses no proxy, and gives up after 15 s.
//! What came back is what the delivery log keeps: status, the first KiB of
//! the body, the time it took, or the error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use record::webhooks::{Attempt, Endpoint};

use super::body;
use super::guard::{Guard, GuardedResolver};

/// How long one attempt may take, connection and response included.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// How much of a response body the log keeps.
const KEPT_BODY: usize = 1024;

/// What an attempt got.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: Option<u16>,
    /// The first KiB of the body, as text.
    pub body: Option<String>,
    pub latency_ms: i64,
    /// What went wrong before a status came back.
    pub error: Option<String>,
    /// The receiver's `Retry-After`, as sent.
    pub retry_after: Option<String>,
}

impl Response {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// This attempt as the delivery log shows it.
    pub fn log(&self, url: &str, at: i64, event: i64, webhook_id: &str, attempt: i64) -> Attempt {
        Attempt {
            kind: "attempt".into(),
            event_id: Some(event),
            webhook_id: Some(webhook_id.to_string()),
            attempt: Some(attempt),
            at,
            url: Some(url.to_string()),
            response_status: self.status.map(i64::from),
            response_body: self.body.clone(),
            latency_ms: Some(self.latency_ms),
            error: self.error.clone(),
            ..Attempt::default()
        }
    }
}

/// The webhook client: one connection pool for every endpoint.
pub fn client(guard: Arc<Guard>) -> Result<reqwest::Client, String> {
    // reqwest takes the process's rustls provider: ring, as every other
    // TLS config of sluice names it (a second call is a no-op).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(body::USER_AGENT)
        .dns_resolver(GuardedResolver { guard })
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("the webhook HTTP client: {e}"))
}

/// POSTs `body` to the endpoint, signed with its live secrets at `now_ms`.
pub async fn post(
    client: &reqwest::Client,
    guard: &Guard,
    endpoint: &Endpoint,
    webhook_id: &str,
    body: &str,
    now_ms: i64,
) -> Response {
    let started = Instant::now();
    let elapsed = |s: Instant| s.elapsed().as_millis().min(i64::MAX as u128) as i64;
    let url = match guard.check_url(&endpoint.url) {
        Ok(u) => u,
        Err(e) => {
            return Response { error: Some(format!("destination refused: {e}")), ..Response::default() };
        }
    };
    let mut request = client.post(url).body(body.to_string());
    for (name, value) in
        body::headers(webhook_id, now_ms.div_euclid(1000), body.as_bytes(), &endpoint.live_secrets(now_ms))
    {
        request = request.header(name, value);
    }
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            // Without the URL: it may carry credentials, and the log has it.
            let e = e.without_url();
            return Response {
                error: Some(describe(&e)),
                latency_ms: elapsed(started),
                ..Response::default()
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Only the first KiB is read: a receiver cannot make us hold more.
    let mut kept = Vec::new();
    let mut error = None;
    while kept.len() < KEPT_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk[..chunk.len().min(KEPT_BODY - kept.len())]),
            Ok(None) => break,
            Err(e) => {
                error = Some(describe(&e.without_url()));
                break;
            }
        }
    }
    let body = (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned());
    Response { status: Some(status), body, latency_ms: elapsed(started), error, retry_after }
}

/// An error with its causes (reqwest's own text says little: "error
/// sending request").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    if out.len() > 500 {
        let mut end = 500;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use record::webhooks::EndpointStatus;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn endpoint(url: &str) -> Endpoint {
        Endpoint {
            id: "ep_1".into(),
            tenant: 1,
            url: url.into(),
            description: None,
            events: Vec::new(),
            secret: outbound::standard_webhooks::Secret::generate().unwrap().to_whsec(),
            old_secret: None,
            status: EndpointStatus::Enabled,
            disabled_reason: None,
            disabled_at: None,
            failing_since: None,
            batch: None,
            created_at: 0,
        }
    }

    /// A one-shot HTTP server on loopback answering `reply`; what it read.
    async fn serve_once(reply: &'static [u8]) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = vec![0u8; 65536];
            let n = s.read(&mut got).await.unwrap();
            got.truncate(n);
            s.write_all(reply).await.unwrap();
            got
        });
        (url, task)
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_allowed_and_the_log_keeps_a_kib() {
        let (url, task) =
            serve_once(b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 3000\r\n\r\n").await;
        let closed = Arc::new(Guard::default());
        let r = post(&client(closed.clone()).unwrap(), &closed, &endpoint(&url), "msg_1", "{}", 0).await;
        assert!(r.error.as_deref().is_some_and(|e| e.contains("loopback")), "{r:?}");
        assert_eq!(r.status, None);

        let open = Arc::new(Guard::new(&["127.0.0.0/8".into()]).unwrap());
        let r = {
            let c = client(open.clone()).unwrap();
            let e = endpoint(&url);
            let send = post(&c, &open, &e, "msg_1", r#"{"a":1}"#, 1_700_000_000_000);
            // The body never comes whole: what came is kept.
            tokio::time::timeout(Duration::from_secs(20), send).await.unwrap()
        };
        let request = String::from_utf8(task.await.unwrap()).unwrap();
        assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
        for h in [
            "webhook-id: msg_1",
            "webhook-timestamp: 1700000000",
            "webhook-signature: v1,",
            "content-type: application/json",
        ] {
            assert!(request.contains(h), "{h} in {request}");
        }
        assert!(request.ends_with(r#"{"a":1}"#));
        assert_eq!(r.status, Some(503));
        assert_eq!(r.retry_after.as_deref(), Some("7"));
        assert!(!r.ok());
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let (url, task) =
            serve_once(b"HTTP/1.1 302 Found\r\nLocation: http://10.0.0.1/\r\nContent-Length: 2\r\n\r\nno")
                .await;
        let open = Arc::new(Guard::new(&["127.0.0.0/8".into()]).unwrap());
        let r = post(&client(open.clone()).unwrap(), &open, &endpoint(&url), "msg_2", "{}", 0).await;
        task.await.unwrap();
        assert_eq!((r.status, r.body.as_deref()), (Some(302), Some("no")));
        let log = r.log(&url, 5, 9, "msg_2", 3);
        assert_eq!((log.response_status, log.attempt, log.event_id), (Some(302), Some(3), Some(9)));
    }
}
