"""The submission port: STARTTLS, then AUTH (PLAIN/LOGIN) for users made with
`sluice user add`, then relaying to any domain."""

import base64
import smtplib
import ssl
import time

import pytest

from helpers.mail import assert_relayed_exactly, simple_message, token
from helpers.net import RawSMTP, tls_context

PASSWORD = "correct horse battery staple"


@pytest.fixture
def sub(sink, sluice_factory):
    sl = sluice_factory(start=False, relay=sink.addr,
                        config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    out = sl.add_user("alice", PASSWORD)
    assert b"alice" in out.stdout
    sl.start()
    return sl, sink


def test_starttls_then_auth_relays_to_an_outside_domain(sub):
    sl, sink = sub
    tok = token()
    msg = simple_message(tok)
    with smtplib.SMTP(*sl.submission, timeout=15) as c:
        c.ehlo("laptop.test")
        assert c.has_extn("starttls")
        assert not c.has_extn("auth"), "AUTH must not be offered before TLS"
        c.starttls(context=tls_context())
        c.ehlo("laptop.test")
        assert not c.has_extn("starttls")
        auth = c.esmtp_features.get("auth", "").upper().split()
        assert "PLAIN" in auth and "LOGIN" in auth, c.esmtp_features
        code, text = c.login("alice", PASSWORD)
        assert code == 235, text
        assert c.sendmail("alice@sluice.test", ["friend@elsewhere.test", "other@far.example"], msg) == {}
    got = sink.wait_for(1, timeout=20, match=lambda m: tok.encode() in m.content)[0]
    trace = assert_relayed_exactly(got.content, msg)
    assert sorted(got.rcpts) == ["friend@elsewhere.test", "other@far.example"]
    # The trace header records TLS and authentication (ESMTPSA).
    assert b"ESMTPSA" in trace, trace


def test_auth_login_mechanism(sub):
    sl, _ = sub
    with smtplib.SMTP(*sl.submission, timeout=15) as c:
        c.starttls(context=tls_context())
        c.ehlo()
        c.user, c.password = "alice", PASSWORD
        code, text = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
        assert code == 235, text


def test_auth_before_starttls_is_538(sub):
    sl, _ = sub
    with RawSMTP(*sl.submission) as c:
        c.greeting()
        lines = c.ehlo().lines
        assert "STARTTLS" in lines
        assert not any(x.startswith("AUTH") for x in lines), lines
        cred = base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode()
        r = c.cmd(f"AUTH PLAIN {cred}")
        assert (r.code, r.status) == (538, "5.7.11"), r
        r = c.cmd("MAIL FROM:<alice@sluice.test>")
        assert (r.code, r.status) == (530, "5.7.0"), r


def test_mail_without_auth_on_submission_is_530(sub):
    sl, _ = sub
    with smtplib.SMTP(*sl.submission, timeout=15) as c:
        c.starttls(context=tls_context())
        c.ehlo()
        code, text = c.mail("alice@sluice.test")
        assert code == 530 and text.startswith(b"5.7.0"), (code, text)


def test_wrong_password_535_then_421_after_three(sub):
    sl, _ = sub
    with smtplib.SMTP(*sl.submission, timeout=20) as c:
        c.starttls(context=tls_context())
        c.ehlo()
        # (smtplib's login() would try PLAIN and then LOGIN: two failures.)
        t0 = time.monotonic()
        code, text = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0wrong").decode())
        first = time.monotonic() - t0
        assert code == 535 and text.startswith(b"5.7.8"), (code, text)
        t0 = time.monotonic()
        code, text = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0nope").decode())
        second = time.monotonic() - t0
        assert code == 535, (code, text)
        assert second > first, f"the delay should grow: {first:.2f}s then {second:.2f}s"
        code, text = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0still wrong").decode())
        assert code == 421 and text.startswith(b"4.7.0"), (code, text)
        with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
            c.noop()


def test_unknown_user_is_535(sub):
    sl, _ = sub
    with smtplib.SMTP(*sl.submission, timeout=15) as c:
        c.starttls(context=tls_context())
        c.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            c.login("mallory", PASSWORD)
        assert e.value.smtp_code == 535


def test_user_added_while_server_runs(sub):
    sl, sink = sub
    sl.add_user("bob", "bobs password")
    with smtplib.SMTP(*sl.submission, timeout=15) as c:
        c.starttls(context=tls_context())
        c.ehlo()
        code, _ = c.login("bob", "bobs password")
        assert code == 235


def test_no_auth_on_the_mx_port(sub):
    sl, _ = sub
    with smtplib.SMTP(*sl.smtp, timeout=15) as c:
        c.starttls(context=tls_context())
        c.ehlo()
        assert not c.has_extn("auth")
        code, text = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode())
        assert code >= 500, (code, text)


