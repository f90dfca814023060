"""sluice relaying to sluice: the downstream offers STARTTLS, CHUNKING,
SMTPUTF8 and 8BITMIME, so the relay client's TLS and BDAT paths carry the
message; the last hop delivers to the aiosmtpd sink. Each hop adds exactly
one Received header and changes nothing else."""

import random

from helpers.mail import send_raw, simple_message, token
from helpers.net import split_trace


def test_two_hops_tls_and_bdat_byte_exact(sink, sluice_factory):
    fast = {"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}}
    second = sluice_factory(name="hop2", relay=sink.addr, hostname="mx2.sluice.test", config=fast)
    first = sluice_factory(name="hop1", relay=f"127.0.0.1:{second.smtp_port}", config={
        **fast, "relay": {"starttls": True}})
    tok = token()
    rnd = random.Random(3)
    # Valid SMTP lines go byte for byte (bare CR/LF and lines over 998
    # octets are normalized on the wire: test_fault_content.py).
    body = (b".\r\n..leading dots\r\n"
            b"8-bit \xe9\xff\x80\r\n"
            + b"".join(bytes(rnd.choice(range(0x20, 0x7f)) for _ in range(990)) + b"\r\n" for _ in range(6))
            + b"trailing space \r\n")
    msg = simple_message(tok, body=body)
    send_raw(first.smtp, msg, mail_params="BODY=8BITMIME")
    [got] = sink.wait_for(1, timeout=30, match=lambda m: tok.encode() in m.content)
    trace2, rest = split_trace(got.content)
    trace1, rest = split_trace(rest)
    assert trace2.startswith(b"Received: from ") and b"by mx2.sluice.test (sluice)" in trace2, trace2
    assert b"ESMTPS" in trace2, f"the hop between the two sluices should use STARTTLS: {trace2!r}"
    assert trace1.startswith(b"Received: from ") and b"by mx.sluice.test (sluice)" in trace1, trace1
    assert rest == msg
    first.wait_queue_empty(10)
    second.wait_queue_empty(10)


def test_two_hops_smtputf8(sink, sluice_factory):
    fast = {"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}}
    second = sluice_factory(name="hop2", relay=sink.addr, hostname="mx2.sluice.test", config=fast)
    first = sluice_factory(name="hop1", relay=f"127.0.0.1:{second.smtp_port}", config=fast)
    tok = token()
    msg = simple_message(tok, subject="Grüße 🎉", body="ünïcödé body\r\n".encode())
    send_raw(first.smtp, msg, mail_from="jörg@bücher.test", rcpts=["zoë@sluice.test"],
             mail_params="SMTPUTF8 BODY=8BITMIME")
    [got] = sink.wait_for(1, timeout=30, match=lambda m: tok.encode() in m.content)
    assert got.mail_from == "jörg@bücher.test" and got.rcpts == ["zoë@sluice.test"]
    rest = split_trace(split_trace(got.content)[1])[1]
    assert rest == msg
