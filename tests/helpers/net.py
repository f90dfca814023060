"""Loopback ports and a raw SMTP client for byte-exact conversations."""

import random
import re
import socket
import ssl
import time

_used_ports = set()


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except OSError:
        return 32768, 60999


def free_port(host="127.0.0.1"):
    """A free TCP port on `host` chosen *below* the ephemeral range, so no
    client socket of the suite can take it while the server that owns it is
    being restarted (kill -9 and start again on the same port)."""
    lo, _ = _ephemeral_range()
    top = max(lo - 1, 20000)
    for _ in range(500):
        port = random.randint(15000, top)
        if port in _used_ports:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        except OSError:
            continue
        finally:
            s.close()
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port found")


def wait_port_closed(host, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
        except OSError:
            return True
        time.sleep(0.05)
    return False


class Reply:
    def __init__(self, code, lines, raw):
        self.code = code
        self.lines = lines  # text after "NNN-" / "NNN "
        self.raw = raw

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def status(self):
        """Enhanced status code (e.g. '5.7.1') of the last line, or ''."""
        m = re.match(r"^([245]\.\d{1,3}\.\d{1,3})\b", self.lines[-1] if self.lines else "")
        return m.group(1) if m else ""

    def __repr__(self):
        return f"Reply({self.code}, {self.lines!r})"


class ConnectionClosed(Exception):
    pass


class RawSMTP:
    """An SMTP client that sends exactly the bytes it is given and parses the
    replies, with a timeout on everything."""

    def __init__(self, host, port, timeout=10.0, source=None):
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.sock.settimeout(timeout)
        self.buf = b""
        self.timeout = timeout

    # -- io -------------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionClosed(f"connection closed; unparsed: {self.buf!r}")
        self.buf += chunk

    def read_line(self):
        while b"\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def reply(self):
        lines = []
        raw = []
        while True:
            line = self.read_line()
            raw.append(line)
            if len(line) < 3 or not line[:3].isdigit():
                raise AssertionError(f"malformed reply line {line!r}")
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return Reply(int(line[:3]), lines, b"\r\n".join(raw))

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, line):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply()

    def closed_by_peer(self, timeout=5.0):
        """True when the server closes the connection (EOF or reset) within
        `timeout` with nothing more to read."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(self.timeout)
        if data:
            self.buf += data
            return False
        return True

    # -- conveniences ---------------------------------------------------------
    def greeting(self):
        r = self.reply()
        assert r.code == 220, r
        return r

    def ehlo(self, name="client.test"):
        r = self.cmd(f"EHLO {name}")
        assert r.code == 250, r
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def dot_stuff(content):
    """DATA transparency (RFC 5321 4.5.2) for CRLF lines: a line that starts
    with '.' gets one more. `content` must end with CRLF."""
    assert content.endswith(b"\r\n")
    out = re.sub(rb"(^|(?<=\r\n))\.", b"..", content)
    return out + b".\r\n"


def split_trace(received):
    """Splits what the downstream got into (first header field, rest)."""
    # A header field ends at a CRLF not followed by folding whitespace.
    m = re.match(rb"(?s)(.*?\r\n)(?![ \t])", received)
    assert m, f"no header at all: {received[:200]!r}"
    return m.group(1), received[m.end():]


def tls_context():
    """A client TLS context that accepts sluice's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