def test_mx_starttls_mail_to_accepted_domain(sub):
    sl, sink = sub
    tok = token()
    msg = simple_message(tok)
    with smtplib.SMTP(*sl.smtp, timeout=15) as c:
        c.starttls(context=tls_context())
        assert c.sendmail("sender@src.test", ["rcpt@sluice.test"], msg) == {}
    got = sink.wait_for(1, timeout=20, match=lambda m: tok.encode() in m.content)[0]
    trace = assert_relayed_exactly(got.content, msg)
    assert b"ESMTPS" in trace and b"using TLS" in trace.replace(b"\r\n\t", b" "), trace


def test_starttls_discards_plaintext_pipelined_after_it(sub):
    """CVE-2011-0411 family: commands pipelined after STARTTLS in plaintext
    must not be executed inside the TLS session."""
    sl, _ = sub
    import socket
    raw = socket.create_connection(sl.smtp, timeout=10)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220")
    raw.sendall(b"EHLO x.test\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    raw.sendall(b"STARTTLS\r\nNOOP injected\r\n")
    assert f.readline().startswith(b"220")
    tls = tls_context().wrap_socket(raw, server_hostname="mx.sluice.test")
    tls.settimeout(10)
    tls.sendall(b"NOOP\r\n")
    time.sleep(0.5)
    first = tls.recv(4096)
    # Exactly one reply: the one to our NOOP sent over TLS.
    assert first.count(b"\r\n") == 1 and first.startswith(b"250"), first
    tls.close()


def test_certificate_is_the_one_sluice_reports(sub):
    sl, _ = sub
    import socket
    raw = socket.create_connection(sl.smtp, timeout=10)
    f = raw.makefile("rb")
    f.readline()
    raw.sendall(b"EHLO x.test\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    raw.sendall(b"STARTTLS\r\n")
    assert f.readline().startswith(b"220")
    tls = tls_context().wrap_socket(raw, server_hostname="mx.sluice.test")
    der = tls.getpeercert(binary_form=True)
    tls.close()
    with open(sl.tls_cert) as fh:
        pem = fh.read()
    assert ssl.DER_cert_to_PEM_cert(der).split("-----")[2].split() == \
        pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----")[0].split()


def test_suppressed_recipient_is_refused_at_rcpt_and_the_others_are_sent(sink, sluice_factory):
    """Issue 21: a tenant user's RCPT to an address on the tenant's
    suppression list is answered 550 5.7.1 with the entry's reason; the
    other recipients of the transaction are accepted and delivered."""
    sl = sluice_factory(start=False, config={
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
        "outbound": {"bounce_domain": "bounces.sluice.test"},
        "outbound.mx_override": {"*": sink.addr},
    })
    sl.add_user("mailer", PASSWORD)
    sl.cli("user", "add", "mailer", "--password-file", f"{sl.workdir}/pw-mailer", "--tenant", "acme",
           "--data", sl.data)
    sl.cli("suppress", "add", "gone@dest.test", "--tenant", "acme", "--reason", "left the company",
           "--data", sl.data)
    sl.start()
    tok = token()
    msg = (f"From: Mailer <mailer@acme.test>\r\nTo: nina@dest.test\r\nSubject: {tok}\r\n"
           f"\r\nSubmitted.\r\n").encode()
    with smtplib.SMTP(*sl.submission, timeout=15) as c:
        c.starttls(context=tls_context())
        c.login("mailer", PASSWORD)
        c.mail("mailer@acme.test")
        code, text = c.rcpt("Gone@dest.test")
        assert code == 550 and text.startswith(b"5.7.1"), (code, text)
        assert b"is suppressed" in text and b"left the company" in text, text
        assert c.rcpt("nina@dest.test")[0] == 250
        code, text = c.data(msg)
        assert code == 250, (code, text)
    got = sink.wait_for(1, timeout=20, match=lambda m: tok.encode() in m.content)[0]
    assert got.rcpts == ["nina@dest.test"], got.rcpts
    time.sleep(0.3)
    assert not [m for m in sink.messages() if "gone@dest.test" in m.rcpts]

    # The MX listener is not asked: mail to the same address from outside
    # (to an accepted domain) is not refused for a tenant's list.
    sl.cli("suppress", "add", "rcpt@sluice.test", "--tenant", "acme", "--data", sl.data)
    with smtplib.SMTP(*sl.smtp, timeout=15) as c:
        c.ehlo("mx-client.test")
        c.mail("sender@src.test")
        assert c.rcpt("rcpt@sluice.test")[0] == 250
