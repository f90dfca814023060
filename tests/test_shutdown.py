"""SIGTERM: idle sessions are told 421, a message mid-DATA is finished and
kept, and the process exits 0. Also the start-up line and the logs."""

import json
import re
import signal
import time

from helpers.mail import queued_id, send_raw, simple_message, token
from helpers.net import RawSMTP, dot_stuff


def test_sigterm_with_an_idle_session(sluice_factory):
    sl = sluice_factory()
    c = RawSMTP(*sl.smtp)
    c.greeting()
    c.ehlo()
    t0 = time.monotonic()
    sl.proc.send_signal(signal.SIGTERM)
    r = c.reply()
    assert r.code == 421 and r.status.startswith("4."), r
    assert c.closed_by_peer(5)
    c.close()
    rc = sl.proc.wait(20)
    assert rc == 0, sl.tail()
    assert time.monotonic() - t0 < 10, "an idle session must not hold up the shutdown"
    # The listeners are gone.
    import socket
    try:
        socket.create_connection(sl.smtp, timeout=2).close()
        raise AssertionError("still accepting connections after exit")
    except OSError:
        pass


def test_sigterm_mid_data_finishes_the_message(sink_factory, sluice_factory):
    sink = sink_factory()
    sl = sluice_factory(relay=sink.addr, config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    tok = token()
    msg = dot_stuff(simple_message(tok, body=b"part one\r\n" * 100 + b"part two\r\n"))
    c = RawSMTP(*sl.smtp)
    c.greeting()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@src.test>").code == 250
    assert c.cmd("RCPT TO:<b@sluice.test>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(msg[:500])
    time.sleep(0.3)
    sl.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    c.send(msg[500:])
    qid = queued_id(c.reply())
    # After the message, the session is closed with 421 (or on QUIT).
    try:
        r = c.cmd("NOOP")
        assert r.code in (421, 250), r
    except Exception:
        pass
    c.close()
    assert sl.proc.wait(30) == 0, sl.tail()
    sl.exit_codes.append(0)
    # Kept durably: the stopped spool has it, and a restart delivers it.
    assert [e["id"] for e in sl.queue_entries()] == [qid]
    sink.start()
    sl.start()
    got = sink.wait_for(1, timeout=20)
    assert tok.encode() in got[0].content
    sl.wait_queue_empty(10)


def test_sigterm_on_a_busy_server_exits_zero(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr)
    for _ in range(10):
        send_raw(sl.smtp, simple_message(token()))
    assert sl.stop() == 0, sl.tail()


def test_listening_line_and_text_logs(sluice_factory):
    sl = sluice_factory()
    with open(sl.stdout_path) as f:
        out = f.read()
    assert re.search(r"^sluice listening: smtp=127\.0\.0\.1:\d+ submission=127\.0\.0\.1:\d+ imap=127\.0\.0\.1:\d+ data=\S+ relay=.* tls-cert=\S+ http=127\.0\.0\.1:\d+ bounce-domain=\S+$",
                     out, re.M), out
    with open(sl.tls_cert) as f:
        assert "BEGIN CERTIFICATE" in f.read()
    qid = send_raw(sl.smtp, simple_message(token()))
    log = sl.log_when(lambda t: "message accepted" in t, what="the accepted line")
    lines = [l for l in log.splitlines() if "message accepted" in l]
    assert len(lines) == 1 and qid in lines[0], lines


def test_json_logs(sluice_factory):
    sl = sluice_factory(log_format="json")
    qid = send_raw(sl.smtp, simple_message(token()))
    assert sl.stop() == 0
    records = []
    for line in sl.log().splitlines():
        if line.strip():
            records.append(json.loads(line))  # every line is one JSON object
    accepted = [r for r in records if r.get("message") == "message accepted"]
    assert len(accepted) == 1 and accepted[0].get("queue_id") == qid, accepted


def test_log_level_flag_config_and_sluice_log(sluice_factory):
    """Issue 21: `--log-level` (or `[server] log_level`) sets what serve
    logs; the flag wins over SLUICE_LOG, which wins over the config."""
    def lines(sl, level):
        return [l for l in sl.log().splitlines() if f" {level} " in l]

    info = sluice_factory()
    assert any("DKIM keys loaded" in l for l in lines(info, "INFO")), info.tail()
    assert not lines(info, "DEBUG")

    quiet = sluice_factory(extra_args=["--log-level", "warn"], env={"SLUICE_LOG": "debug"})
    qid = send_raw(quiet.smtp, simple_message(token()))
    assert quiet.stop() == 0
    assert not lines(quiet, "INFO") and not lines(quiet, "DEBUG"), quiet.tail()
    assert "DKIM keys loaded" not in quiet.log() and qid not in quiet.log()

    loud = sluice_factory(extra_args=["--log-level", "debug"])
    assert lines(loud, "DEBUG") and lines(loud, "INFO"), loud.tail()

    directive = sluice_factory(config={"server": {"log_level": "warn,sluice=info"}})
    assert [l for l in lines(directive, "INFO") if "sluice" in l] and not lines(directive, "DEBUG")

    bad = sluice_factory(start=False, extra_args=["--log-level", "loud"])
    p = bad.cli(*bad.command()[1:], check=False, timeout=20)
    assert p.returncode == 2 and b"not a log level" in p.stderr, p.stderr


def test_second_server_on_the_same_data_dir_is_refused(sluice_factory):
    sl = sluice_factory()
    import subprocess
    from helpers.procs import sluice_bin
    p = subprocess.run([sluice_bin(), "serve", "--data", sl.data, "--smtp", "127.0.0.1:0",
                        "--submission", "127.0.0.1:0"], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "lock" in p.stderr.lower() or "in use" in p.stderr.lower(), p.stderr
    # The first one is unharmed.
    send_raw(sl.smtp, simple_message(token()))
