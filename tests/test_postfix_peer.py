"""Postfix's smtp-sink as the downstream: another server's EHLO profile
(AUTH, XCLIENT, DSN, no SMTPUTF8), dumps of what it got, and 421s."""

import glob
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time

import pytest

from helpers.mail import send_raw, simple_message, token
from helpers.net import free_port
from helpers.procs import wait_until

SMTP_SINK = "/usr/sbin/smtp-sink"


@pytest.fixture
def smtp_sink(tmp_path):
    procs = []

    # smtp-sink drops root privileges (-u nobody): its dump directory must be
    # reachable by that user, which pytest's private tmp_path is not.
    dump = tempfile.mkdtemp(prefix="sluice-smtp-sink-")
    os.chmod(dump, 0o777)

    def start(*opts):
        port = free_port()
        user = ["-u", "nobody"] if os.getuid() == 0 else []
        p = subprocess.Popen([SMTP_SINK, *user, "-h", "postfix-sink.test", "-d", f"{dump}/%H%M%S.", *opts,
                              f"127.0.0.1:{port}", "50"],
                             stdout=subprocess.DEVNULL, stderr=open(tmp_path / "smtp-sink.log", "wb"))
        procs.append(p)

        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return p.poll() is not None and "dead"
        assert wait_until(up, 10, what="smtp-sink to listen") is True, "smtp-sink died"
        return f"127.0.0.1:{port}", str(dump)

    yield start
    for p in procs:
        p.kill()
        p.wait(5)
    shutil.rmtree(dump, ignore_errors=True)


def dumps(d):
    out = []
    for path in sorted(glob.glob(os.path.join(d, "*"))):
        with open(path, "rb") as f:
            out.append(f.read())
    return out


def test_relay_to_postfix_smtp_sink(smtp_sink, sluice_factory):
    addr, dump = smtp_sink()
    sl = sluice_factory(relay=addr, config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    toks = [token() for _ in range(3)]
    for i, t in enumerate(toks):
        send_raw(sl.smtp, simple_message(t, body=b"line\r\n.leading dot\r\n" + b"8bit \xe9\r\n"),
                 rcpts=[f"p{i}@sluice.test"], mail_params="BODY=8BITMIME")
    # A dump file appears when a transaction starts: wait for complete ones.
    got = wait_until(lambda: all(any(t.encode() in d and b"8bit \xe9\n" in d for d in dumps(dump))
                                 for t in toks) and dumps(dump), 20, what="3 complete dumps at smtp-sink")
    sl.wait_queue_empty(10)
    for i, t in enumerate(toks):
        [d] = [x for x in got if t.encode() in x]
        # smtp-sink's dump: envelope as X- headers, its own Received, then ours
        # and the message (line ends as LF).
        assert f"X-Rcpt-Args: <p{i}@sluice.test>".encode() in d, d[:600]
        assert b"X-Mail-Args: <sender@src.test>" in d, d[:600]
        assert b"by mx.sluice.test (sluice)" in d, d[:800]
        assert d.count(b"(sluice)") == 1
        body = simple_message(t, body=b"line\r\n.leading dot\r\n" + b"8bit \xe9\r\n").replace(b"\r\n", b"\n")
        assert body in d, d


def test_postfix_421_at_data_defers_without_dsn(smtp_sink, sluice_factory):
    addr, dump = smtp_sink("-Q", "DATA")
    sl = sluice_factory(relay=addr, config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    qid = send_raw(sl.smtp, simple_message(token()), mail_from="author@src.test")

    def deferred():
        e = sl.queue_entries()
        return (len(e) == 1 and e[0]["recipients"][0]["status"] == "deferred"
                and e[0]["recipients"][0]["attempts"] >= 2 and e[0])
    e = wait_until(deferred, 20, what="two deferred attempts")
    assert e["id"] == qid
    assert e["recipients"][0]["last_reply"].startswith("421"), e
    assert dumps(dump) == [] or all(b"(sluice)" not in d for d in dumps(dump))
    assert "DSN queued" not in sl.log()


def test_postfix_disconnect_at_rcpt_defers(smtp_sink, sluice_factory):
    addr, _ = smtp_sink("-q", "RCPT")
    sl = sluice_factory(relay=addr, config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    send_raw(sl.smtp, simple_message(token()))

    def deferred():
        e = sl.queue_entries()
        return len(e) == 1 and e[0]["recipients"][0]["status"] == "deferred" and e[0]
    e = wait_until(deferred, 20, what="a deferred attempt")
    assert e["recipients"][0]["last_reply"][0] == "4", e
    time.sleep(1)
    assert sl.running


def test_dsn_parameters_are_passed_to_a_downstream_that_offers_dsn(smtp_sink, sluice_factory):
    """RFC 3461: RET/ENVID and NOTIFY/ORCPT given to sluice reach a
    downstream that announces DSN (smtp-sink does), xtext encoded."""
    addr, dump = smtp_sink()
    sl = sluice_factory(relay=addr)
    t = token()
    with smtplib.SMTP(*sl.smtp, timeout=10) as c:
        c.ehlo("client.test")
        assert c.has_extn("dsn"), "sluice announces DSN"
        c.sendmail("sender@src.test", ["r@sluice.test"], simple_message(t),
                   mail_options=["RET=HDRS", "ENVID=QQ+2B314159"],
                   rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;R+40orig.test"])
    got = wait_until(lambda: [d for d in dumps(dump) if t.encode() in d], 20, what="the dump")
    d = got[0]
    assert b"X-Mail-Args: <sender@src.test> RET=HDRS ENVID=QQ+2B314159" in d, d[:600]
    assert b"X-Rcpt-Args: <r@sluice.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;R@orig.test" in d, d[:600]
    # The downstream took NOTIFY=SUCCESS on: reporting success is its job
    # now, so sluice sends no "relayed" DSN of its own.
    sl.wait_queue_empty(15)
    time.sleep(1.5)
    assert not [x for x in dumps(dump) if b"Successful Mail Delivery Report" in x]
    assert "DSN queued" not in sl.log()
