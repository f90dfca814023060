"""kill -9 loops over the other promises (issue 15, item 7): copies filed
to the store, sends through the HTTP API, and VERP bounces attached, each
exactly once, nothing lost and nothing stranded. (The relay's own kill loop
is test_crash.py.)"""

import hashlib
import json
import os
import smtplib
import urllib.request

import pytest

from helpers.faults import no_stranded, under_kills
from helpers.procs import wait_until

BOUNCE_DOMAIN = "bounces.sluice.test"


def db(sl, sql, *args):
    return sl.rows(sql, *args)


def kill_message(mid):
    return (f"From: a@src.test\r\nTo: r@sluice.test\r\nSubject: kill {mid}\r\n"
            f"Message-ID: <{mid}>\r\n\r\nbody {mid}\r\n").encode()


def smtp_job(sl, mail_from=""):
    def work(mid):
        with smtplib.SMTP(*sl.smtp, timeout=10) as c:
            c.sendmail(mail_from, ["r@sluice.test"], kill_message(mid))
        return True
    return work


@pytest.mark.time_limit(240)
def test_every_accepted_copy_is_filed_exactly_once_under_kills(sink, sluice_factory, tmp_path):
    sl = sluice_factory(relay=sink.addr, config={
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
        "smtp": {"max_connections_per_ip": 1000}})
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    sl.cli("account", "add", "acme", "--password-file", str(pw), "--domain", "sluice.test", "--data", sl.data)
    sl.restart()
    mids = [f"tee{i}@kill.test" for i in range(600)]
    accepted, kills = under_kills(sl, mids, smtp_job(sl), seed="tee")
    assert kills >= 3 and accepted

    # A copy is the exact bytes received: its blob is their sha256.
    want = {hashlib.sha256(kill_message(m)).hexdigest() for m in accepted}

    def filed():
        return dict(db(sl, "SELECT blob, count(*) FROM messages GROUP BY blob"))
    wait_until(lambda: want <= set(filed()), 90, interval=1, what="every accepted copy in the store")
    sl.wait_queue_empty(60)
    # Once per accepted message (a client that resent a message whose 250
    # it lost made two accepted messages with the same bytes: two copies).
    twice = dict(db(sl, "SELECT queue_id, count(*) FROM messages GROUP BY queue_id HAVING count(*) > 1"))
    print(f"\ntee under kills: {len(accepted)} accepted, {kills} kills, {len(twice)} filed twice")
    assert not twice, f"copies filed more than once: {list(twice.items())[:5]}"
    assert not no_stranded(sl)


def inbound_recorded(sl):
    """The Message-IDs of inbound messages whose record has both their
    `received` (the message itself) and a `relayed` event."""
    rows = db(sl, "SELECT m.message_id FROM out_messages m WHERE m.direction = 'inbound' AND EXISTS "
                  "(SELECT 1 FROM events e WHERE e.message = m.id AND e.type = 'relayed')")
    return {r[0] for r in rows}


@pytest.mark.time_limit(240)
def test_every_accepted_message_ends_in_the_record_with_its_outcome_under_kills(sink, sluice_factory):
    """The front line's record is written without waiting (the 250 promised
    the spool), so a kill takes its last writes; the spool keeps what they
    were made from until the record has them, and the next start catches
    up: every accepted message ends `received` and `relayed`."""
    sl = sluice_factory(relay=sink.addr, config={
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
        "smtp": {"max_connections_per_ip": 1000}})
    mids = [f"rec{i}@kill.test" for i in range(600)]
    accepted, kills = under_kills(sl, mids, smtp_job(sl, "a@src.test"), seed="record")
    assert kills >= 3 and accepted
    sl.wait_queue_empty(60)
    wait_until(lambda: set(accepted) <= inbound_recorded(sl), 60, interval=1,
               what="every accepted message received and relayed in the record")
    caught = sl.log().count("caught up from the spool")
    print(f"\nrecord under kills: {len(accepted)} accepted, {kills} kills, {caught} starts caught up")
    assert not no_stranded(sl)


