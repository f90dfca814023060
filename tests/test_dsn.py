"""The DSNs sluice builds itself honour RFC 3461 (issue 15, item 6): no DSN
for NOTIFY=NEVER, the headers only for RET=HDRS, and the sender's ENVID and
ORCPT returned as Original-Envelope-Id and Original-Recipient."""

import smtplib
import time

from helpers.mail import simple_message, token
from helpers.procs import wait_until


def send(sl, rcpt, t, mail_options=(), rcpt_options=()):
    with smtplib.SMTP(*sl.smtp, timeout=10) as c:
        c.sendmail("author@src.test", [rcpt], simple_message(t, body=b"the secret body\r\n"),
                   mail_options=list(mail_options), rcpt_options=list(rcpt_options))


def test_dsn_honours_notify_ret_envid_and_orcpt(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    sink.control(rcpt=[{"match": "gone@", "reply": "550 5.1.1 no such user"}])

    # NOTIFY=NEVER: refused, and nothing comes back.
    never = token()
    send(sl, "gone@sluice.test", never, rcpt_options=["NOTIFY=NEVER"])
    # RET=HDRS, ENVID and ORCPT: the DSN says them, without the body.
    hdrs = token()
    send(sl, "gone@sluice.test", hdrs, mail_options=["RET=HDRS", "ENVID=QQ314159"],
         rcpt_options=["NOTIFY=FAILURE", "ORCPT=rfc822;gone@orig.test"])

    dsns = wait_until(lambda: [m for m in sink.messages() if m.mail_from == ""] or None, 20,
                      what="the DSN at the sender's side")
    sl.wait_queue_empty(15)
    time.sleep(1)
    dsns = [m for m in sink.messages() if m.mail_from == ""]
    assert len(dsns) == 1, [d.content[:300] for d in dsns]
    (dsn,) = dsns
    assert dsn.rcpts == ["author@src.test"]
    text = dsn.content
    assert hdrs.encode() in text and never.encode() not in text
    assert b"Original-Envelope-Id: QQ314159\r\n" in text, text
    assert b"Original-Recipient: rfc822; gone@orig.test\r\n" in text, text
    assert b"Final-Recipient: rfc822; gone@sluice.test\r\n" in text
    assert b"Content-Type: text/rfc822-headers" in text
    assert b"the secret body" not in text
    assert "DSN queued" in sl.log()


def test_default_notify_still_reports_failures(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr)
    sink.control(rcpt=[{"match": "gone@", "reply": "550 5.1.1 no such user"}])
    t = token()
    send(sl, "gone@sluice.test", t)
    (dsn,) = wait_until(lambda: [m for m in sink.messages() if m.mail_from == ""] or None, 20, what="a DSN")
    assert b"Content-Type: message/rfc822" in dsn.content and b"the secret body" in dsn.content


def test_notify_success_to_a_downstream_without_dsn_is_reported_relayed(sink, sluice_factory):
    """RFC 3461 §4.2: the downstream (aiosmtpd) does not offer DSN, so the
    request cannot go on: sluice reports "relayed" itself, headers only."""
    sl = sluice_factory(relay=sink.addr)
    asked, quiet = token(), token()
    send(sl, "r@sluice.test", asked, mail_options=["ENVID=E1"], rcpt_options=["NOTIFY=SUCCESS"])
    send(sl, "r@sluice.test", quiet)
    (dsn,) = wait_until(lambda: [m for m in sink.messages() if m.mail_from == ""] or None, 20,
                        what="the success DSN")
    sl.wait_queue_empty(15)
    time.sleep(1)
    assert len([m for m in sink.messages() if m.mail_from == ""]) == 1, "none for the default NOTIFY"
    text = dsn.content
    assert dsn.rcpts == ["author@src.test"]
    assert b"Subject: Successful Mail Delivery Report" in text
    assert b"Action: relayed\r\nStatus: 2.0.0\r\n" in text, text
    assert b"Original-Envelope-Id: E1\r\n" in text
    assert asked.encode() in text and b"the secret body" not in text, "headers only"


def test_notify_delay_gets_one_delay_dsn_while_retrying(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config={"queue": {
        "retry_initial_secs": 1, "retry_max_secs": 1, "delay_warning_secs": 2}})
    sink.control(rcpt=[{"match": "slow@", "reply": "451 4.2.0 mailbox busy"}])
    t = token()
    send(sl, "slow@sluice.test", t, rcpt_options=["NOTIFY=DELAY,FAILURE"])
    send(sl, "slow@sluice.test", token(), rcpt_options=["NOTIFY=FAILURE"])
    (dsn,) = wait_until(lambda: [m for m in sink.messages() if m.mail_from == ""] or None, 20,
                        what="the delay DSN")
    time.sleep(4)  # several more retries: still one warning
    assert len([m for m in sink.messages() if m.mail_from == ""]) == 1
    text = dsn.content
    assert b"Subject: Delayed Mail (still being retried)" in text
    assert b"Action: delayed\r\nStatus: 4.2.0\r\n" in text, text
    assert b"Diagnostic-Code: smtp; 451 4.2.0 mailbox busy" in text
    assert t.encode() in text and b"the secret body" not in text
    assert len(sl.queue_entries()) == 2, "both still queued and retried"
