"""Malformed input gets a reply, never a crash: garbage, huge lines, NUL
bytes, invalid UTF-8, clients vanishing mid-DATA."""

import os
import random
import socket
import time

import pytest

from helpers.mail import queued_id, send_raw, simple_message, token
from helpers.net import ConnectionClosed, RawSMTP, dot_stuff


@pytest.fixture
def mx(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    return sl, sink


def still_alive(sl):
    """The server answers a fresh client, and carries a message."""
    assert sl.running, f"sluice died:\n{sl.tail()}"
    with RawSMTP(*sl.smtp) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("NOOP").code == 250


def test_garbage_commands_get_500(mx):
    sl, _ = mx
    rnd = random.Random(1)
    with RawSMTP(*sl.smtp) as c:
        c.greeting()
        c.ehlo()
        for line in [b"HELLO WORLD", b"GET / HTTP/1.1", b"\x16\x03\x01\x02\x00\x01", b"MAIL", b"RCPT",
                     b"MAIL TO:<a@b.test>", b"   ", b"\xff\xfe\xfd"]:
            r = c.cmd(line)
            assert 500 <= r.code < 600, (line, r)
        assert c.cmd("NOOP").code == 250
    # Random binary noise, many sessions: each ends with a reply or a close,
    # never a crash.
    for i in range(20):
        with RawSMTP(*sl.smtp) as c:
            c.greeting()
            noise = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 3000)))
            try:
                c.send(noise + b"\r\nQUIT\r\n")
                while True:
                    r = c.reply()
                    if r.code in (221, 421):
                        break
            except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
                pass
    still_alive(sl)


def test_unknown_command_is_500_552(mx):
    sl, _ = mx
    with RawSMTP(*sl.smtp) as c:
        c.greeting()
        r = c.cmd("XYZZY plugh")
        assert (r.code, r.status) == (500, "5.5.2"), r


def test_a_one_megabyte_line(mx):
    sl, _ = mx
    with RawSMTP(*sl.smtp, timeout=30) as c:
        c.greeting()
        c.ehlo()
        c.send(b"MAIL FROM:<" + b"a" * (1 << 20) + b"@src.test>\r\n")
        r = c.reply()
        assert (r.code, r.status) == (500, "5.5.2"), r
        # Without a newline at all, then one: a single reply for the line.
        c.send(b"X" * (1 << 20))
        time.sleep(0.2)
        c.send(b"\r\nNOOP\r\n")
        r = c.reply()
        assert (r.code, r.status) == (500, "5.5.2"), r
        assert c.reply().code == 250
    still_alive(sl)


def test_nul_bytes_in_commands(mx):
    sl, _ = mx
    with RawSMTP(*sl.smtp) as c:
        c.greeting()
        r = c.cmd(b"EHLO a\x00b")
        assert (r.code, r.status) == (500, "5.5.2"), r
        c.ehlo()
        r = c.cmd(b"MAIL FROM:<a\x00@src.test>")
        assert (r.code, r.status) == (500, "5.5.2"), r
        r = c.cmd(b"\x00")
        assert r.code == 500, r
        assert c.cmd("NOOP").code == 250
    still_alive(sl)


@pytest.mark.parametrize("params", ["", " SMTPUTF8"])
def test_invalid_utf8_in_addresses(mx, params):
    sl, sink = mx
    with RawSMTP(*sl.smtp) as c:
        c.greeting()
        c.ehlo()
        r = c.cmd(b"MAIL FROM:<\xff\xfe@src.test>" + params.encode())
        assert 500 <= r.code < 600, r
        r = c.cmd(b"MAIL FROM:<ok@src.test>" + params.encode())
        assert r.code == 250, r
        r = c.cmd(b"RCPT TO:<\xc3\x28bad@sluice.test>")
        assert 500 <= r.code < 600, r
        r = c.cmd(b"RCPT TO:<bad@\xed\xa0\x80.sluice.test>")
        assert 500 <= r.code < 600, r
        r = c.cmd("DATA")
        assert r.code in (503, 554), r
    still_alive(sl)
    assert sl.queue_entries() == []


@pytest.mark.parametrize("cut", ["after-354", "mid-line", "after-crlf", "before-final-dot-crlf"])
def test_client_vanishes_mid_data(mx, cut):
    sl, sink = mx
    tok = token()
    msg = dot_stuff(simple_message(tok, body=b"x" * 5000 + b"\r\n"))
    part = {"after-354": b"", "mid-line": msg[:300], "after-crlf": msg[:msg.index(b"\r\n") + 2],
            "before-final-dot-crlf": msg[:-2]}[cut]
    c = RawSMTP(*sl.smtp)
    c.greeting()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@src.test>").code == 250
    assert c.cmd("RCPT TO:<b@sluice.test>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(part)
    c.close()
    time.sleep(1.0)
    still_alive(sl)
    assert sl.queue_entries() == []
    assert sink.messages() == []
    assert "message accepted" not in sl.log()


def test_client_resets_mid_data(mx):
    sl, sink = mx
    c = RawSMTP(*sl.smtp)
    c.greeting()
    c.ehlo()
    c.cmd("MAIL FROM:<a@src.test>")
    c.cmd("RCPT TO:<b@sluice.test>")
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: x\r\n\r\n" + b"y" * 100000)
    # RST instead of FIN.
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    time.sleep(1.0)
    still_alive(sl)
    assert sl.queue_entries() == []


def test_commands_out_of_order(mx):
    sl, _ = mx
    with RawSMTP(*sl.smtp) as c:
        c.greeting()
        assert c.cmd("MAIL FROM:<a@src.test>").code == 503, "MAIL before EHLO"
        c.ehlo()
        assert c.cmd("RCPT TO:<b@sluice.test>").code == 503
        assert c.cmd("DATA").code == 503
        assert c.cmd("MAIL FROM:<a@src.test>").code == 250
        assert c.cmd("MAIL FROM:<a@src.test>").code == 503, "nested MAIL"
        r = c.cmd("DATA")
        assert r.code in (503, 554), r
        assert c.cmd("RSET").code == 250
        # BDAT without a transaction: the chunk is read (and dropped), then 503.
        c.send(b"BDAT 5 LAST\r\nhello")
        r = c.reply()
        assert r.code == 503, r
        assert c.cmd("NOOP").code == 250
        assert c.cmd("QUIT").code == 221


def test_session_after_malformed_input_still_delivers(mx):
    sl, sink = mx
    tok = token()
    with RawSMTP(*sl.smtp) as c:
        c.greeting()
        c.ehlo()
        c.cmd(b"\x00\x01\x02")
        c.cmd(b"MAIL FROM:<\xff@x>")
        assert c.cmd("RSET").code == 250
        assert c.cmd("MAIL FROM:<a@src.test>").code == 250
        assert c.cmd("RCPT TO:<b@sluice.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(simple_message(tok)))
        queued_id(c.reply())
    sink.wait_for(1, timeout=20, match=lambda m: tok.encode() in m.content)
