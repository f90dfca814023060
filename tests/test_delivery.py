"""Delivery to the downstream: retries while it is down, the release of
waiting mail when it is back, DSNs on permanent failure and on expiry."""

import email
import email.policy
import re
import time

import pytest

from helpers.mail import assert_relayed_exactly, send_raw, simple_message, token
from helpers.procs import wait_until

FAST_RETRY = {"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}}


def statuses(sl):
    return [(e["id"], [r["status"] for r in e["recipients"]]) for e in sl.queue_entries()]


def test_downstream_down_then_up(sink_factory, sluice_factory):
    sink = sink_factory()  # not started: nothing listens on its port yet
    sl = sluice_factory(relay=sink.addr, config=FAST_RETRY)
    tok = token()
    msg = simple_message(tok)
    qid = send_raw(sl.smtp, msg)

    def deferred():
        entries = sl.queue_entries()
        return entries and entries[0]["recipients"][0]["status"] == "deferred" and entries[0]
    entry = wait_until(deferred, 15, what="the message to show as deferred")
    assert entry["id"] == qid
    rcpt = entry["recipients"][0]
    assert rcpt["attempts"] >= 1 and rcpt["last_reply"], rcpt
    assert rcpt["last_reply"][0] == "4", f"a connection failure is temporary: {rcpt}"
    assert entry["next_attempt"] > 0

    sink.start()
    got = sink.wait_for(1, timeout=20)
    assert len(got) == 1
    assert_relayed_exactly(got[0].content, msg)
    sl.wait_queue_empty(10)
    assert sink.connections() >= 1
    log = sl.log_when(lambda t: "delivered" in t, what="the delivered attempt")
    assert re.search(r"delivery attempt.*status=\S*deferred", log) or "deferred" in log
    assert "delivered" in log


def test_many_messages_wait_and_all_arrive(sink_factory, sluice_factory):
    sink = sink_factory()
    sink.start()
    sl = sluice_factory(relay=sink.addr, config=FAST_RETRY)
    # Up first: one message goes straight through.
    send_raw(sl.smtp, simple_message(token()))
    sink.wait_for(1, timeout=20)
    sink.stop()

    toks = [token() for _ in range(12)]
    for t in toks:
        send_raw(sl.smtp, simple_message(t))
    wait_until(lambda: len(sl.queue_entries()) == 12 and all(
        r["status"] == "deferred" for e in sl.queue_entries() for r in e["recipients"]),
        20, what="12 deferred messages")
    time.sleep(2.5)  # a few more failed rounds while it is down
    sink.start()
    msgs = sink.wait_for(13, timeout=30)
    got = sorted(t for t in toks for m in msgs if t.encode() in m.content)
    assert got == sorted(toks), "every waiting message arrives exactly once"
    sl.wait_queue_empty(15)


def test_downstream_4xx_is_retried(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config=FAST_RETRY)
    sink.control(rcpt=[{"match": "later@", "reply": "450 4.2.1 Mailbox busy, try later"}])
    tok = token()
    send_raw(sl.smtp, simple_message(tok), rcpts=["later@sluice.test", "now@sluice.test"])
    first = sink.wait_for(1, timeout=20)[0]
    assert first.rcpts == ["now@sluice.test"]

    def later_deferred():
        e = sl.queue_entries()
        return e and {r["address"]: r["status"] for r in e[0]["recipients"]} == {
            "later@sluice.test": "deferred", "now@sluice.test": "delivered"}
    wait_until(later_deferred, 15, what="later@ deferred, now@ delivered")
    sink.control()
    msgs = sink.wait_for(2, timeout=20)
    assert msgs[1].rcpts == ["later@sluice.test"]
    assert msgs[1].content == first.content, "the retry sends the same bytes (same trace header)"
    sl.wait_queue_empty(10)


def parse_dsn(content):
    return email.message_from_bytes(content, policy=email.policy.compat32)


def dsn_fields(msg):
    """The per-message and per-recipient fields of the message/delivery-status part."""
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            # compat32 parses message/delivery-status into a list of Messages.
            blocks = payload if isinstance(payload, list) else [email.message_from_string(str(payload))]
            return [dict((k.lower(), v) for k, v in b.items()) for b in blocks]
    raise AssertionError("no message/delivery-status part")


def test_permanent_failure_sends_a_dsn_to_the_sender(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config=FAST_RETRY)
    sink.control(rcpt=[{"match": "nobody@", "reply": "550 5.1.1 <nobody@sluice.test>: No such user"}])
    tok = token()
    original = simple_message(tok)
    qid = send_raw(sl.smtp, original, mail_from="author@src.test",
                   rcpts=["nobody@sluice.test", "somebody@sluice.test"])
    msgs = sink.wait_for(2, timeout=30)
    orig = [m for m in msgs if m.mail_from == "author@src.test"]
    dsns = [m for m in msgs if m.mail_from == ""]
    assert len(orig) == 1 and orig[0].rcpts == ["somebody@sluice.test"], msgs
    assert len(dsns) == 1, msgs
    dsn = dsns[0]
    assert dsn.rcpts == ["author@src.test"]
    raw = dsn.content
    parsed = parse_dsn(raw)
    assert parsed.get_content_type() == "multipart/report", parsed.get_content_type()
    assert parsed.get_param("report-type") == "delivery-status", parsed["Content-Type"]
    assert re.search(rb"(?i)Content-Type:\s*multipart/report;\s*(?:\r\n[ \t]+)?[^\r\n]*report-type=\"?delivery-status",
                     raw), raw[:1000]
    fields = dsn_fields(parsed)
    per_msg, per_rcpt = fields[0], fields[1:]
    assert "reporting-mta" in per_msg, per_msg
    assert len(per_rcpt) == 1, f"only the failed recipient is reported: {per_rcpt}"
    r = per_rcpt[0]
    assert r.get("action", "").strip().lower() == "failed", r
    assert r.get("status", "").strip() == "5.1.1", r
    assert re.match(r"(?i)rfc822;\s*nobody@sluice\.test", r.get("final-recipient", "").strip()), r
    assert "550" in r.get("diagnostic-code", ""), r
    # The DSN names the original (its headers or all of it).
    assert tok.encode() in raw
    # DSNs are mail sluice itself sends: they have a Date and a Message-ID.
    assert parsed["Date"] and parsed["Message-ID"] and parsed["From"], raw[:800]
    sl.wait_queue_empty(15)
    sl.log_when(lambda t: qid in t, what="the original's queue id")


def test_no_dsn_for_the_null_sender(sink, sluice_factory):
    """Refused for good, from <>: no DSN, and not dropped either: a dead
    letter, held with the reply (issue 15)."""
    sl = sluice_factory(relay=sink.addr, config=FAST_RETRY)
    sink.control(rcpt=[{"match": "nobody@", "reply": "550 5.1.1 No such user"}])
    send_raw(sl.smtp, simple_message(token()), mail_from="", rcpts=["nobody@sluice.test"])
    [e] = wait_until(lambda: [e for e in sl.queue_entries() if e["dead_letter"]] or None, 20,
                     what="the refused message held as a dead letter")
    assert e["recipients"][0]["status"] == "held" and "550 5.1.1" in e["recipients"][0]["last_reply"]
    time.sleep(1)
    assert sink.messages() == [], "no DSN may go to <>"
    assert "DSN queued" not in sl.log()


def test_dsn_that_bounces_does_not_loop(sink, sluice_factory):
    """The DSN to a sender that itself is refused: no DSN about the DSN; the
    refused DSN is held as a dead letter, not dropped."""
    sl = sluice_factory(relay=sink.addr, config=FAST_RETRY)
    sink.control(rcpt=[{"match": "nobody@", "reply": "550 5.1.1 No such user"},
                       {"match": "gone@", "reply": "550 5.1.1 Sender gone too"}])
    send_raw(sl.smtp, simple_message(token()), mail_from="gone@src.test", rcpts=["nobody@sluice.test"])
    [e] = wait_until(lambda: [e for e in sl.queue_entries() if e["dead_letter"]] or None, 20,
                     what="the refused DSN held as a dead letter")
    assert e["from"] == "" and e["recipients"][0]["address"] == "gone@src.test"
    time.sleep(1)
    assert len(sl.queue_entries()) == 1, "the original is done; only its DSN is held"
    assert sink.messages() == []
    assert sl.log().count("DSN queued") == 1


def test_expiry_sends_a_delay_dsn_once_downstream_returns(sink_factory, sluice_factory):
    sink = sink_factory()
    sl = sluice_factory(relay=sink.addr, config={
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 1, "max_age_secs": 3}})
    tok = token()
    send_raw(sl.smtp, simple_message(tok), mail_from="author@src.test", rcpts=["late@sluice.test"])

    def only_dsn_left():
        e = sl.queue_entries()
        return len(e) == 1 and e[0]["from"] == "" and e
    entries = wait_until(only_dsn_left, 30, interval=0.3,
                         what="the original to expire, leaving its DSN queued")
    assert entries[0]["recipients"][0]["address"] == "author@src.test"
    sink.start()
    [dsn] = sink.wait_for(1, timeout=20)
    assert dsn.mail_from == "" and dsn.rcpts == ["author@src.test"]
    fields = dsn_fields(parse_dsn(dsn.content))[1:]
    assert fields[0].get("action", "").strip().lower() == "failed", fields
    assert fields[0].get("status", "").strip() == "4.4.7", fields
    assert "late@sluice.test" in fields[0].get("final-recipient", "")
    sl.wait_queue_empty(10)


