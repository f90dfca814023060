"""Ground truth from a real MTA, Exim this time (issue 16, item 3): a private
Exim on loopback relays mail to the receiving Postfix of the Postfix lab
(helpers/postfix_lab.receiver), to a closed port, to a host that does not
exist, or delivers it itself to a file over quota; Exim bounces and delays
each in its own words and format, and `sluice classify` must name each
cause: reason, status, recipient and hard/soft.

    E (Exim) --smtp--> B (receiving Postfix: unknown user, size limit,
                          relay and sender rules, header_checks, a
                          refusing listener, a listener out of disk)
             --smtp--> a closed port; a listener that never greets; a name
                       in .invalid (RFC 2606); MX records in the lab's DNS
             --appendfile--> a 2 KB quota
    E's reports --------> the capture sink (aiosmtpd)
"""

import os

import pytest

from helpers.exim_lab import EXIM, Exim
from helpers.lab_dns import resolver_mount
from helpers.mta_lab import (await_reports, check_delay, finals, send_causes, send_two_unknown, two_unknown_reports,
                              wrong_two_unknown, wrong_verdicts)
from helpers.net import free_port
from helpers.postfix_lab import B_REFUSALS, receiving_lab, unreachable

# cause: (sender, recipient, message kind, reason, status, hard, verdict)
CAUSES = {
    **B_REFUSALS,
    # Exim's final report keeps the last error only as "retry timeout
    # exceeded" with Status 5.0.0 (the TLS failure is not named in it).
    "connection refused until expiry": ("s@sender.test", "x@down.test", "small", "expired", "5.0.0", False,
                                        "bounce"),
    "TLS required, not offered, until expiry": ("s@sender.test", "x@tls.test", "small", "expired", "5.0.0", False,
                                                "bounce"),
    "receiving system full until expiry": ("s@sender.test", "ok@storage.test", "small", "systemfull", "4.3.1",
                                           False, "bounce"),
    **unreachable(hostunknown="5.0.0", nullmx="5.0.0", broken="5.0.0", silent="5.0.0"),
    "mailbox over quota until expiry": ("s@sender.test", "full@quota.test", "big", "mailboxfull", "5.0.0", False,
                                        "bounce"),
}


# Exim keeps its retry state per IP address, not per port (its spec, "Retry
# configuration"): a host that refuses or never greets on 127.0.0.1 would
# hold back the lab's good deliveries to 127.0.0.1 ("retry time not
# reached") until they expire too. The failing hosts get addresses of
# their own (nothing listens on 127.0.0.2; the silent listener is on .3).
DOWN_HOST = "127.0.0.2"
SILENT_HOST = "127.0.0.3"


@pytest.fixture
def exim_lab(sink):
    if not os.access(EXIM, os.X_OK):
        pytest.fail(f"no Exim at {EXIM}: scripts/install-test-deps.sh unpacks it there")
    def make(root, ports):
        return Exim(root, "mtae", free_port(), local="quota.test", mx_domains="nx.test : lostmx.test : nullmx.test : broken.test",
                    mounts=resolver_mount(root), routes=[
            ("dest.test : other.test", "127.0.0.1", ports["main"], False),
            ("blocked.test", "127.0.0.1", ports["blocking"], False),
            ("storage.test", "127.0.0.1", ports["full"], False),
            ("tls.test", "127.0.0.1", ports["main"], True),
            ("down.test", DOWN_HOST, free_port(), False),
            ("silent.test", SILENT_HOST, ports["silent"], False),
            ("gone.test", "no-such-host.invalid", 25, False),
            ("sender.test : refused.test", "127.0.0.1", sink.port, False),
        ])

    with receiving_lab("sluice-eximlab-", sink.port, make, silent_host=SILENT_HOST) as lab:
        yield lab


def test_exim_bounces_are_classified_by_their_cause(sink, exim_lab, tmp_path):
    e, b = exim_lab
    sent = send_causes(e.port, CAUSES)
    two = send_two_unknown(e.port)
    # Exim's bounce says "Mail delivery failed" in its subject; its delay
    # warning says "Warning: message ... delayed".
    final = b"Mail delivery failed"
    got = await_reports(lambda: finals(sink, sent, final), sink, 120, "a bounce for every cause",
                        lambda: "\n".join(line for line in e.log().splitlines() if "queue run" not in line))
    check_delay(sink, sent, lambda content: final not in content, tmp_path)
    wrong = wrong_verdicts(got, CAUSES, tmp_path)
    both = await_reports(lambda: two_unknown_reports(sink, two, final), sink, 30, "the two unknown users' reports",
                         lambda: "")
    wrong += wrong_two_unknown(both, B_REFUSALS["unknown user"][4], tmp_path)
    assert not wrong, "\n\n".join(wrong)
