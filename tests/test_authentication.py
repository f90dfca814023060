"""Sender authentication in filter mode (issue 20): SPF, DKIM and DMARC of
mail for a filter-mode domain are checked against a real DNS server
(dnsmasq on a private port, `[spam] dns`), are signals of the spam score,
and filter-mode recipients get an `Authentication-Results` header with
them; a recipient outside filter mode still gets the bytes sent, exactly.

- a message signed (dkimpy) by example.org, from an address its SPF policy
  permits: spf, dkim and dmarc pass;
- a message whose From domain publishes `p=reject`, from an address its
  SPF policy forbids, unsigned: dmarc=fail, and the score is higher by the
  weight of those signals (DMARC_REJECT, 3 points); a header in it that
  claims to be ours is removed;
- the DNS server down: temperror, and the message is still delivered,
  held up no longer than the checks' budget.

`SLUICE_TEST_DATABASE=postgres` runs it on PostgreSQL."""

import base64
import json
import os
import re
import time

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from helpers.mail import assert_relayed_exactly, send_raw
from helpers.mta_lab import Foreground
from helpers.net import free_port, split_trace
from helpers.procs import HOSTNAME, wait_until

DOMAIN = "isp.test"
OUTSIDE = "rcpt@sluice.test"  # accepted, not in filter mode
DNSMASQ = "/usr/sbin/dnsmasq"
# The checks' budget (route::authenticate::BUDGET), with room for a slow machine.
BUDGET = 5.0


class AuthDNS(Foreground):
    """dnsmasq answering TXT records on 127.0.0.1:`port`; every other name
    under the lab's domains does not exist."""

    def __init__(self, root, txt):
        self.dir = os.path.join(root, "auth-dns")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.out = os.path.join(self.dir, "dnsmasq.log")
        self.args = [
            DNSMASQ, "--keep-in-foreground", "--log-facility=-", "--log-queries", "--conf-file=/dev/null",
            "--pid-file", f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces",
            "--no-resolv", "--no-hosts", "--local=/org/", "--local=/test/", "--local=/net/",
        ]
        # One TXT record a name; a long value is cut into 255-byte strings
        # (on the command line dnsmasq takes no quotes: commas separate).
        for name, value in txt.items():
            assert "," not in value, value
            parts = ",".join(value[i:i + 250] for i in range(0, len(value), 250))
            self.args.append(f"--txt-record={name},{parts}")

    def start(self):
        if not os.access(DNSMASQ, os.X_OK):
            raise RuntimeError(f"no dnsmasq at {DNSMASQ}: scripts/install-test-deps.sh installs dnsmasq-base")
        self.run(self.args)
        return self