def test_downstream_5xx_after_data_fails_every_recipient_with_one_dsn(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config=FAST_RETRY)
    # Reject the original's content, not the DSN's (sent from <>).
    sink.control(data="554 5.6.0 Content rejected", data_from="author@")
    tok = token()
    send_raw(sl.smtp, simple_message(tok), mail_from="author@src.test",
             rcpts=["one@sluice.test", "two@sluice.test"])
    [dsn] = sink.wait_for(1, timeout=20)
    assert dsn.mail_from == "" and dsn.rcpts == ["author@src.test"]
    fields = dsn_fields(parse_dsn(dsn.content))[1:]
    assert sorted(f.get("final-recipient", "").split(";")[-1].strip() for f in fields) == \
        ["one@sluice.test", "two@sluice.test"], fields
    assert all(f.get("status", "").strip() == "5.6.0" for f in fields), fields
    sl.wait_queue_empty(15)


def test_downstream_4xx_after_data_is_retried(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config=FAST_RETRY)
    sink.control(data="451 4.3.0 Try again later")
    tok = token()
    send_raw(sl.smtp, simple_message(tok))

    def deferred():
        e = sl.queue_entries()
        return e and e[0]["recipients"][0]["status"] == "deferred" and e[0]["recipients"][0]["attempts"] >= 2
    wait_until(deferred, 20, what="two deferred attempts")
    assert sink.messages() == []
    sink.control()
    [m] = sink.wait_for(1, timeout=20)
    assert tok.encode() in m.content
    sl.wait_queue_empty(10)
    assert "DSN queued" not in sl.log()
