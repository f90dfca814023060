"""Never an open relay: unauthenticated clients reach only accepted domains."""

import shutil
import subprocess

import pytest

from helpers.net import RawSMTP

SWAKS = shutil.which("swaks") or "/usr/bin/swaks"


@pytest.fixture
def mx(sluice_factory):
    return sluice_factory()


@pytest.mark.parametrize("rcpt", [
    "x@elsewhere.test",
    "x@sub.sluice.test",          # a subdomain is another domain
    "x@sluice.test.evil.test",
    "x@sluice.test@elsewhere.test",
    "\"x@sluice.test\"@elsewhere.test",
    "@sluice.test:x@elsewhere.test",  # source route
])
def test_mx_refuses_to_relay(mx, rcpt):
    with RawSMTP(*mx.smtp) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@src.test>").code == 250
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        assert r.code >= 500, f"RCPT {rcpt!r} must be refused on the MX port: {r}"
        if r.code == 550:
            assert r.status == "5.7.1", r
        # Never a message: DATA has no valid recipient.
        r = c.cmd("DATA")
        assert r.code in (503, 554), r
    assert mx.queue_entries() == []


def test_mx_refuses_relay_even_after_starttls(mx):
    import smtplib
    import ssl
    ctx = ssl._create_unverified_context()
    with smtplib.SMTP(*mx.smtp, timeout=15) as c:
        c.starttls(context=ctx)
        c.ehlo()
        c.mail("sender@src.test")
        code, text = c.rcpt("x@elsewhere.test")
        assert code == 550 and text.startswith(b"5.7.1"), (code, text)


def test_accepted_domain_is_case_insensitive(mx):
    with RawSMTP(*mx.smtp) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<>").code == 250
        assert c.cmd("RCPT TO:<User@Sluice.TEST>").code == 250
        assert c.cmd("RCPT TO:<postmaster@sluice.test>").code == 250


@pytest.mark.parametrize("rcpt", ["<Postmaster>", "<postmaster>", "<POSTMASTER>"])
def test_bare_postmaster_is_accepted(mx, rcpt):
    """RFC 5321 4.5.1: a server MUST accept <Postmaster> (no domain, any case)."""
    with RawSMTP(*mx.smtp) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@src.test>").code == 250
        r = c.cmd(f"RCPT TO:{rcpt}")
        assert r.code == 250, r


def test_swaks_sees_550_relaying_denied(mx):
    p = subprocess.run(
        [SWAKS, "--server", f"127.0.0.1:{mx.smtp_port}", "--from", "sender@src.test",
         "--to", "x@elsewhere.test", "--quit-after", "RCPT", "--timeout", "10"],
        capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert "<** 550 5.7.1" in out, out
    assert p.returncode != 0, out


def test_swaks_delivers_to_accepted_domain(mx):
    p = subprocess.run(
        [SWAKS, "--server", f"127.0.0.1:{mx.smtp_port}", "--from", "sender@src.test",
         "--to", "someone@sluice.test", "--timeout", "10", "--header", "Subject: via swaks"],
        capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "<-  250 2.0.0 Ok: queued as" in out, out
    entries = mx.queue_entries()  # no relay configured: the message stays spooled
    assert len(entries) == 1 and entries[0]["recipients"][0]["address"] == "someone@sluice.test", entries


def test_swaks_starttls_auth_on_submission(sluice_factory):
    sl = sluice_factory(start=False)
    sl.add_user("carol", "s3cret pass")
    sl.start()
    p = subprocess.run(
        [SWAKS, "--server", f"127.0.0.1:{sl.submission_port}", "--from", "carol@sluice.test",
         "--to", "far@elsewhere.test", "--tls", "--auth", "PLAIN", "--auth-user", "carol",
         "--auth-password", "s3cret pass", "--timeout", "10"],
        capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "235 2.7.0" in out, out
    assert "queued as" in out, out
