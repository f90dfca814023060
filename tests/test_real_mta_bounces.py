"""Ground truth from a real MTA (issue 16, item 3; Postfix so far): private
Postfix instances on loopback bounce and delay mail for causes known by
construction, in Postfix's own words and DSN format, and `sluice classify`
must name each cause: reason, status, recipient and hard/soft.

    A (sending Postfix) --smtp--> B (receiving Postfix: virtual mailboxes,
                                     size limit, relay and sender rules,
                                     header_checks)
                       --smtp--> a closed port (connection refused)
    A's and B's DSNs ---------> the capture sink (aiosmtpd)
"""

import json
import os
import pwd
import shutil
import smtplib
import subprocess
import tempfile

import pytest

from helpers.mail import simple_message, token
from helpers.net import free_port
from helpers.postfix_lab import Postfix
from helpers.procs import sluice_bin, wait_until

# cause: (sender, recipient, message kind, reason, status, hard, verdict)
CAUSES = {
    "unknown user": ("s@sender.test", "nobody@dest.test", "small", "userunknown", "5.1.1", True, "bounce"),
    "mailbox full": ("s@sender.test", "full@dest.test", "small", "mailboxfull", "5.2.2", False, "bounce"),
    "message too big": ("s@sender.test", "ok@dest.test", "big", "mesgtoobig", "5.3.4", False, "bounce"),
    "relay denied": ("s@sender.test", "x@other.test", "small", "norelaying", "5.7.1", False, "bounce"),
    "sender rejected": ("s@refused.test", "ok@dest.test", "small", "rejected", "5.7.1", False, "bounce"),
    # Postfix's built-in content inspection (header_checks REJECT, default
    # text "message content rejected") is documented for stopping spam and
    # worms (BUILTIN_FILTER_README); Sisimai reads the wording the same way.
    "content refused by header_checks": ("s@sender.test", "ok@dest.test", "forbidden", "spamdetected", "5.7.1",
                                         False, "bounce"),
    "connection refused until expiry": ("s@sender.test", "x@down.test", "small", "expired", "4.4.1", False,
                                        "bounce"),
    "TLS required, not offered": ("s@sender.test", "x@tls.test", "small", "failedstarttls", "4.7.4", False,
                                  "bounce"),
    "sending host blocked": ("s@sender.test", "ok@blocked.test", "small", "blocked", "5.7.1", False, "bounce"),
    "receiving system full until expiry": ("s@sender.test", "ok@storage.test", "small", "systemfull", "4.3.1",
                                           False, "bounce"),
    # Accepted for a local domain, then local(8) finds no such user and B
    # bounces it itself.
    "unknown local user after acceptance": ("s@sender.test", "no-such-user-x7@local.test", "small", "userunknown", "5.1.1",
                                            True, "bounce"),
    "destination host does not exist": ("s@sender.test", "x@nxdomain.test", "small", "hostunknown", "5.4.4", True,
                                        "bounce"),
}


def lab(root, sink_port):
    """B, then A, both started; returns (a, b)."""
    pw = pwd.getpwnam("postfix")
    b_port, a_port, closed = free_port(), free_port(), free_port()
    b_blocking, b_full = free_port(), free_port()
    b = Postfix(root, "mtab", b_port, main=f"""\
        mydestination = local.test
        virtual_mailbox_domains = dest.test, tls.test, blocked.test, storage.test
        blocking_client_restrictions = check_client_access cidr:{root}/mtab/conf/clients
        virtual_mailbox_maps = texthash:{root}/mtab/conf/mailboxes
        virtual_mailbox_base = {root}/mtab/mail
        virtual_uid_maps = static:{pw.pw_uid}
        virtual_gid_maps = static:{pw.pw_gid}
        virtual_mailbox_limit = 60000
        message_size_limit = 40000
        mynetworks = 192.0.2.0/24
        smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
        smtpd_sender_restrictions = check_sender_access texthash:{root}/mtab/conf/senders
        header_checks = regexp:{root}/mtab/conf/header_checks
        transport_maps = texthash:{root}/mtab/conf/transport
        """, files={
        "mailboxes": "full@dest.test full\nok@dest.test ok\nx@tls.test tls\n"
                     "ok@blocked.test ok\nok@storage.test ok\n",
        "clients": "127.0.0.0/8 REJECT\n",
        "senders": "refused.test REJECT\n",
        "header_checks": "/^Subject: .*FORBIDDEN/ REJECT\n",
        "transport": f"sender.test smtp:[127.0.0.1]:{sink_port}\n",
    }, listeners=[
        # This client is refused; this one has less free disk than it needs.
        (b_blocking, "-o smtpd_client_restrictions=$blocking_client_restrictions"),
        (b_full, "-o queue_minfree=1000000000000000"),
    ])
    # A mailbox already at its limit.
    full = os.path.join(b.dir, "mail", "full")
    with open(full, "wb") as f:
        f.write(b"From x@y.test Thu Jan  1 00:00:00 2026\n" + b"x" * 59_990 + b"\n\n")
    os.chown(full, pw.pw_uid, pw.pw_gid)
    a = Postfix(root, "mtaa", a_port, main=f"""\
        mynetworks = 127.0.0.0/8
        smtpd_relay_restrictions = permit_mynetworks, reject
        transport_maps = texthash:{root}/mtaa/conf/transport
        smtp_tls_policy_maps = texthash:{root}/mtaa/conf/tls_policy
        maximal_queue_lifetime = 15s
        bounce_queue_lifetime = 15s
        delay_warning_time = 4s
        """, files={
        "transport": "".join(f"{d} smtp:[127.0.0.1]:{p}\n" for d, p in [
            ("dest.test", b_port), ("local.test", b_port), ("other.test", b_port), ("down.test", closed),
            ("blocked.test", b_blocking), ("storage.test", b_full),
            ("sender.test", sink_port), ("refused.test", sink_port)])
        # The same B by another name, so that its TLS policy is its own.
        + f"tls.test smtp:[localhost]:{b_port}\n"
        # A name that does not exist (.invalid, RFC 2606).
        + "nxdomain.test smtp:[no-such-host.invalid]:25\n",
        "tls_policy": f"[localhost]:{b_port} encrypt\n",
    })
    b.start()
    a.start()
    return a, b


