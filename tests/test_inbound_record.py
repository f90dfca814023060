"""The front line's record (issue 17, item 2): every message the MX listener
accepts is in the event record, with each relay attempt and the downstream's
reply, each copy filed, each release and each DSN, and `sluice track` and
`/v1/events` answer for it as they do for an application's mail."""

import json
import smtplib

from helpers.procs import wait_until
from test_outbound import api, create_key


def send(sl, mail_from, rcpts, subject, message_id):
    """Sends one message; returns its queue id (from the 250)."""
    body = (f"From: Alice <{mail_from}>\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{message_id}>\r\n\r\nHello, this is a person writing.\r\n").encode()
    with smtplib.SMTP(*sl.smtp, timeout=15) as c:
        c.ehlo("client.test")
        assert c.mail(mail_from)[0] == 250
        for r in rcpts:
            assert c.rcpt(r)[0] == 250
        code, text = c.data(body)
    assert code == 250, text
    return text.decode().rsplit(" ", 1)[-1]


def track(sl, target):
    p = sl.cli("track", target, "--json", "--data", sl.data, check=False)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def rcpt(doc, address):
    """One recipient of a tracked message, or None while the message is not
    in the record yet (the front line's events are written behind it;
    `sluice track` shows the spool's entry meanwhile)."""
    found = [r for r in doc.get("recipients", []) if r["address"] == address]
    return found[0] if found else None


def detail(e):
    """An event's detail (JSON text on the wire, as `openapi.json` says)."""
    return json.loads(e["detail"])


def events(r):
    return r["events"] if r else []


def kinds(r):
    return [e["type"] for e in events(r)]