def rsa_key():
    """A DKIM key: the PEM to sign with, and the `p=` to publish."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, base64.b64encode(der).decode()


def letter(from_addr, n):
    return (f"From: News <{from_addr}>\r\nTo: ann@{DOMAIN}\r\nSubject: The news, week {n}\r\n"
            f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <week{n}@example.org>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            "Hello Ann,\r\nhere is what happened this week in the garden club.\r\n").encode()


def signed(content, pem):
    sig = dkim.sign(content, b"sel", b"example.org", pem,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
                    canonicalize=(b"relaxed", b"simple"))
    return sig + content


def policy(sl, *args):
    return sl.cli("policy", *args, "--data", sl.data).stdout.decode()


def filtered(sl):
    """(message, address, detail) of every `filtered` event."""
    rows = sl.rows("SELECT message, address, detail FROM events WHERE type = 'filtered' ORDER BY id")
    return [(m, a, json.loads(d)) for m, a, d in rows]


def auth_results(content):
    """The `Authentication-Results` value of a copy (unfolded), after our
    trace header, and the rest of the copy."""
    _, rest = split_trace(content)
    m = re.match(rb"(?s)Authentication-Results: (.*?)\r\n(?![ \t])", rest)
    assert m, f"no Authentication-Results first: {rest[:300]!r}"
    return re.sub(rb"\r\n[ \t]+", b" ", m.group(1)).decode(), rest[m.end():]


def signals(detail):
    return {s["name"]: s["score"] for s in detail["signals"]}


def start(sluice_factory, sink, dns_port):
    sl = sluice_factory(relay=sink.addr, extra_args=["--filter-domain", DOMAIN],
                        config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
                                "spam": {"dns": [f"127.0.0.1:{dns_port}"]}})
    # Every message is delivered, whatever it scores: this is about the header.
    policy(sl, "set", DOMAIN, "spam_threshold", "60")
    policy(sl, "set", DOMAIN, "unsure_threshold", "50")
    return sl


def test_results_are_signals_and_a_header_for_filter_mode_recipients(sluice_factory, sink, tmp_path):
    pem, p = rsa_key()
    dns = AuthDNS(str(tmp_path), {
        "example.org": "v=spf1 ip4:127.0.0.1 -all",
        "sel._domainkey.example.org": f"v=DKIM1; k=rsa; p={p}",
        "_dmarc.example.org": "v=DMARC1; p=none",
        "strict.org": "v=spf1 ip4:192.0.2.1 -all",
        "_dmarc.strict.org": "v=DMARC1; p=reject",
    }).start()
    try:
        sl = start(sluice_factory, sink, dns.port)

        # (a) Signed by example.org, from 127.0.0.1, which example.org's SPF
        # permits; one recipient outside filter mode gets the bytes sent.
        good = signed(letter("news@example.org", 1), pem)
        qa = send_raw(sl.smtp, good, mail_from="news@example.org", rcpts=[f"ann@{DOMAIN}", OUTSIDE],
                      helo="mail.example.org")
        msgs = sink.wait_for(2, timeout=20)
        by_rcpt = {tuple(m.rcpts): m.content for m in msgs}
        assert_relayed_exactly(by_rcpt[(OUTSIDE,)], good)
        header, rest = auth_results(by_rcpt[(f"ann@{DOMAIN}",)])
        assert rest == good, "the header is added in front, the message is untouched"
        assert header.startswith(f"{HOSTNAME};"), header
        for part in ("spf=pass smtp.mailfrom=news@example.org", "dkim=pass header.d=example.org",
                     "dmarc=pass header.from=example.org policy.dmarc=none", "arc=none"):
            assert part in header, (part, header)

        events = wait_until(lambda: filtered(sl) or None, 20, what="the first filtered event")
        (_, _, a), = events
        assert signals(a).get("SPF_PASS") == -0.001 and signals(a).get("DKIM_VALID") == -0.1, a["signals"]
        assert a["auth"]["spf"] == "pass" and a["auth"]["dkim"] == "pass" and a["auth"]["dmarc"] == "pass", a
        sl.wait_queue_empty(20)

        # (b) From strict.org (p=reject) out of an address its SPF forbids,
        # unsigned, to filter mode alone: the message itself carries the
        # header, under the queue id the client was given. A header that
        # claims to be ours already is a forgery: it goes.
        forged = letter("news@strict.org", 1)
        claim = f"Authentication-Results: {HOSTNAME.upper()}; dkim=pass\r\n\theader.d=strict.org\r\n".encode()
        qb = send_raw(sl.smtp, claim + forged, mail_from="news@strict.org", rcpts=[f"ann@{DOMAIN}"],
                      helo="mail.example.org")
        m = sink.wait_for(3, timeout=20)[-1]
        header, rest = auth_results(m.content)
        assert rest == forged, "the claim is gone, the rest is untouched"
        for part in ("spf=fail smtp.mailfrom=news@strict.org", "dkim=none",
                     "dmarc=fail header.from=strict.org policy.dmarc=reject"):
            assert part in header, (part, header)
        events = wait_until(lambda: len(filtered(sl)) >= 2 and filtered(sl), 20, what="the second event")
        message, _, b = events[-1]
        assert message == qb and qa != qb, (message, qb)
        assert signals(b).get("DMARC_REJECT") == 3.0 and signals(b).get("SPF_FAIL") == 0.9, b["signals"]
        # The two letters are alike but for authentication: the scores
        # differ by those signals alone.
        auth_names = {"SPF_PASS", "SPF_FAIL", "DKIM_VALID", "DKIM_INVALID", "DMARC_REJECT"}
        rest_a = sum(v for k, v in signals(a).items() if k not in auth_names)
        rest_b = sum(v for k, v in signals(b).items() if k not in auth_names)
        assert abs(rest_a - rest_b) < 0.01, (a["signals"], b["signals"])
        expected = 3.0 + 0.9 - (-0.001 - 0.1)
        assert abs((b["score"] - a["score"]) - expected) < 0.02, (a["score"], b["score"])
        assert b["score"] - a["score"] >= 3.0
        sl.wait_queue_empty(20)

        # (c) The DNS server is down: temperror, no authentication signal,
        # and the message is delivered, held up no longer than the budget.
        dns.stop()
        third = signed(letter("news@example.org", 3), pem)
        t0 = time.monotonic()
        send_raw(sl.smtp, third, mail_from="news@example.org", rcpts=[f"ann@{DOMAIN}"],
                 helo="mail.example.org")
        took = time.monotonic() - t0
        assert took < BUDGET + 3, f"the end of DATA took {took:.1f}s"
        m = sink.wait_for(4, timeout=20)[-1]
        header, rest = auth_results(m.content)
        assert rest == third
        assert "spf=temperror" in header and "dmarc=temperror" in header, header
        events = wait_until(lambda: len(filtered(sl)) >= 3 and filtered(sl), 20, what="the third event")
        _, _, c = events[-1]
        assert not auth_names & set(signals(c)), c["signals"]
        assert c["auth"]["spf"] == "temperror", c["auth"]
    finally:
        dns.stop()
