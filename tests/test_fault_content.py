"""Content a strict downstream refuses, and mail nobody can be told about
(issue 15, items 2-4).

- Bare LF, bare CR, NUL bytes and lines over 998 octets reach aiosmtpd with
  its default limits (`--strict`): the relay sends CRLF lines, broken at 998
  octets, as Postfix does, while the store keeps the exact bytes received.
- `bare_newlines = "reject"` refuses such content at the end of DATA.
- An original from `<>` the downstream refuses for good is a dead letter:
  held with the reply, at WARN, listed by `queue list/show/summary`, and
  `queue release` delivers it once the downstream takes it; a hold retention
  lets it go, logged and counted.
- postmaster and abuse reach a person (the relay, or the `[server]
  postmaster` store account), never the feedback route.
"""

import json
import re
import smtplib
import os

from helpers.mail import send_raw
from helpers.procs import HOSTNAME, wait_until

HEAD = b"From: MAILER-DAEMON@src.test\r\nTo: bounces@sluice.test\r\nSubject: %s\r\n"


def raw_message(tag, body):
    """Headers with CRLF, then `body` exactly as given; ends the DATA."""
    return HEAD % tag + b"Message-ID: <" + tag + b"@src.test>\r\n\r\n" + body


def send_unstuffed(sl, content, mail_from=""):
    """DATA with `content` as is (no dot-stuffing needed: no line of it
    starts with a dot after CRLF), ended by CRLF . CRLF."""
    return send_raw(sl.smtp, content + b"\r\n.\r\n", mail_from=mail_from, stuff=False)


def stored_blobs(sl):
    return [bytes(r[0]) for r in sl.rows("SELECT bytes FROM blobs")]


