"""Every limit is answered with its own reply code (small limits from a TOML
config file)."""

import socket
import subprocess
import time

import pytest

from helpers.mail import queued_id, simple_message, token
from helpers.net import ConnectionClosed, RawSMTP, dot_stuff
from helpers.procs import sluice_bin

LIMITS = {
    "smtp": {
        "max_message_size": 20000,
        "max_recipients": 3,
        "max_connections": 3,
        "max_connections_per_ip": 2,
        "command_timeout_secs": 2,
        "data_timeout_secs": 2,
        "max_line_length": 512,
        "max_bad_commands": 3,
    },
}


@pytest.fixture
def lim(sluice_factory):
    return sluice_factory(config=LIMITS)


def session(sl, source=None):
    c = RawSMTP(*sl.smtp, source=source)
    c.greeting()
    c.ehlo()
    return c


def message_of_size(n):
    tok = token()
    base = simple_message(tok, body=b"")
    line = b"y" * 70 + b"\r\n"
    k = (n - len(base) - 2) // len(line)
    body = line * k
    body += b"z" * (n - len(base) - len(body) - 2) + b"\r\n"
    msg = base + body
    assert len(msg) == n
    return msg


def test_size_is_advertised_and_checked_at_mail(lim):
    with session(lim) as c:
        lines = c.cmd("EHLO client.test").lines
        assert "SIZE 20000" in lines, lines
        r = c.cmd("MAIL FROM:<a@src.test> SIZE=20001")
        assert (r.code, r.status) == (552, "5.3.4"), r
        r = c.cmd("MAIL FROM:<a@src.test> SIZE=20000")
        assert r.code == 250, r


