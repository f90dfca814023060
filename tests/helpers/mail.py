"""Sending mail to sluice and checking what the downstream got."""

import re
import uuid

from .net import RawSMTP, dot_stuff, split_trace
from .procs import HOSTNAME

QUEUED = re.compile(r"Ok: queued as ([0-9a-f]{32})$")


def token():
    return uuid.uuid4().hex


def simple_message(tok, subject=None, body=b"Hello.\r\n", extra_headers=b""):
    subject = subject or f"test {tok}"
    return (b"From: Sender <sender@src.test>\r\n"
            b"To: Rcpt <rcpt@sluice.test>\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Message-ID: <" + tok.encode() + b"@src.test>\r\n"
            + extra_headers +
            b"\r\n" + body)


def queued_id(reply):
    assert reply.code == 250, reply
    m = QUEUED.search(reply.lines[-1])
    assert m, f"250 after DATA must say 'Ok: queued as <32 hex>': {reply!r}"
    assert reply.status == "2.0.0", reply
    return m.group(1)


def send_raw(addr, content, mail_from="sender@src.test", rcpts=("rcpt@sluice.test",),
             mail_params="", helo="client.test", stuff=True):
    """One message over DATA with exactly these content bytes (dot-stuffed
    here unless stuff=False, in which case `content` must include the
    terminating '.' line). Returns the queue id."""
    with RawSMTP(*addr) as c:
        c.greeting()
        c.ehlo(helo)
        params = f" {mail_params}" if mail_params else ""
        r = c.cmd(f"MAIL FROM:<{mail_from}>{params}".encode())
        assert r.code == 250, r
        for rcpt in rcpts:
            r = c.cmd(f"RCPT TO:<{rcpt}>".encode())
            assert r.code == 250, (rcpt, r)
        r = c.cmd("DATA")
        assert r.code == 354, r
        c.send(dot_stuff(content) if stuff else content)
        qid = queued_id(c.reply())
        c.cmd("QUIT")
        return qid


def assert_relayed_exactly(received, sent, hostname=HOSTNAME):
    """`received` (bytes at the downstream) must be exactly one Received:
    header of ours followed by `sent`, byte for byte."""
    trace, rest = split_trace(received)
    assert trace.startswith(b"Received: from "), f"first header is not our trace: {trace!r}"
    assert f"by {hostname} (sluice)".encode() in trace, trace
    if rest != sent:
        n = next((i for i, (a, b) in enumerate(zip(rest, sent)) if a != b), min(len(rest), len(sent)))
        raise AssertionError(
            f"relayed bytes differ from the bytes sent at offset {n} "
            f"(sent {len(sent)} bytes, relayed {len(rest)} after the trace header):\n"
            f"  sent:    {sent[max(0, n - 40):n + 40]!r}\n"
            f"  relayed: {rest[max(0, n - 40):n + 40]!r}")
    return trace


def wire_normalized(content):
    """What the relay sends for `content` (issue 15): every bare CR or bare
    LF becomes CRLF (RFC 5321 2.3.8), and a line over 998 octets is broken
    by inserting CRLF SP, as Postfix's smtp_line_length_limit does."""
    out, line, i, n = bytearray(), 0, 0, len(content)
    while i < n:
        b = content[i]
        if b in (13, 10):
            out += b"\r\n"
            line = 0
            i += 2 if b == 13 and i + 1 < n and content[i + 1] == 10 else 1
            continue
        if line == 998:
            out += b"\r\n "
            line = 1
        out.append(b)
        line += 1
        i += 1
    return bytes(out)