def test_relayed_refused_filed_dsn_and_released_are_tracked(sink, sluice_factory):
    sink.control(rcpt=[{"match": "gone", "reply": "550 5.1.1 <gone@sluice.test>: no such user"}])
    sl = sluice_factory(start=False, relay=sink.addr,
                        config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    sl.add_account("acme", "sluice.test")
    sl.start()

    qid = send(sl, "alice@sender.test", ["bob@sluice.test", "carol@sluice.test", "gone@sluice.test"], "lunch?",
               "lunch-1@sender.test")
    sink.wait_for(1, timeout=20)

    def settled():
        doc = track(sl, qid)
        done = ("relayed" in kinds(rcpt(doc, "bob@sluice.test")) and "relayed" in kinds(rcpt(doc, "carol@sluice.test"))
                and {"refused", "dsn_sent"} <= set(kinds(rcpt(doc, "gone@sluice.test")))
                and "filed" in kinds(rcpt(doc, "acme")))
        return doc if done else None
    doc = wait_until(settled, 30, interval=0.3, what="relayed, refused, DSN and filed in the record")
    assert doc["direction"] == "inbound" and doc["message_id"] == "lunch-1@sender.test"
    assert doc["from"] == "alice@sender.test" and doc["subject"] == "lunch?"

    bob = rcpt(doc, "bob@sluice.test")
    assert bob["kind"] == "rcpt" and bob["status"] == "relayed"
    received, relayed = bob["events"][0], bob["events"][-1]
    assert received["type"] == "received"
    assert detail(received)["helo"] == "client.test" and detail(received)["size"] > 50
    # The downstream's own reply, and who gave it.
    assert relayed["smtp_code"] == 250 and "OK stored" in relayed["smtp_text"]
    assert relayed["remote"] and sink.addr.split(":")[-1] in relayed["remote"]
    # One reply to two recipients is one event, each one's.
    carol = rcpt(doc, "carol@sluice.test")
    assert carol["status"] == "relayed" and carol["events"][-1]["id"] == relayed["id"]
    assert carol["events"][-1]["smtp_text"] == relayed["smtp_text"]

    gone = rcpt(doc, "gone@sluice.test")
    assert gone["status"] == "refused", gone
    refused = [e for e in gone["events"] if e["type"] == "refused"][0]
    assert (refused["smtp_code"], refused["smtp_status"]) == (550, "5.1.1")
    assert refused["reason"] == "userunknown"
    dsn = [e for e in gone["events"] if e["type"] == "dsn_sent"][0]
    assert detail(dsn)["action"] == "failed" and detail(dsn)["dsn_id"]

    copy = rcpt(doc, "acme")
    assert copy["kind"] == "copy" and copy["status"] == "filed"
    filed = [e for e in copy["events"] if e["type"] == "filed"][0]
    assert detail(filed)["account"] == "acme" and detail(filed)["verdict"] == "human"
    folder, uid = detail(filed)["folder"], detail(filed)["uid"]

    # The same answers by Message-ID and by address, and in words.
    assert track(sl, "<lunch-1@sender.test>")["id"] == qid
    # An address's history holds its own events; `received` is the
    # message's (one per message, listing its recipients).
    history = track(sl, "bob@sluice.test")
    assert [e["message"] for e in history["events"] if e["type"] == "relayed"] == [qid]
    assert [r["address"] for r in detail(received)["recipients"]] == [
        "bob@sluice.test", "carol@sluice.test", "gone@sluice.test", "acme"]
    words = sl.cli("track", qid, "--data", sl.data).stdout.decode()
    assert f"message {qid} (inbound, tenant default)" in words
    assert "refused" in words and "550 5.1.1" in words and f"folder={folder}" in words

    # The API, with a key of the tenant that owns unassigned inbound mail.
    key = create_key(sl, "default")
    status, page, _ = api(sl, "GET", f"/v1/events?type=relayed&recipient=bob@sluice.test", key)
    assert status == 200 and [e["message"] for e in page["events"]] == [qid], page
    assert page["events"][0]["smtp_code"] == 250
    status, page, _ = api(sl, "GET", f"/v1/events?type=relayed&message={qid}", key)
    whom = [(e["id"], e["address"]) for e in page["events"]]
    assert whom == [(relayed["id"], "bob@sluice.test"), (relayed["id"], "carol@sluice.test")], page
    status, m, _ = api(sl, "GET", f"/v1/messages/{qid}", key)
    assert status == 200 and m["direction"] == "inbound"
    other = create_key(sl, "someone-else")
    assert api(sl, "GET", f"/v1/messages/{qid}", other)[0] == 404
    assert api(sl, "GET", "/v1/events?type=relayed", other)[1]["events"] == []

    # A release: the original's recipient says where its copy went back
    # from, and the released message is tracked on its own.
    out = sl.cli("quarantine", "release", "acme", folder, str(uid), "--data", sl.data).stdout.decode()
    def released():
        doc = track(sl, qid)
        ev = [e for e in events(rcpt(doc, "bob@sluice.test")) if e["type"] == "released"]
        return ev[0] if ev else None
    ev = wait_until(released, 20, interval=0.3, what="a released event")
    new_id = detail(ev)["queue_id"]
    assert new_id in out and detail(ev)["account"] == "acme" and detail(ev)["folder"] == folder
    assert rcpt(track(sl, qid), "bob@sluice.test")["status"] == "relayed", "a release is not a status"

    def new_relayed():
        doc = track(sl, new_id)
        r = rcpt(doc, "bob@sluice.test")
        return doc if r and r["status"] == "relayed" else None
    new = wait_until(new_relayed, 20, interval=0.3, what="the released message relayed")
    first = rcpt(new, "bob@sluice.test")["events"][0]
    assert first["type"] == "received" and detail(first)["released_from"] == qid


def test_deferred_until_expired_then_dsn(sink, sluice_factory):
    sink.control(rcpt=[{"match": "later", "reply": "451 4.2.1 mailbox busy, try later"}])
    sl = sluice_factory(relay=sink.addr, config={
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 1, "max_age_secs": 4}})
    qid = send(sl, "alice@sender.test", ["later@sluice.test"], "hi", "later-1@sender.test")

    def expired():
        r = rcpt(track(sl, qid), "later@sluice.test")
        return r if r and r["status"] == "expired" and "dsn_sent" in kinds(r) else None
    r = wait_until(expired, 40, interval=0.5, what="deferred until expired")
    # The same deferral again says nothing new: the first is recorded, and
    # the attempts made meanwhile are counted on the next event.
    deferred = [e for e in r["events"] if e["type"] == "deferred"]
    assert len(deferred) == 1 and deferred[0]["smtp_code"] == 451 and detail(deferred[0])["attempt"] == 1
    last = [e for e in r["events"] if e["type"] == "expired"][0]
    assert last["smtp_status"] == "4.2.1" and detail(last)["attempt"] > 2
    assert detail([e for e in r["events"] if e["type"] == "dsn_sent"][0])["action"] == "failed"


def test_an_accounts_tenant_owns_its_domains_inbound_mail(sink, sluice_factory):
    sl = sluice_factory(start=False, relay=sink.addr)
    sl.add_account("shopbox", "sluice.test")
    sl.cli("account", "tenant", "shopbox", "shop", "--data", sl.data)
    assert sl.cli("account", "tenant", "nobody", "shop", "--data", sl.data, check=False).returncode != 0
    sl.start()
    qid = send(sl, "alice@sender.test", ["bob@sluice.test"], "order", "order-1@sender.test")
    shop, default = create_key(sl, "shop"), create_key(sl, "default")
    wait_until(lambda: api(sl, "GET", f"/v1/messages/{qid}", shop)[0] == 200, 20, what="the shop's message")
    assert api(sl, "GET", f"/v1/messages/{qid}", default)[0] == 404
    assert "tenant shop" in sl.cli("track", qid, "--data", sl.data).stdout.decode()