def api_send(sl, key, i):
    body = json.dumps({"from": "app@acme.test", "to": [f"r{i}@dest.test"], "subject": f"api {i}",
                       "text": "hello\n"}).encode()
    req = urllib.request.Request(sl.http + "/v1/messages", data=body, method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 202
        return json.loads(r.read())["id"]


@pytest.mark.time_limit(240)
def test_every_202_ends_with_one_final_event_under_kills(sink, sluice_factory):
    sl = sluice_factory(start=False, config={
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
        "outbound.mx_override": {"*": sink.addr}})
    key = sl.cli("apikey", "create", "--tenant", "acme", "--data", sl.data).stdout.decode().strip()
    sl.start()
    accepted, kills = under_kills(sl, list(range(300)), lambda i: api_send(sl, key, i), seed="api")
    assert kills >= 3 and accepted
    ids = set(accepted.values())

    def final():
        rows = db(sl, "SELECT message, status FROM out_recipients")
        return {m for m, s in rows if m in ids and s == "delivered"}
    wait_until(lambda: final() == ids, 90, interval=1, what="every 202'd recipient delivered")
    sl.wait_queue_empty(60)
    dup = db(sl, "SELECT message, idx, type, count(*) FROM events WHERE type IN ('delivered', 'queued') "
                 "GROUP BY message, idx, type HAVING count(*) > 1")
    print(f"\napi under kills: {len(ids)} accepted, {kills} kills, {len(dup)} duplicated events")
    assert not dup, dup[:5]
    assert not no_stranded(sl)


@pytest.mark.time_limit(300)
def test_every_verp_bounce_is_attached_exactly_once_under_kills(sink, sluice_factory):
    sl = sluice_factory(start=False, config={
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
        "smtp": {"max_connections_per_ip": 1000},
        "outbound": {"bounce_domain": BOUNCE_DOMAIN},
        "outbound.mx_override": {"*": sink.addr}})
    key = sl.cli("apikey", "create", "--tenant", "acme", "--data", sl.data).stdout.decode().strip()
    sl.start()
    sent = [api_send(sl, key, i) for i in range(200)]
    got = sink.wait_for(len(sent), timeout=60)
    by_rcpt = {m.rcpts[0]: m for m in got}
    sl.wait_queue_empty(30)

    def bounce(i):
        m = by_rcpt[f"r{i}@dest.test"]
        # Like every MTA's DSN, it has its own Message-ID: a bounce resent
        # because its 250 was lost in a kill is the same report.
        dsn = (f"From: MAILER-DAEMON@dest.test\r\nTo: {m.mail_from}\r\nSubject: Undelivered Mail\r\n"
               f"Message-ID: <dsn{i}@mx.dest.test>\r\n"
               f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; "
               f"boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b\r\n"
               f"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.dest.test\r\n\r\n"
               f"Final-Recipient: rfc822; r{i}@dest.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
               f"Diagnostic-Code: smtp; 550 5.1.1 <r{i}@dest.test>: User unknown\r\n--b--\r\n").encode()
        with smtplib.SMTP(*sl.smtp, timeout=10) as c:
            c.sendmail("", [m.mail_from], dsn)
        return True
    accepted, kills = under_kills(sl, list(range(len(sent))), bounce, seed="verp")
    assert kills >= 2 and accepted

    def bounced():
        return db(sl, "SELECT message, idx, count(*) FROM events WHERE type = 'bounced' GROUP BY message, idx")
    wait_until(lambda: len(bounced()) >= len(accepted), 90, interval=1, what="every bounce attached")
    sl.wait_queue_empty(60)
    twice = [r for r in bounced() if r[2] > 1]
    print(f"\nverp under kills: {len(accepted)} bounces accepted, {kills} kills, {len(twice)} attached twice")
    assert not twice, twice[:5]
    assert not no_stranded(sl)
