"""PostgreSQL down (issue 18, item 5): the API answers 503, the MX keeps
accepting and relaying (the spool, not the database, is what its 250
promises), and once the database is back the front line's record catches
up: nothing accepted is lost, in the mail or in the record."""

import json
import os
import smtplib
import subprocess

import pytest

from helpers.mail import send_raw, simple_message, token
from helpers.net import tls_context
from helpers.procs import ROOT, wait_until
from test_outbound import api, create_key

SCRIPT = os.path.join(ROOT, "scripts", "pg-test-server")


def track(sl, qid):
    p = sl.cli("track", qid, "--json", "--data", sl.data, check=False)
    return json.loads(p.stdout) if p.returncode == 0 else {}


def relayed(doc, address):
    rcpts = [r for r in doc.get("recipients", []) if r["address"] == address]
    return bool(rcpts) and rcpts[0]["status"] == "relayed"


def submission(sl):
    """A submission session, logged in as `app` over STARTTLS."""
    c = smtplib.SMTP(*sl.submission, timeout=15)
    c.starttls(context=tls_context())
    c.login("app", "app-password")
    return c


def test_an_outage_is_answered_and_the_record_catches_up(sink, sluice_factory, tmp_path):
    # A server of its own, so stopping it stops no other test's database.
    pg = f"/tmp/sluice-pg-outage-{os.getpid()}"
    url = subprocess.run([SCRIPT, "start", pg, str(os.getpid())], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        sl = sluice_factory(relay=sink.addr, env={"SLUICE_DATABASE": url})
        key = create_key(sl, "default")
        (tmp_path / "pw").write_text("app-password\n")
        sl.cli("user", "add", "app", "--password-file", str(tmp_path / "pw"), "--tenant", "default",
               "--data", sl.data)
        logged_in = submission(sl)
        qid = send_raw(sl.smtp, b"Subject: before\r\n\r\nbefore the outage\r\n", rcpts=("ann@sluice.test",))
        sink.wait_for(1, timeout=20)
        wait_until(lambda: relayed(track(sl, qid), "ann@sluice.test"), 20, what="the first message recorded")

        subprocess.run([SCRIPT, "stop", pg], check=True)
        status, body, _ = api(sl, "GET", "/v1/events", key)
        assert status == 503, (status, body)
        # Accepted (250, with its queue id) and relayed without the database.
        qid = send_raw(sl.smtp, b"Subject: during\r\n\r\nduring the outage\r\n", rcpts=("bob@sluice.test",))
        sink.wait_for(2, timeout=20)
        wait_until(lambda: "kept until it can" in sl.log(), 10, what="the record's backlog said at WARN")
        # Submission needs the database (the user's tenant, its suppression
        # list, the record): mail is refused for now, never taken and lost,
        # and a login is a temporary failure, not a wrong password. The
        # suppression list cannot be read: each recipient is a 451 at RCPT.
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            logged_in.sendmail("app@sluice.test", ["far@elsewhere.test"], simple_message(token()))
        code, text = refused.value.recipients["far@elsewhere.test"]
        assert code == 451 and b"4.3.0" in text, refused.value.recipients
        logged_in.close()
        with pytest.raises(smtplib.SMTPAuthenticationError) as unavailable:
            submission(sl)
        assert unavailable.value.smtp_code == 454 and b"4.7.0" in unavailable.value.smtp_error

        subprocess.run([SCRIPT, "resume", pg], check=True)
        wait_until(lambda: relayed(track(sl, qid), "bob@sluice.test"), 30, what="the record to catch up")
        assert "caught up" in sl.log()
        assert api(sl, "GET", "/v1/events", key)[0] == 200
        with submission(sl) as c:
            assert c.sendmail("app@sluice.test", ["far@elsewhere.test"], simple_message(token())) == {}
    finally:
        subprocess.run([SCRIPT, "stop", pg], check=False)
