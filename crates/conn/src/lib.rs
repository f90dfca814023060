//! A connection, plain or TLS, as the protocols see it: `Stream`, the one
//! plain-or-TLS stream of the SMTP and IMAP servers and the SMTP client, and
//! `Conn`, a server's connection: an input buffer with a read position and
//! an output buffer of pending replies (flushed only when the session needs
//! more input, which is what makes PIPELINING cheap).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsStream};
use vocabulary::Reply;

/// A TCP stream before or after STARTTLS, either side's.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only during the STARTTLS hand-over.
    Gone,
}

impl Stream {
    /// The TLS protocol version in use ("TLSv1.3"), if any.
    pub fn tls_version(&self) -> Option<String> {
        let Stream::Tls(s) = self else { return None };
        let version = match s.as_ref() {
            TlsStream::Client(c) => c.get_ref().1.protocol_version(),
            TlsStream::Server(c) => c.get_ref().1.protocol_version(),
        };
        version.map(|v| format!("{v:?}").replace('_', "."))
    }

    /// Takes the plain TCP stream out for a TLS handshake, leaving `Gone`.
    pub fn take_plain(&mut self) -> io::Result<TcpStream> {
        match std::mem::replace(self, Stream::Gone) {
            Stream::Plain(tcp) => Ok(tcp),
            other => {
                *self = other;
                Err(io::Error::other("TLS already active"))
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// Why reading stopped.
#[derive(Debug)]
pub enum ReadError {
    Closed,
    Timeout,
    Io(#[allow(dead_code)] io::Error),
}

pub struct Conn {
    stream: Stream,
    pub rbuf: Vec<u8>,
    pub pos: usize,
    wbuf: Vec<u8>,
    pub tls_version: Option<String>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        Conn { stream: Stream::Plain(stream), rbuf: Vec::new(), pos: 0, wbuf: Vec::new(), tls_version: None }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Queues a reply; it goes out at the next flush.
    pub fn reply(&mut self, reply: &Reply) {
        self.wbuf.extend_from_slice(&reply.to_wire());
    }

    /// Queues raw bytes (protocols other than SMTP use the same connection).
    pub fn write(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Bytes queued but not yet flushed.
    pub fn queued(&self) -> usize {
        self.wbuf.len()
    }

    pub fn reply_raw(&mut self, line: &str) {
        self.wbuf.extend_from_slice(line.as_bytes());
        self.wbuf.extend_from_slice(b"\r\n");
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Unconsumed input.
    pub fn pending(&self) -> &[u8] {
        &self.rbuf[self.pos..]
    }

    /// Flushes replies, then reads more input (dropping consumed bytes first).
    pub async fn read_more(&mut self, timeout: Duration) -> Result<usize, ReadError> {
        self.flush().await.map_err(ReadError::Io)?;
        if self.pos > 0 {
            self.rbuf.drain(..self.pos);
            self.pos = 0;
        }
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(4096);
        }
        match tokio::time::timeout(timeout, self.stream.read_buf(&mut self.rbuf)).await {
            Err(_) => Err(ReadError::Timeout),
            Ok(Ok(0)) => Err(ReadError::Closed),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(ReadError::Io(e)),
        }
    }

    /// Releases buffer memory held by an idle connection.
    pub fn shrink_if_idle(&mut self) {
        if self.pos == self.rbuf.len() {
            self.rbuf.clear();
            self.pos = 0;
            if self.rbuf.capacity() > 16 * 1024 {
                self.rbuf.shrink_to(4096);
            }
        }
    }

    /// Performs the TLS handshake. Input buffered before it is discarded, so
    /// nothing sent in plaintext is read as if it came over TLS.
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor, timeout: Duration) -> io::Result<()> {
        self.flush().await?;
        self.rbuf.clear();
        self.pos = 0;
        let tcp = self.stream.take_plain()?;
        let tls = tokio::time::timeout(timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        self.stream = Stream::Tls(Box::new(tls.into()));
        self.tls_version = self.stream.tls_version();
        Ok(())
    }

    pub async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}