def test_bare_lf_cr_nul_and_long_lines_reach_a_strict_downstream(sink_factory, sluice_factory, tmp_path):
    sink = sink_factory(extra_args=("--strict",))
    sink.start()
    sl = sluice_factory(relay=sink.addr, config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    sl.cli("account", "add", "acme", "--password-file", str(pw), "--domain", "sluice.test", "--data", sl.data)
    sl.restart()

    cases = {
        b"lf": raw_message(b"lf", b"line one\nline two\n.\nafter a dot line\n"),
        b"cr": raw_message(b"cr", b"line one\rline two\r"),
        b"nul": raw_message(b"nul", b"a\x00b\r\n"),
        b"long": raw_message(b"long", b"x" * 2500 + b"\r\nshort\r\n"),
    }
    ids = {tag: send_unstuffed(sl, c) for tag, c in cases.items()}
    got = sink.wait_for(len(cases), timeout=30)
    by_tag = {m.header("Subject").encode(): m.content for m in got}
    assert set(by_tag) == set(cases), by_tag.keys()
    for tag, content in by_tag.items():
        body = content.split(b"\r\n\r\n", 1)[1]
        assert b"\n" not in body.replace(b"\r\n", b""), (tag, body[:200])
        assert b"\r" not in body.replace(b"\r\n", b""), (tag, body[:200])
        assert all(len(line) <= 998 for line in content.split(b"\r\n")), tag
    assert b"line one\r\nline two\r\n.\r\nafter a dot line\r\n" in by_tag[b"lf"]
    assert b"a\x00b\r\n" in by_tag[b"nul"]
    long_body = by_tag[b"long"].split(b"\r\n\r\n", 1)[1]
    assert long_body.replace(b"\r\n ", b"").startswith(b"x" * 2500 + b"\r\nshort"), long_body[:100]

    # The store keeps exactly what was received, bare line ends and all.
    wait_until(lambda: len(stored_blobs(sl)) >= len(cases), 20, what="the tee copies")
    blobs = stored_blobs(sl)
    for tag, c in cases.items():
        # (the CRLF before the ending dot is the content's last line end)
        assert c + b"\r\n" in blobs, f"copy of {tag!r} is not the exact bytes received"
    # And `queue show` / the accept log say what was normalized.
    log = sl.log()
    assert re.search(r"message accepted.*bare_lf=4", log), log[-2000:]
    assert re.search(r"message accepted.*long_lines=1", log)
    sl.wait_queue_empty(10)
    assert ids


def test_bare_newlines_can_be_refused_at_data(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config={"smtp": {"bare_newlines": "reject"}})
    with smtplib.SMTP(*sl.smtp, timeout=10) as c:
        try:
            c.sendmail("a@src.test", ["r@sluice.test"], raw_message(b"lf", b"bare\nlf\n"))
            raise AssertionError("a bare-LF message was accepted with bare_newlines = reject")
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 550 and b"5.6.0" in e.smtp_error and b"CRLF" in e.smtp_error, e
        # CRLF mail still goes.
        c.sendmail("a@src.test", ["r@sluice.test"], raw_message(b"ok", b"fine\r\n"))
    sink.wait_for(1)


def test_a_refused_null_sender_original_is_held_then_released(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    sink.control(data="554 5.7.1 rejected by policy", data_from="")
    qid = send_unstuffed(sl, raw_message(b"dead", b"a bounce nobody can be told about\r\n"))

    def dead():
        entry = next((e for e in sl.queue_entries() if e["id"] == qid), None)
        return entry if entry and entry["dead_letter"] else None
    entry = wait_until(dead, 20, what="the dead letter in the queue")
    assert entry["held"] and entry["held_at"] > 0
    (rcpt,) = entry["recipients"]
    assert rcpt["status"] == "held" and "554 5.7.1" in rcpt["last_reply"], rcpt
    shown = sl.cli("queue", "show", qid, "--data", sl.data).stdout.decode()
    assert "dead letter" in shown and f"sluice queue release {qid}" in shown, shown
    summary = sl.queue("summary")
    assert any(r["route"] == "relay" and r["held"] == 1 for r in summary["summary"]), summary
    assert re.search(rf"WARN.*dead letter held.*queue_id={qid}", sl.log()), sl.tail()

    # The downstream is fixed; the operator releases it; it goes.
    sink.control()
    sl.queue("release", qid)
    (m,) = sink.wait_for(1, timeout=20)
    assert m.header("Subject") == "dead"
    sl.wait_queue_empty(10)


def test_a_dead_letter_expires_after_its_hold_retention_logged(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config={"queue": {"retry_initial_secs": 1, "held_retention_secs": 2}})
    sink.control(data="550 5.1.1 no such user", data_from="")
    qid = send_unstuffed(sl, raw_message(b"dead", b"refused\r\n"))
    sl.log_when(lambda t: "dead letter held" in t, 20, what="the dead letter held")
    line = sl.log_when(lambda t: "dead letter expired" in t, 30, what="the dead letter expired")
    assert re.search(rf"WARN.*dead letter expired.*queue_id={qid}.*expired_total=1", line), line[-1500:]
    sl.wait_queue_empty(5)
    assert sink.count() == 0


def test_postmaster_and_abuse_reach_the_relay_never_the_feedback_route(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config={"outbound": {"bounce_domain": "bounces.sluice.test"}})
    rcpts = ["postmaster", f"postmaster@{HOSTNAME}", f"abuse@{HOSTNAME}",
             "postmaster@bounces.sluice.test", "abuse@bounces.sluice.test", "postmaster@sluice.test"]
    for r in rcpts:
        with smtplib.SMTP(*sl.smtp, timeout=10) as c:
            c.sendmail("someone@elsewhere.test", [r], raw_message(r.encode(), b"hello postmaster\r\n"))
    got = sink.wait_for(len(rcpts), timeout=20)
    to = sorted(m.rcpts[0] for m in got)
    expect = sorted(r if "@" in r else f"postmaster@{HOSTNAME}" for r in rcpts)
    assert to == expect, to
    assert "attached to 0" not in sl.log()


def test_postmaster_goes_to_the_named_store_account_without_a_relay(sluice_factory, tmp_path):
    sl = sluice_factory(start=False, config={"server": {"postmaster": "ops"}})
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    sl.cli("account", "add", "ops", "--password-file", str(pw), "--domain", "ops.invalid", "--data", sl.data)
    sl.start()
    msg = raw_message(b"pm", b"hello postmaster\r\n")
    with smtplib.SMTP(*sl.smtp, timeout=10) as c:
        c.sendmail("someone@elsewhere.test", [f"abuse@{HOSTNAME}"], msg)
    wait_until(lambda: msg in stored_blobs(sl), 20, what="the copy in the ops account")
    sl.wait_queue_empty(10)
    assert json.dumps(sl.queue_entries()) == "[]"
