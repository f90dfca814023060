"""Ground truth from a real MTA, Sendmail this time (issue 16, item 3): a
private Sendmail 8.17 on loopback relays mail to the receiving Postfix of
the Postfix lab (helpers/postfix_lab.receiver), to a closed port or to a
host that does not exist; it bounces and delays each in its own words and
DSN format, and `sluice classify` must name each cause: reason, status,
recipient and hard/soft.

    S (Sendmail) --smtp--> B (receiving Postfix)
                 --smtp--> a closed port; a listener that never greets; a name
                           in .invalid (RFC 2606); MX records in the lab's DNS
    S's reports ---------> the capture sink (aiosmtpd)
"""

import pytest

from helpers.lab_dns import resolver_mount
from helpers.mta_lab import (await_reports, check_delay, finals, send_causes, send_two_unknown, two_unknown_reports,
                              wrong_two_unknown, wrong_verdicts)
from helpers.net import free_port
from helpers.postfix_lab import B_REFUSALS, receiving_lab, unreachable
from helpers.sendmail_lab import Sendmail, available

# cause: (sender, recipient, message kind, reason, status, hard, verdict)
CAUSES = {
    **B_REFUSALS,
    "connection refused until expiry": ("s@sender.test", "x@down.test", "small", "expired", "4.4.7", False,
                                        "bounce"),
    # Sendmail's Status is its own expiry (4.4.7); the 452 4.3.1 it kept
    # getting is in Diagnostic-Code.
    "receiving system full until expiry": ("s@sender.test", "ok@storage.test", "small", "systemfull", "4.4.7",
                                           False, "bounce"),
    **unreachable(hostunknown="5.1.2", nullmx="5.1.10", broken="4.4.7", silent="4.4.7"),
    "TLS required, not offered, until expiry": ("s@sender.test", "x@tls.test", "small", "failedstarttls", "4.4.7",
                                                False, "bounce"),
}


@pytest.fixture
def sendmail_lab(sink):
    if not available():
        pytest.fail("no Sendmail: scripts/install-test-deps.sh unpacks it")
    def make(root, ports):
        return Sendmail(root, "mtas", free_port(), mx_domains="nx.test lostmx.test nullmx.test broken.test",
                        mounts=resolver_mount(root), tls_domains="tls.test", routes=[
            ("dest.test other.test tls.test", "127.0.0.1", ports["main"]),
            ("blocked.test", "127.0.0.1", ports["blocking"]),
            ("storage.test", "127.0.0.1", ports["full"]),
            ("down.test", "127.0.0.1", free_port()),
            ("silent.test", "127.0.0.1", ports["silent"]),
            ("gone.test", "no-such-host.invalid", 25),
            ("sender.test refused.test", "127.0.0.1", sink.port),
        ])

    # Sendmail ignores a map in a world-writable directory's subtree (/tmp):
    # the lab lives under a root-owned one.
    with receiving_lab("sluice-smlab-", sink.port, make, base="/var/lib/sluice-test") as lab:
        yield lab


def test_sendmail_bounces_are_classified_by_their_cause(sink, sendmail_lab, tmp_path):
    s, b = sendmail_lab
    sent = send_causes(s.port, CAUSES)
    two = send_two_unknown(s.port)
    got = await_reports(lambda: finals(sink, sent, b"Action: failed"), sink, 120, "a DSN for every cause", s.log)
    check_delay(sink, sent, lambda content: b"Action: delayed" in content, tmp_path)
    wrong = wrong_verdicts(got, CAUSES, tmp_path)
    both = await_reports(lambda: two_unknown_reports(sink, two, b"Action: failed"), sink, 30, "the two unknown users' reports",
                         lambda: "")
    wrong += wrong_two_unknown(both, B_REFUSALS["unknown user"][4], tmp_path)
    assert not wrong, "\n\n".join(wrong)
