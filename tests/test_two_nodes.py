"""Two nodes, one PostgreSQL (issue 18): each node has its own data
directory and spool; tenants, keys, suppressions, the record and the
quarantine store are shared. What one node takes, the other answers for."""

import imaplib
import threading

import pytest

from helpers.mail import send_raw
from helpers.net import tls_context
from helpers.procs import database_for_test, wait_until
from test_imap import AUTOREPLY
from test_outbound import BOUNCE_DOMAIN, VERP, api, create_key, delivered_to, feed, fixture, message, send
from test_tee import fixture as corpus


@pytest.fixture
def nodes(sink, sluice_factory):
    database = database_for_test("postgres")
    config = {
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
        "outbound": {"bounce_domain": BOUNCE_DOMAIN},
        "outbound.mx_override": {"*": sink.addr},
    }
    env = {"SLUICE_DATABASE": database}
    a = sluice_factory(start=False, name="a", config=config, relay=sink.addr, env=env)
    b = sluice_factory(start=False, name="b", config=config, relay=sink.addr, env=env)
    a.add_account("shop", "sluice.test", password="shop-pw")
    a.start()
    b.start()
    return a, b, sink


def wait_recipient(sl, key, mid, address, status):
    def check():
        r = [r for r in message(sl, key, mid)["recipients"] if r["address"] == address]
        return r[0] if r and r[0]["status"] == status else None
    return wait_until(check, 30, interval=0.2, what=f"{address} {status} as {sl.workdir} sees it")


def test_what_one_node_records_the_other_answers_for(nodes):
    a, b, sink = nodes
    key = create_key(a, "acme")
    # Sent through A, tracked on B.
    sent = send(a, key, ["alice@dest.test"])
    got = delivered_to(sink, "alice@dest.test")
    assert VERP.match(got.mail_from), got.mail_from
    wait_recipient(b, key, sent["id"], "alice@dest.test", "delivered")

    # A bounce reaching B's MX for A's VERP address: B opens A's token
    # (the key is shared), A's recipient is bounced and suppressed on both.
    mid = message(a, key, sent["id"])["message_id"]
    dsn = fixture("bounces", "lhost-postfix-05.eml",
                  {"kijitora@example.org": "alice@dest.test", "FFFFFFFF.0000000@example.co.jp": mid})
    feed(b, got.mail_from, dsn)
    r = wait_recipient(a, key, sent["id"], "alice@dest.test", "bounced")
    assert r["reason"] == "userunknown", r
    for node in (a, b):
        status, s, _ = api(node, "GET", "/v1/suppressions/alice@dest.test", key)
        assert status == 200 and s["source"] == "bounced", (node.workdir, s)
    again = send(b, key, ["alice@dest.test"])
    assert again["recipients"][0]["status"] == "suppressed"

    # A key revoked on A is refused on B within a second.
    assert api(b, "GET", "/v1/events", key)[0] == 200
    a.cli("apikey", "revoke", key[:11], "--tenant", "acme", "--data", a.data)
    wait_until(lambda: api(b, "GET", "/v1/events", key)[0] == 401, 1, interval=0.05,
               what="node b to refuse the revoked key")


def test_a_copy_filed_through_one_node_is_served_and_announced_by_the_other(nodes):
    a, b, _ = nodes
    m = imaplib.IMAP4(*b.imap)
    m.starttls(ssl_context=tls_context())
    m.login("shop", "shop-pw")
    assert m.select("AutoReplies") == ("OK", [b"0"])
    tag = m._new_tag().decode()
    m.send(f"{tag} IDLE\r\n".encode())
    assert m.readline().startswith(b"+")
    raw = corpus(AUTOREPLY)
    threading.Timer(0.3, lambda: send_raw(a.smtp, raw, mail_from="", rcpts=("bounces@sluice.test",))).start()
    m.sock.settimeout(20)
    line = m.readline()
    assert line == b"* 1 EXISTS\r\n", line
    m.send(b"DONE\r\n")
    assert m.readline() == f"{tag} OK IDLE terminated\r\n".encode()
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and raw.split(b"\r\n\r\n", 1)[1] in data[0][1], data
    m.logout()
