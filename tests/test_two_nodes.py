"""Two nodes, one PostgreSQL (issue 18): each node has its own data
directory and spool; tenants, keys, suppressions, the record and the
quarantine store are shared. What one node takes, the other answers for."""

import imaplib
import re
import threading
import time

import pytest

from test_fault_kill import api_send, inbound_recorded, smtp_job

from helpers.faults import under_kills
from helpers.mail import send_raw
from helpers.net import tls_context
from helpers.procs import database_for_test, wait_until
from test_imap import AUTOREPLY
from test_outbound import (BOUNCE_DOMAIN, VERP, api, create_key, delivered_to, dkim_verifies, feed, fixture,
                           message, send)
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


def test_a_dkim_key_made_on_one_node_signs_the_other_s_next_message(nodes):
    """DKIM keys live in the database: a key generated through A while both
    run signs B's next message, and a key removed stops signing, with no
    restart (each node hears of the change within a second)."""
    a, b, sink = nodes
    key = create_key(a, "acme")
    unsigned = send(b, key, ["first@dest.test"])
    assert not delivered_to(sink, "first@dest.test").header("DKIM-Signature"), unsigned
    out = a.cli("dkim", "generate", "acme.test", "--selector", "s1", "--data", a.data).stdout.decode()
    txt = "".join(re.findall(r'"([^"]*)"', out.split(" IN TXT ", 1)[1]))
    time.sleep(1.5)
    send(b, key, ["second@dest.test"])
    got = delivered_to(sink, "second@dest.test")
    assert "d=acme.test" in (got.header("DKIM-Signature") or ""), got.content[:400]
    assert dkim_verifies(got.content, txt), got.content[:600]
    listed = b.cli("dkim", "list", "--data", b.data).stdout.decode()
    assert listed.startswith("acme.test  s1  created "), listed
    assert "PRIVATE" not in listed
    b.cli("dkim", "remove", "acme.test", "s1", "--data", b.data)
    time.sleep(1.5)
    send(a, key, ["third@dest.test"])
    assert not delivered_to(sink, "third@dest.test").header("DKIM-Signature")


@pytest.mark.time_limit(240)
def test_a_node_killed_under_load_loses_nothing_and_the_other_sees_its_record_complete(nodes):
    """kill -9 of A, again and again, while applications send through its
    API and mail reaches its MX: every 202 and every 250 ends delivered or
    relayed, and B, reading the shared record, sees each one complete."""
    a, b, sink = nodes
    key = create_key(a, "acme")
    inbound = smtp_job(a, "a@src.test")

    def work(job):
        kind, i = job
        return api_send(a, key, i) if kind == "api" else inbound(f"load{i}@kill.test")
    jobs = [("api", i) for i in range(150)] + [("smtp", i) for i in range(150)]
    accepted, kills = under_kills(a, jobs, work, seed="nodes")
    assert kills >= 3 and accepted
    sent = {v for (kind, _), v in accepted.items() if kind == "api"}
    mids = {f"load{i}@kill.test" for (kind, i) in accepted if kind == "smtp"}

    def delivered():
        return {m for (m,) in b.rows("SELECT message FROM out_recipients WHERE status = 'delivered'")}
    wait_until(lambda: sent <= delivered(), 90, interval=1, what="every 202 delivered, as B reads it")
    wait_until(lambda: mids <= inbound_recorded(b), 60, interval=1,
               what="every 250 received and relayed, as B reads it")
    some = sorted(sent)[0]
    assert message(b, key, some)["recipients"][0]["status"] == "delivered"
    tracked = b.cli("track", sorted(mids)[0], "--json", "--data", b.data).stdout
    assert b'"relayed"' in tracked, tracked
    print(f"\ntwo nodes under kills of A: {len(sent)} sends, {len(mids)} inbound, {kills} kills")
