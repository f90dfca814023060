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

import pytest

from helpers.lab_dns import resolver_mount
from helpers.mta_lab import (await_reports, check_delay, finals, send_causes, send_two_unknown, two_unknown_reports,
                              wrong_two_unknown, wrong_verdicts)
from helpers.net import free_port
from helpers.postfix_lab import B_REFUSALS, Postfix, receiving_lab, unreachable

# cause: (sender, recipient, message kind, reason, status, hard, verdict)
CAUSES = {
    **B_REFUSALS,
    "mailbox full": ("s@sender.test", "full@dest.test", "small", "mailboxfull", "5.2.2", False, "bounce"),
    "connection refused until expiry": ("s@sender.test", "x@down.test", "small", "expired", "4.4.1", False,
                                        "bounce"),
    "TLS required, not offered": ("s@sender.test", "x@tls.test", "small", "failedstarttls", "4.7.4", False,
                                  "bounce"),
    "receiving system full until expiry": ("s@sender.test", "ok@storage.test", "small", "systemfull", "4.3.1",
                                           False, "bounce"),
    # Accepted for a local domain, then local(8) finds no such user and B
    # bounces it itself.
    "unknown local user after acceptance": ("s@sender.test", "no-such-user-x7@local.test", "small", "userunknown", "5.1.1",
                                            True, "bounce"),
    **unreachable(hostunknown="5.4.4", nullmx="5.1.0", broken="4.4.3", silent="4.4.2"),
}


def sending(root, sink_port, ports):
    """A, the sending Postfix (not started), routing each domain to one of
    B's listeners, a closed port, a listener that never greets, a host that
    does not exist, or by its MX records in the lab's DNS."""
    a_port, closed = free_port(), free_port()
    a = Postfix(root, "mtaa", a_port, mounts=resolver_mount(root), main=f"""\
        smtp_dns_support_level = enabled
        smtp_helo_timeout = 3s
        mynetworks = 127.0.0.0/8
        smtpd_relay_restrictions = permit_mynetworks, reject
        transport_maps = texthash:{root}/mtaa/conf/transport
        smtp_tls_policy_maps = texthash:{root}/mtaa/conf/tls_policy
        maximal_queue_lifetime = 15s
        bounce_queue_lifetime = 15s
        delay_warning_time = 4s
        """, files={
        "transport": "".join(f"{d} smtp:[127.0.0.1]:{p}\n" for d, p in [
            ("dest.test", ports["main"]), ("local.test", ports["main"]), ("other.test", ports["main"]),
            ("down.test", closed), ("blocked.test", ports["blocking"]), ("storage.test", ports["full"]),
            ("sender.test", sink_port), ("refused.test", sink_port), ("silent.test", ports["silent"])])
        # The same B by another name, so that its TLS policy is its own.
        + f"tls.test smtp:[localhost]:{ports['main']}\n"
        # A name that does not exist (.invalid, RFC 2606); nx.test,
        # lostmx.test and broken.test are left to their MX records.
        + "gone.test smtp:[no-such-host.invalid]:25\n",
        "tls_policy": f"[localhost]:{ports['main']} encrypt\n",
    })
    return a


@pytest.fixture
def postfix_lab(sink):
    with receiving_lab("sluice-pflab-", sink.port, lambda root, ports: sending(root, sink.port, ports)) as lab:
        yield lab


def test_postfix_bounces_are_classified_by_their_cause(sink, postfix_lab, tmp_path):
    a, b = postfix_lab
    sent = send_causes(a.port, CAUSES)
    two = send_two_unknown(a.port)
    # Every cause has its final DSN, and the refused connection its delay DSN first.
    got = await_reports(lambda: finals(sink, sent, b"Action: failed"), sink, 90, "a DSN for every cause",
                        lambda: f"A:\n{a.log()[-4000:]}\nB:\n{b.log()[-4000:]}")
    check_delay(sink, sent, lambda content: b"Action: delayed" in content, tmp_path)
    wrong = wrong_verdicts(got, CAUSES, tmp_path)
    both = await_reports(lambda: two_unknown_reports(sink, two, b"Action: failed"), sink, 30, "the two unknown users' reports",
                         lambda: "")
    wrong += wrong_two_unknown(both, B_REFUSALS["unknown user"][4], tmp_path)
    assert not wrong, "\n\n".join(wrong)
