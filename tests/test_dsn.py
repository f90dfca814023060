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