def test_oversize_data_is_552_and_the_session_goes_on(lim):
    with session(lim) as c:
        # Exactly at the limit: accepted.
        assert c.cmd("MAIL FROM:<a@src.test>").code == 250
        assert c.cmd("RCPT TO:<b@sluice.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(message_of_size(20000)))
        queued_id(c.reply())
        # One byte over: refused after DATA.
        assert c.cmd("MAIL FROM:<a@src.test>").code == 250
        assert c.cmd("RCPT TO:<b@sluice.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(message_of_size(20001)))
        r = c.reply()
        assert (r.code, r.status) == (552, "5.3.4"), r
        # Far over (a megabyte): still read to its end, still in sync.
        assert c.cmd("MAIL FROM:<a@src.test>").code == 250
        assert c.cmd("RCPT TO:<b@sluice.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(message_of_size(1_000_000)))
        r = c.reply()
        assert (r.code, r.status) == (552, "5.3.4"), r
        assert c.cmd("NOOP").code == 250
    entries = lim.queue_entries()
    assert len(entries) == 1 and entries[0]["size"] == 20000, entries


def test_oversize_bdat_is_552(lim):
    msg = message_of_size(30000)
    with session(lim) as c:
        assert c.cmd("MAIL FROM:<a@src.test>").code == 250
        assert c.cmd("RCPT TO:<b@sluice.test>").code == 250
        c.send(f"BDAT 15000\r\n".encode() + msg[:15000])
        c.reply()  # may already refuse, or take the chunk
        c.send(f"BDAT {len(msg) - 15000} LAST\r\n".encode() + msg[15000:])
        r = c.reply()
        assert (r.code, r.status) == (552, "5.3.4"), r
        assert c.cmd("NOOP").code == 250
    assert lim.queue_entries() == []


def test_too_many_recipients_is_452(lim):
    with session(lim) as c:
        assert c.cmd("MAIL FROM:<a@src.test>").code == 250
        for i in range(3):
            assert c.cmd(f"RCPT TO:<r{i}@sluice.test>").code == 250
        r = c.cmd("RCPT TO:<r3@sluice.test>")
        assert (r.code, r.status) == (452, "4.5.3"), r
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(simple_message(token())))
        queued_id(c.reply())
    [entry] = lim.queue_entries()
    assert [r["address"] for r in entry["recipients"]] == ["r0@sluice.test", "r1@sluice.test", "r2@sluice.test"]


def open_raw(sl, source):
    s = socket.create_connection(sl.smtp, timeout=10, source_address=(source, 0))
    s.settimeout(10)
    return s


def first_line(s):
    data = b""
    while b"\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n")[0].decode()


def test_connection_limits_per_ip_and_total(lim):
    held = []
    try:
        for _ in range(2):
            s = open_raw(lim, "127.0.0.1")
            held.append(s)
            assert first_line(s).startswith("220 "), "first two connections from one IP are served"
        s = open_raw(lim, "127.0.0.1")
        line = first_line(s)
        assert line.startswith("421 4.7.0"), f"third from the same IP: {line!r}"
        assert s.recv(100) == b"", "the refused connection is closed"
        s.close()
        s = open_raw(lim, "127.0.0.2")
        held.append(s)
        assert first_line(s).startswith("220 "), "another IP still gets in"
        s = open_raw(lim, "127.0.0.3")
        line = first_line(s)
        assert line.startswith("421 4.7.0"), f"over max_connections: {line!r}"
        s.close()
        # A slot comes back when a client leaves.
        held.pop(0).close()

        def try_again():
            s = open_raw(lim, "127.0.0.3")
            line = first_line(s)
            s.close()
            return line.startswith("220 ")
        deadline = time.monotonic() + 5
        while not try_again():
            assert time.monotonic() < deadline, "the slot was never given back"
            time.sleep(0.1)
    finally:
        for s in held:
            s.close()


def test_command_timeout_is_421_442(lim):
    with session(lim) as c:
        t0 = time.monotonic()
        r = c.reply()
        waited = time.monotonic() - t0
        assert (r.code, r.status) == (421, "4.4.2"), r
        assert 1.5 <= waited <= 6, waited
        assert c.closed_by_peer(5)


def test_data_timeout_is_421_442_and_nothing_is_kept(lim):
    with session(lim) as c:
        assert c.cmd("MAIL FROM:<a@src.test>").code == 250
        assert c.cmd("RCPT TO:<b@sluice.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: half a message\r\n\r\nand then silence")
        t0 = time.monotonic()
        r = c.reply()
        waited = time.monotonic() - t0
        assert (r.code, r.status) == (421, "4.4.2"), r
        assert 1.5 <= waited <= 6, waited
        assert c.closed_by_peer(5)
    assert lim.queue_entries() == []


def test_bdat_data_timeout_is_421_442(lim):
    with session(lim) as c:
        assert c.cmd("MAIL FROM:<a@src.test>").code == 250
        assert c.cmd("RCPT TO:<b@sluice.test>").code == 250
        c.send(b"BDAT 1000 LAST\r\nonly a few bytes")
        r = c.reply()
        assert (r.code, r.status) == (421, "4.4.2"), r
    assert lim.queue_entries() == []


def test_line_longer_than_max_is_500_552(lim):
    with session(lim) as c:
        ok = "NOOP " + "x" * (512 - 7)  # 510 bytes + CRLF = 512: allowed
        assert c.cmd(ok).code == 250
        r = c.cmd("NOOP " + "x" * 600)
        assert (r.code, r.status) == (500, "5.5.2"), r
        assert c.cmd("MAIL FROM:<a@src.test>").code == 250
        r = c.cmd("RCPT TO:<" + "b" * 600 + "@sluice.test>")
        assert (r.code, r.status) == (500, "5.5.2"), r
        assert c.cmd("NOOP").code == 250


def test_too_many_bad_commands_is_421_and_close(lim):
    with session(lim) as c:
        for i in range(3):
            r = c.cmd(f"BOGUS{i}")
            assert (r.code, r.status) == (500, "5.5.2"), r
        r = c.cmd("BOGUS3")
        assert (r.code, r.status) == (421, "4.7.0"), r
        assert c.closed_by_peer(5)


@pytest.mark.parametrize("config, key", [
    ("[smtp]\nmax_line_length = 100\n", "smtp.max_line_length"),
    ("[smtp]\nmax_recipients = 0\n", "smtp.max_recipients"),
    ("[smtp]\nlisten = \"127.0.0.1:0\"\nmax_linelength = 1000\n", "max_linelength"),
    ("[relay]\nhost = \"nohost\"\n", "relay.host"),
    ("[queue]\nretry_intial_secs = 1\n", "retry_intial_secs"),
])
def test_bad_config_is_refused_naming_the_key(tmp_path, config, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(config)
    p = subprocess.run([sluice_bin(), "serve", "--config", str(cfg), "--data", str(tmp_path / "d"),
                        "--smtp", "127.0.0.1:0", "--submission", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert key in p.stderr, p.stderr
    assert "sluice listening" not in p.stdout