def message(kind, t):
    subject = f"FORBIDDEN {t}" if kind == "forbidden" else t
    body = b"x" * 60_000 + b"\r\n" if kind == "big" else b"hello\r\n"
    return simple_message(subject, body=body)


@pytest.fixture
def postfix_lab(sink):
    # Postfix's own processes run as `postfix`: the directories must be
    # reachable by it (pytest's tmp_path is root's alone).
    root = tempfile.mkdtemp(prefix="sluice-pflab-")
    os.chmod(root, 0o755)
    a = b = None
    try:
        a, b = lab(root, sink.port)
        yield a, b
    finally:
        for mta in (a, b):
            if mta:
                mta.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_postfix_bounces_are_classified_by_their_cause(sink, postfix_lab, tmp_path):
    a, b = postfix_lab
    sent = {}
    for cause, (sender, rcpt, kind, *_ ) in CAUSES.items():
        t = token()
        with smtplib.SMTP("127.0.0.1", a.port, timeout=10) as c:
            c.sendmail(sender, [rcpt], message(kind, t))
        sent[cause] = t

    def reports():
        return [m for m in sink.messages() if m.mail_from == ""]

    # Every cause has its final DSN, and the refused connection its delay DSN first.
    def finals():
        got = {}
        for m in reports():
            for cause, t in sent.items():
                if t.encode() in m.content and b"Action: failed" in m.content:
                    got[cause] = m
        return got if len(got) == len(sent) else None

    got = wait_until(finals, 90, interval=1,
                     what=f"a DSN for every cause\nA:\n{a.log()[-3000:]}\nB:\n{b.log()[-3000:]}")
    delays = [m for m in reports() if b"Action: delayed" in m.content
              and sent["connection refused until expiry"].encode() in m.content]
    assert delays, "a delay DSN came before the final one"
    delay = tmp_path / "delay.eml"
    delay.write_bytes(delays[0].content)
    out = subprocess.run([sluice_bin(), "classify", str(delay)], capture_output=True, timeout=30)
    c = json.loads(out.stdout)
    assert c["verdict"] == "delay", c
    assert [r["address"] for r in c["recipients"]] == ["x@down.test"], c

    wrong = []
    for cause, m in got.items():
        sender, rcpt, _, reason, status, hard, verdict = CAUSES[cause]
        path = tmp_path / f"{cause.replace(' ', '-').replace(',', '')}.eml"
        path.write_bytes(m.content)
        out = subprocess.run([sluice_bin(), "classify", "--explain", str(path)], capture_output=True, timeout=30)
        lines = out.stdout.decode().splitlines()
        c = json.loads(lines[-1])
        entry = next((r for r in c["recipients"] if r["address"].lower() == rcpt), None)
        seen = (c["verdict"], entry and entry["reason"], entry and entry["status"], entry and entry["hard"])
        if seen != (verdict, reason, status, hard):
            wrong.append(f"{cause}: expected {(verdict, reason, status, hard)}, got {seen}\n"
                         + "\n".join(lines[:-1]))
    assert not wrong, "\n\n".join(wrong)
