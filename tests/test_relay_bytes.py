"""The relay sends the original bytes unchanged, prefixed only by one
`Received:` header: 8-bit bodies, SMTPUTF8, binary-ish MIME, dot-stuffing,
CR/LF edge cases, long lines, BDAT/CHUNKING and PIPELINING."""

import base64
import os
import random
import smtplib
import subprocess
import time

import pytest

from helpers.mail import assert_relayed_exactly, queued_id, send_raw, simple_message, token, wire_normalized
from helpers.net import RawSMTP, split_trace
from helpers.procs import Sink, Sluice


@pytest.fixture(scope="module")
def mx(tmp_path_factory):
    """One sluice relaying to one aiosmtpd sink, shared by this module's tests
    (each test finds its own message by a unique token)."""
    base = tmp_path_factory.mktemp("relay-bytes")
    sink = Sink(str(base / "sink")).start()
    sl = Sluice(str(base / "sluice"), relay=sink.addr,
                config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    sl.start()
    yield sl, sink
    rc = sl.stop()
    sink.stop()
    assert rc == 0, f"sluice exit code {rc} on SIGTERM:\n{sl.tail()}"
    assert "panicked at" not in sl.log(), sl.log()[-3000:]


def arrived(sink, tok, timeout=20):
    msgs = sink.wait_for(1, timeout=timeout, match=lambda m: tok.encode() in m.content)
    assert len(msgs) == 1, f"expected exactly one delivery of {tok}, got {msgs}"
    return msgs[0]


def test_plain_message_relayed_with_one_trace_header(mx):
    sl, sink = mx
    tok = token()
    msg = simple_message(tok)
    qid = send_raw(sl.smtp, msg)
    got = arrived(sink, tok)
    trace = assert_relayed_exactly(got.content, msg)
    assert got.mail_from == "sender@src.test"
    assert got.rcpts == ["rcpt@sluice.test"]
    assert qid.encode() in trace, f"the trace header should name the queue id {qid}: {trace!r}"
    # The log has one 'message accepted' line with the queue id.
    log = sl.log_when(lambda t: qid in t, what="the accepted line")
    assert any("message accepted" in line and qid in line for line in log.splitlines())


def test_8bitmime_body_bytes_exact(mx):
    sl, sink = mx
    tok = token()
    latin = bytes(range(0x80, 0x100)).replace(b"\r", b"").replace(b"\n", b"")
    body = (b"Gr\xfc\xdfe aus K\xf6ln (latin-1 bytes, not UTF-8)\r\n"
            + latin + b"\r\n"
            + "UTF-8 too: naïve café — ✓\r\n".encode()
            + b"\r\n")
    msg = simple_message(tok, extra_headers=b"MIME-Version: 1.0\r\n"
                         b"Content-Type: text/plain; charset=iso-8859-1\r\n"
                         b"Content-Transfer-Encoding: 8bit\r\n", body=body)
    with smtplib.SMTP(*sl.smtp, timeout=15) as c:
        c.ehlo("client.test")
        assert c.has_extn("8bitmime")
        refused = c.sendmail("sender@src.test", ["rcpt@sluice.test"], msg, mail_options=["BODY=8BITMIME"])
        assert refused == {}
    got = arrived(sink, tok)
    assert_relayed_exactly(got.content, msg)
    assert "BODY=8BITMIME" in [o.upper() for o in got.meta["mail_options"]], \
        f"8-bit content must be relayed with BODY=8BITMIME: {got.meta['mail_options']}"


def test_smtputf8_headers_and_addresses(mx):
    sl, sink = mx
    tok = token()
    sender = "jörg@bücher.test"
    rcpt = "zoë.ünïcode@sluice.test"
    msg = ("From: Jörg Müller <jörg@bücher.test>\r\n"
           "To: Zoë <zoë.ünïcode@sluice.test>\r\n"
           "Subject: Grüße aus Köln 🎉 — ünïcödé\r\n"
           f"Message-ID: <{tok}@bücher.test>\r\n"
           "MIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n"
           "\r\n"
           "日本語のテキスト, ελληνικά, русский.\r\n").encode()
    with smtplib.SMTP(*sl.smtp, timeout=15) as c:
        c.ehlo("client.test")
        assert c.has_extn("smtputf8")
        refused = c.sendmail(sender, [rcpt], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        assert refused == {}
    got = arrived(sink, tok)
    assert_relayed_exactly(got.content, msg)
    assert got.mail_from == sender
    assert got.rcpts == [rcpt]
    assert "SMTPUTF8" in [o.upper() for o in got.meta["mail_options"]], got.meta


def test_non_ascii_address_without_smtputf8_is_refused(mx):
    sl, _ = mx
    with RawSMTP(*sl.smtp) as c:
        c.greeting()
        c.ehlo()
        r = c.cmd("MAIL FROM:<jörg@bücher.test>".encode())
        assert (r.code, r.status) == (553, "5.6.7"), r
        r = c.cmd("MAIL FROM:<sender@src.test>")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<zoë@sluice.test>".encode())
        assert (r.code, r.status) == (553, "5.6.7"), r


def test_binary_mime_part_and_raw_8bit_lines(mx):
    sl, sink = mx
    tok = token()
    rnd = random.Random(42)
    blob = bytes(rnd.getrandbits(8) for _ in range(20000))
    b64 = base64.encodebytes(blob).replace(b"\n", b"\r\n")
    raw_lines = b"".join(
        bytes(rnd.choice([b for b in range(1, 256) if b not in (10, 13)]) for _ in range(rnd.randint(0, 300)))
        + b"\r\n" for _ in range(200))
    body = (b"This is a multi-part message in MIME format.\r\n"
            b"--BOUNDARY\r\n"
            b"Content-Type: text/plain; charset=unknown-8bit\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n"
            + raw_lines +
            b"--BOUNDARY\r\n"
            b"Content-Type: application/octet-stream; name=blob.bin\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=blob.bin\r\n\r\n"
            + b64 +
            b"--BOUNDARY--\r\n")
    msg = simple_message(tok, body=body, extra_headers=b"MIME-Version: 1.0\r\n"
                         b"Content-Type: multipart/mixed; boundary=BOUNDARY\r\n")
    send_raw(sl.smtp, msg, mail_params="BODY=8BITMIME")
    got = arrived(sink, tok)
    assert_relayed_exactly(got.content, msg)
    # And the attachment decodes to the very same bytes.
    rest = split_trace(got.content)[1]
    part = rest.split(b"filename=blob.bin\r\n\r\n", 1)[1].split(b"--BOUNDARY--", 1)[0]
    assert base64.decodebytes(part) == blob


def test_dot_stuffing_round_trip(mx):
    sl, sink = mx
    tok = token()
    body = (b".\r\n"          # a line that is just a dot
            b"..\r\n"
            b"...\r\n"
            b".hidden line\r\n"
            b"text\r\n"
            b". space after dot\r\n"
            b".\t\r\n"
            b" .not at start\r\n"
            b".\rbare CR after a leading dot\r\n"
            b".\r\n")
    msg = simple_message(tok, body=body)
    send_raw(sl.smtp, msg)
    # Bare CR/LF and long lines go normalized (ARCHITECTURE: what a bare LF becomes).
    assert_relayed_exactly(arrived(sink, tok).content, wire_normalized(msg))


def test_content_starting_with_a_dot(mx):
    sl, sink = mx
    tok = token()
    msg = b".X-Dotted: first line starts with a dot\r\n" + simple_message(tok)
    send_raw(sl.smtp, msg)
    assert_relayed_exactly(arrived(sink, tok).content, msg)


def test_cr_lf_edge_cases(mx):
    sl, sink = mx
    tok = token()
    body = (b"bare CR\rinside a line\r\n"
            b"two\r\rCRs\r\n"
            b"\rCR at line start\r\n"
            b"CR before CRLF\r\r\n"
            b"trailing spaces   \r\n"
            b"trailing tab\t\r\n"
            b"   \r\n"
            b"\r\n"
            b"\r\n"
            b"bare LF\ninside a line\r\n"
            b"\r.CR then dot\r\n"
            b"end\r\n")
    msg = simple_message(tok, body=body)
    send_raw(sl.smtp, msg)
    # Bare CR/LF and long lines go normalized (ARCHITECTURE: what a bare LF becomes).
    assert_relayed_exactly(arrived(sink, tok).content, wire_normalized(msg))


def test_very_long_lines(mx):
    sl, sink = mx
    tok = token()
    rnd = random.Random(7)
    long_ascii = bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(5000))
    long_8bit = bytes(rnd.choice(range(0x20, 0x100)) for _ in range(5000)).replace(b"\x7f", b"x")
    body = long_ascii + b"\r\n." + long_ascii[:4999] + b"\r\n" + long_8bit + b"\r\n"
    msg = simple_message(tok, body=body)
    send_raw(sl.smtp, msg, mail_params="BODY=8BITMIME")
    # Bare CR/LF and long lines go normalized (ARCHITECTURE: what a bare LF becomes).
    assert_relayed_exactly(arrived(sink, tok).content, wire_normalized(msg))


def test_bare_lf_dot_cannot_end_the_message_downstream(mx):
    """SMTP smuggling: <LF>.<CR><LF> inside the content is content. The
    downstream must get one message containing everything; sluice may stuff
    the dot after a bare LF (its stated outbound policy), nothing else."""
    sl, sink = mx
    tok = token()
    smuggled = (b"before\n.\r\n"
                b"MAIL FROM:<evil@src.test>\r\n"
                b"RCPT TO:<victim@sluice.test>\r\n"
                b"DATA\r\n"
                b"Subject: smuggled " + tok.encode() + b"\r\n\r\nowned\r\n"
                b"after\r\n")
    msg = simple_message(tok, body=smuggled)
    send_raw(sl.smtp, msg)
    sink.wait_for(1, match=lambda m: tok.encode() in m.content)
    time.sleep(1.0)
    msgs = [m for m in sink.messages() if tok.encode() in m.content]
    assert len(msgs) == 1, f"the content was split into several messages downstream: {msgs}"
    assert msgs[0].rcpts == ["rcpt@sluice.test"]
    rest = split_trace(msgs[0].content)[1]
    # The bare LF becomes CRLF on the wire, and the dot after it is stuffed
    # there: the downstream reads one line with a dot, never an end.
    assert rest == wire_normalized(msg), rest


def test_bdat_chunks_byte_exact(mx):
    sl, sink = mx
    tok = token()
    body = (b"line one\r\n"
            b".\r\n"              # in BDAT this is content, not the end
            b"..two dots\r\n"
            b"8-bit \xe9\xe8\xff\r\n"
            b"bare\rCR\r\n" + b"x" * 3000 + b"\r\n"
            b"last line\r\n")
    msg = simple_message(tok, body=body)
    # Awkward cut points: inside a CRLF, right before '.', mid-line.
    cuts = [7, msg.index(b"\r\n.\r\n") + 1, msg.index(b"\r\n.\r\n") + 2, len(msg) // 2, len(msg) - 3]
    cuts = sorted(set(cuts))
    chunks = [msg[a:b] for a, b in zip([0] + cuts, cuts + [len(msg)])]
    assert b"".join(chunks) == msg
    with RawSMTP(*sl.smtp) as c:
        c.greeting()
        assert "CHUNKING" in c.ehlo().lines
        assert c.cmd("MAIL FROM:<sender@src.test> BODY=8BITMIME").code == 250
        assert c.cmd("RCPT TO:<rcpt@sluice.test>").code == 250
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            c.send(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
            r = c.reply()
            if last:
                queued_id(r)
            else:
                assert r.code == 250, (i, r)
        assert c.cmd("QUIT").code == 221
    # Bare CR/LF and long lines go normalized (ARCHITECTURE: what a bare LF becomes).
    assert_relayed_exactly(arrived(sink, tok).content, wire_normalized(msg))


def test_bdat_pipelined_with_empty_last_chunk(mx):
    sl, sink = mx
    tok = token()
    msg = simple_message(tok, body=b"chunked\r\n.\r\nstill content\r\n")
    a, b = msg[:50], msg[50:]
    with RawSMTP(*sl.smtp) as c:
        c.greeting()
        c.ehlo()
        c.send(b"MAIL FROM:<sender@src.test>\r\nRCPT TO:<rcpt@sluice.test>\r\n"
               + f"BDAT {len(a)}\r\n".encode() + a
               + f"BDAT {len(b)}\r\n".encode() + b
               + b"BDAT 0 LAST\r\n")
        r = c.replies(5)
        assert [x.code for x in r] == [250, 250, 250, 250, 250], r
        queued_id(r[4])
    assert_relayed_exactly(arrived(sink, tok).content, msg)


def test_pipelining_replies_in_order(mx):
    sl, sink = mx
    tok = token()
    msg = simple_message(tok)
    with RawSMTP(*sl.smtp) as c:
        c.greeting()
        assert "PIPELINING" in c.ehlo().lines
        c.send(b"MAIL FROM:<sender@src.test>\r\n"
               b"RCPT TO:<one@sluice.test>\r\n"
               b"RCPT TO:<outsider@elsewhere.test>\r\n"
               b"RCPT TO:<two@sluice.test>\r\n"
               b"RCPT TO:<bad address>\r\n"
               b"RCPT TO:<three@SLUICE.TEST>\r\n"
               b"DATA\r\n")
        r = c.replies(7)
        assert [x.code for x in r] == [250, 250, 550, 250, 501, 250, 354], r
        assert r[2].status == "5.7.1", r[2]
        # The message and the next transaction, pipelined too.
        c.send(msg + b".\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        r = c.replies(4)
        queued_id(r[0])
        assert [x.code for x in r[1:]] == [250, 250, 221], r
    got = arrived(sink, tok)
    assert_relayed_exactly(got.content, msg)
    assert sorted(got.rcpts) == sorted(["one@sluice.test", "two@sluice.test", "three@SLUICE.TEST"])


def test_ehlo_advertises_the_extensions(mx):
    sl, _ = mx
    with RawSMTP(*sl.smtp) as c:
        g = c.greeting()
        assert sl.hostname in g.lines[0]
        lines = c.ehlo().lines
        for ext in ("PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "STARTTLS"):
            assert ext in lines, (ext, lines)
        assert any(x.startswith("SIZE ") and x.split()[1].isdigit() for x in lines), lines
        assert not any(x.startswith("AUTH") for x in lines), "no AUTH on the MX port"


def test_many_messages_from_smtp_source(mx, tmp_path):
    """Postfix's smtp-source as the client: 4 sessions, 120 messages."""
    sl, sink = mx
    tok = token()
    before = sink.count()
    p = subprocess.run(
        ["/usr/sbin/smtp-source", "-s", "4", "-m", "120", "-l", "3000", "-f", "loader@src.test",
         "-t", f"load-{tok}@sluice.test", "-S", f"load {tok}", f"127.0.0.1:{sl.smtp_port}"],
        capture_output=True, timeout=120)
    assert p.returncode == 0, p
    msgs = sink.wait_for(120, timeout=60, match=lambda m: m.rcpts == [f"load-{tok}@sluice.test"])
    assert len(msgs) == 120
    assert sink.count() - before == 120
