"""Ground truth from a real MTA, OpenSMTPD this time (issue 16, item 3): a
private OpenSMTPD 6.8 on loopback relays mail to the receiving Postfix of the
Postfix lab (helpers/postfix_lab.receiver) or to a host that does not exist;
it bounces and delays each in its own words and format, and `sluice
classify` must name each cause: reason, status, recipient and hard/soft.

Not here: a closed port and TLS required but not offered. OpenSMTPD keeps
such mail in its connector's own retry loop (minutes of backoff per
destination, every destination here being 127.0.0.1) and neither expires it
nor reports it within a test's time; the Postfix and Exim labs cover both.

    O (OpenSMTPD) --smtp--> B (receiving Postfix)
                  --smtp--> a name in .invalid (RFC 2606); MX records in the
                            lab's DNS
    O's reports ----------> O's own Maildir
"""

import pytest

from helpers.lab_dns import resolver_mount
from helpers.mta_lab import (await_reports, check_delay, classify, finals, reports, send_causes, send_two_unknown,
                              two_unknown_reports, wrong_two_unknown, wrong_verdicts)
from helpers.net import free_port
from helpers.opensmtpd_lab import Mailbox, OpenSMTPD, available
from helpers.postfix_lab import B_REFUSALS, receiving_lab

# cause: (sender, recipient, message kind, reason, status, hard, verdict)
CAUSES = {
    **B_REFUSALS,
    # OpenSMTPD refuses it itself against B's SIZE, with no status code.
    "message too big": ("s@sender.test", "ok@dest.test", "big", "mesgtoobig", "5.0.0", False, "bounce"),
    # The lab's DNS server: nx.test is NXDOMAIN.
    "domain does not exist": ("s@sender.test", "x@nx.test", "small", "hostunknown", "5.0.0", True, "bounce"),
}
# OpenSMTPD 6.8 reports an envelope it gives up on ("Envelope expired") in a
# notice with Action: delayed, Status 4.4.7: a delay whose cause is expiry.
EXPIRING = {
    "receiving system full until expiry": ("s@sender.test", "ok@storage.test", "small"),
    "destination host does not exist": ("s@sender.test", "x@gone.test", "small"),
    # The lab's DNS again: broken.test's name servers never answer; and
    # OpenSMTPD 6.8 takes an MX host that does not exist, and a null MX
    # (RFC 7505), for "No MX found for domain", a temporary failure.
    "name servers not answering until expiry": ("s@sender.test", "x@broken.test", "small"),
    "MX host does not exist": ("s@sender.test", "x@lostmx.test", "small"),
    "null MX": ("s@sender.test", "x@nullmx.test", "small"),
}


@pytest.fixture
def opensmtpd_lab(sink):
    if not available():
        pytest.fail("no OpenSMTPD (or unshare/nsenter): scripts/install-test-deps.sh unpacks it")
    def make(root, ports):
        return OpenSMTPD(root, "mtao", free_port(), routes=[
            ("dest.test other.test", "127.0.0.1", ports["main"], False),
            ("blocked.test", "127.0.0.1", ports["blocking"], False),
            ("storage.test", "127.0.0.1", ports["full"], False),
            ("gone.test", "no-such-host.invalid", 25, False),
        ], mailbox_domains="sender.test refused.test", mx_domains="nx.test lostmx.test nullmx.test broken.test",
            mounts=resolver_mount(root))

    with receiving_lab("sluice-osdlab-", sink.port, make) as lab:
        yield lab


def test_opensmtpd_bounces_are_classified_by_their_cause(opensmtpd_lab, tmp_path):
    o, b = opensmtpd_lab
    sent = send_causes(o.port, CAUSES)
    expiring = send_causes(o.port, EXPIRING)
    two = send_two_unknown(o.port)
    mailbox = Mailbox(o)

    def expired():
        found = {cause: m for m in reports(mailbox) for cause, t in expiring.items()
                 if t.encode() in m.content and b"Envelope expired" in m.content}
        return found if len(found) == len(expiring) else None

    def done():
        o.kick()
        got = finals(mailbox, sent, b"Action: failed")
        return got and expired() and got

    got = await_reports(done, mailbox, 120, "a report for every cause",
                        lambda: "\n".join(line for line in o.log().splitlines() if not line.startswith("debug:")))
    wrong = wrong_verdicts(got, CAUSES, tmp_path)
    both = await_reports(lambda: two_unknown_reports(mailbox, two, b"Action: failed"), mailbox, 30,
                         "the two unknown users' reports", lambda: "")
    wrong += wrong_two_unknown(both, B_REFUSALS["unknown user"][4], tmp_path)
    assert not wrong, "\n\n".join(wrong)
    # The first notice for the full system is a delay naming its recipient...
    check_delay(mailbox, expiring, lambda c: b"Action: delayed" in c and b"Envelope expired" not in c, tmp_path,
                cause="receiving system full until expiry", rcpt="ok@storage.test")
    # ...and so is the expiry, its cause named.
    for cause, m in expired().items():
        rcpt = EXPIRING[cause][1]
        (tmp_path / "expired.eml").write_bytes(m.content)
        c, why = classify(tmp_path / "expired.eml")
        seen = [(r["address"], r["reason"], r["status"], r["hard"]) for r in c["recipients"]]
        assert (c["verdict"], seen) == ("delay", [(rcpt, "expired", "4.4.7", False)]), (cause, c, why)
