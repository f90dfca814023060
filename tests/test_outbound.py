"""Outbound for applications, end to end: an app posts to the HTTP API, the
aiosmtpd sink (the MX via the override map) receives each message with a
VERP return path; DSNs and ARF reports built from corpus samples come back
over SMTP to the VERP address and change the recipient's record; the
suppression list, tenant isolation, bad input, idempotency, batch, raw, and
submission by a tenant's user."""

import base64
import json
import os
import re
import smtplib
import socket
import time
import urllib.error
import urllib.request

import pytest

from helpers.net import tls_context
from helpers.procs import ROOT, to_toml, wait_until

BOUNCE_DOMAIN = "bounces.sluice.test"
VERP = re.compile(r"^bounce\+([a-z2-7]{45})@" + re.escape(BOUNCE_DOMAIN) + "$")
FIXTURES = os.path.join(ROOT, "crates", "decide", "tests", "fixtures")
PASSWORD = "correct horse battery staple"
# The one time format people read (issue 21): RFC 3339, UTC, milliseconds.
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def rfc3339_of(ms):
    """What `vocabulary::time::rfc3339_ms` makes of `ms`."""
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms % 1000:03d}Z"


def api(sl, method, path, key=None, body=None, headers=None, raw=None):
    """One HTTP request; returns (status, parsed JSON or text, headers)."""
    h = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    if key:
        h["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(sl.http + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            status, text, hdrs = r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        status, text, hdrs = e.code, e.read().decode(), e.headers
    try:
        return status, json.loads(text), hdrs
    except ValueError:
        return status, text, hdrs


def create_key(sl, tenant):
    out = sl.cli("apikey", "create", "--tenant", tenant, "--data", sl.data).stdout.decode().strip()
    assert out.startswith("sk_") and len(out) > 40, out
    return out


def send(sl, key, to, **fields):
    body = {"from": "app@acme.test", "to": to, "subject": fields.pop("subject", "hello"),
            "text": fields.pop("text", "Hello from the app.\n"), **fields}
    status, resp, _ = api(sl, "POST", "/v1/messages", key, body)
    assert status == 202, resp
    return resp


def message(sl, key, mid, **params):
    q = "&".join(f"{k}={v}" for k, v in params.items())
    status, resp, _ = api(sl, "GET", f"/v1/messages/{mid}" + (f"?{q}" if q else ""), key)
    assert status == 200, resp
    return resp


def wait_status(sl, key, mid, address, status, timeout=30):
    def check():
        m = message(sl, key, mid)
        r = [r for r in m["recipients"] if r["address"] == address.lower()]
        return r[0] if r and r[0]["status"] == status else None
    return wait_until(check, timeout, interval=0.2, what=f"{address} to become {status}")


def delivered_to(sink, address):
    return sink.wait_for(1, timeout=30, match=lambda m: address in m.rcpts)[-1]


def fixture(kind, name, replace):
    with open(os.path.join(FIXTURES, kind, name), "rb") as f:
        raw = f.read()
    for old, new in replace.items():
        raw = raw.replace(old.encode(), new.encode())
    return raw


def feed(sl, to, raw):
    """Sends a report to the MX listener from the null sender."""
    with smtplib.SMTP(*sl.smtp, timeout=15) as c:
        assert c.sendmail("", [to], raw) == {}


@pytest.fixture
def outbound(sink, sluice_factory):
    config = {
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
        "http": {"max_body_bytes": 256 * 1024},
        "outbound": {"bounce_domain": BOUNCE_DOMAIN},
        "outbound.mx_override": {"*": sink.addr},
    }
    sl = sluice_factory(start=False, config=config)
    # The one-click unsubscribe links point at this server's own API.
    config["http"]["public_url"] = sl.http
    with open(sl.config_path, "w") as f:
        f.write(to_toml(config))
    keys = {"acme": create_key(sl, "acme"), "other": create_key(sl, "other")}
    out = sl.cli("dkim", "generate", "acme.test", "--selector", "s1", "--data", sl.data).stdout.decode()
    name, record = out.split(" IN TXT ", 1)
    assert name == "s1._domainkey.acme.test", out
    keys["dkim_txt"] = "".join(re.findall(r'"([^"]*)"', record))
    assert keys["dkim_txt"].startswith("v=DKIM1; k=rsa; p="), out
    sl.start()
    return sl, sink, keys


def dkim_verifies(content, txt):
    """dkimpy (an independent implementation) checks the signature against
    the published record, served by a stand-in DNS function."""
    import dkim
    return dkim.verify(content, dnsfunc=lambda name, timeout=5: txt.encode()
                       if name in (b"s1._domainkey.acme.test.", "s1._domainkey.acme.test.") else None)


def test_send_verp_bounce_suppress_and_track(outbound):
    sl, sink, keys = outbound
    key = keys["acme"]
    sent = send(sl, key, ["alice@dest.test", "not-an-address"], bcc=["audit@dest.test"], tags=["welcome"])
    assert [(r["address"], r["status"]) for r in sent["recipients"]] == [
        ("alice@dest.test", "queued"), ("audit@dest.test", "queued"), ("not-an-address", "invalid")]
    got = delivered_to(sink, "alice@dest.test")
    m = VERP.match(got.mail_from)
    assert m, got.mail_from
    assert got.rcpts == ["alice@dest.test"], "one transaction per recipient: each has its own return path"
    assert got.header("Subject") == "hello"
    assert b"audit@dest.test" not in got.content, "Bcc must not be written into the message"
    assert got.header("DKIM-Signature") and "d=acme.test" in got.header("DKIM-Signature")
    assert dkim_verifies(got.content, keys["dkim_txt"]), got.content[:600]
    assert not dkim_verifies(got.content.replace(b"Hello from the app", b"Hello from evil"), keys["dkim_txt"])
    audit = delivered_to(sink, "audit@dest.test")
    assert VERP.match(audit.mail_from) and audit.mail_from != got.mail_from

    r = wait_status(sl, key, sent["id"], "alice@dest.test", "delivered")
    ev = r["events"][-1]
    assert ev["type"] == "delivered" and ev["smtp_code"] == 250 and ev["remote"] == sink.addr, ev
    delivered_at = ev["at"]
    assert ev["at_rfc3339"] == rfc3339_of(ev["at"]), ev
    m = message(sl, key, sent["id"])
    assert m["created_at_rfc3339"] == rfc3339_of(m["created_at"]), m
    assert all(r["updated_at_rfc3339"] == rfc3339_of(r["updated_at"]) for r in m["recipients"]), m

    # A Postfix DSN from the corpus, about alice, back to her VERP address.
    mid = message(sl, key, sent["id"])["message_id"]
    dsn = fixture("bounces", "lhost-postfix-05.eml",
                  {"kijitora@example.org": "alice@dest.test", "FFFFFFFF.0000000@example.co.jp": mid})
    time.sleep(0.05)
    feed(sl, got.mail_from, dsn)
    r = wait_status(sl, key, sent["id"], "alice@dest.test", "bounced")
    assert r["reason"] == "userunknown", r
    bounce = r["events"][-1]
    assert bounce["smtp_status"] == "4.1.1" and "User unknown" in bounce["smtp_text"], bounce
    assert bounce["remote"] == "excalibur.example.org", bounce

    # Point in time: before the bounce it was delivered.
    then = message(sl, key, sent["id"], as_of=delivered_at)
    assert [x["status"] for x in then["recipients"] if x["address"] == "alice@dest.test"] == ["delivered"]

    status, s, _ = api(sl, "GET", "/v1/suppressions/alice@dest.test", key)
    assert status == 200 and s["source"] == "bounced" and s["reason"] == "userunknown", s
    assert s["created_at_rfc3339"] == rfc3339_of(s["created_at"]) and s["expires_at_rfc3339"] is None, s
    before = sink.count()
    again = send(sl, key, ["Alice@Dest.test", "bob@dest.test"])
    assert again["recipients"][0]["address"] == "bob@dest.test"
    assert again["recipients"][0]["status"] == "queued"
    assert again["recipients"][1]["status"] == "suppressed"
    assert "userunknown" in again["recipients"][1]["reason"]
    delivered_to(sink, "bob@dest.test")
    time.sleep(0.5)
    assert sink.count() == before + 1, "the suppressed address must not be attempted"

    status, hist, _ = api(sl, "GET", "/v1/recipients/alice@dest.test", key)
    assert status == 200 and hist["suppression"]["source"] == "bounced"
    assert [e["type"] for e in hist["events"]] == ["suppressed", "bounced", "delivered", "queued"], hist

    # The event log: filters and pages.
    status, page, _ = api(sl, "GET", "/v1/events?tag=welcome&limit=2", key)
    assert status == 200 and len(page["events"]) == 2 and page["next_cursor"], page
    status, page2, _ = api(sl, "GET", f"/v1/events?tag=welcome&limit=100&cursor={page['next_cursor']}", key)
    types = [e["type"] for e in page["events"] + page2["events"]]
    assert sorted(types) == sorted(["queued", "queued", "invalid", "delivered", "delivered", "bounced"]), types
    status, bounced, _ = api(sl, "GET", "/v1/events?type=bounced", key)
    assert [e["address"] for e in bounced["events"]] == ["alice@dest.test"], bounced

    out = sl.cli("track", "alice@dest.test", "--data", sl.data).stdout.decode()
    assert "SUPPRESSED" in out and "bounced" in out and "userunknown" in out, out
    assert f"SUPPRESSED since {rfc3339_of(s['created_at'])}: userunknown" in out, out
    assert f"  {rfc3339_of(delivered_at)}  delivered" in out, out
    out = sl.cli("track", sent["id"], "--data", sl.data).stdout.decode()
    assert "alice@dest.test (to): bounced (userunknown)" in out, out
    assert "audit@dest.test (bcc): delivered" in out, out


def test_a_dkim_key_generated_while_running_signs_without_a_restart(outbound):
    """Issue 21: a key `sluice dkim generate` adds to a running server signs
    within seconds, and a message sent unsigned before it is named at WARN."""
    sl, sink, keys = outbound
    key = keys["acme"]
    send(sl, key, ["before@dest.test"], **{"from": "app@late.test"})
    got = delivered_to(sink, "before@dest.test")
    assert not got.header("DKIM-Signature"), got.content[:600]
    sl.log_when(lambda t: re.search(r"WARN.*unsigned.*late\.test", t), what="the unsigned WARN")

    out = sl.cli("dkim", "generate", "late.test", "--selector", "s9", "--data", sl.data).stdout.decode()
    txt = "".join(re.findall(r'"([^"]*)"', out.split(" IN TXT ", 1)[1]))

    def verifies(content):
        import dkim
        return dkim.verify(content, dnsfunc=lambda name, timeout=5: txt.encode()
                           if name in (b"s9._domainkey.late.test.", "s9._domainkey.late.test.") else None)

    def signed():
        n = f"after{time.monotonic_ns()}@dest.test"
        send(sl, key, [n], **{"from": "app@late.test"})
        m = delivered_to(sink, n)
        return m if m.header("DKIM-Signature") else None

    got = wait_until(signed, 10, interval=0.5, what="a message signed by the new key")
    assert "d=late.test" in got.header("DKIM-Signature") and verifies(got.content), got.content[:600]
    assert sl.running


def test_block_bounce_does_not_suppress_and_complaint_does(outbound):
    sl, sink, keys = outbound
    key = keys["acme"]
    sent = send(sl, key, ["bob@dest.test", "carol@dest.test"])
    bob = delivered_to(sink, "bob@dest.test")
    carol = delivered_to(sink, "carol@dest.test")
    wait_status(sl, key, sent["id"], "carol@dest.test", "delivered")

    # A block (Microsoft "banned sending IP"): bounced, reason blocked, not suppressed.
    feed(sl, bob.mail_from, fixture("bounces", "rhost-microsoft-01.eml", {"kijitora@example.com": "bob@dest.test"}))
    r = wait_status(sl, key, sent["id"], "bob@dest.test", "bounced")
    assert r["reason"] == "blocked", r
    status, body, _ = api(sl, "GET", "/v1/suppressions/bob@dest.test", key)
    assert status == 404, body
    assert send(sl, key, ["bob@dest.test"])["recipients"][0]["status"] == "queued"

    # An auto-reply is noted and changes nothing; an unsubscribe request suppresses.
    feed(sl, bob.mail_from, fixture("autoreplies", "sisimai-rfc3834-01.eml", {}))
    wait_until(lambda: "autoreplied" in [e["type"] for e in message(sl, key, sent["id"])["recipients"][0]["events"]],
               20, what="the auto-reply to be attached")
    unsub = (b"From: Bob <bob@dest.test>\r\nTo: " + bob.mail_from.encode() + b"\r\nSubject: unsubscribe\r\n"
             b"Message-ID: <u1@dest.test>\r\n\r\nPlease remove me from your list.\r\n")
    feed(sl, bob.mail_from, unsub)
    r = wait_status(sl, key, sent["id"], "bob@dest.test", "unsubscribed")
    status, s, _ = api(sl, "GET", "/v1/suppressions/bob@dest.test", key)
    assert status == 200 and s["source"] == "unsubscribed", s

    # An ARF complaint (AOL): complained, suppressed.
    feed(sl, carol.mail_from, fixture("complaints", "flanker-aol.eml", {"redacted@aol.com": "carol@dest.test"}))
    r = wait_status(sl, key, sent["id"], "carol@dest.test", "complained")
    assert r["reason"] == "abuse", r
    status, s, _ = api(sl, "GET", "/v1/suppressions/carol@dest.test", key)
    assert status == 200 and s["source"] == "complained", s
    assert send(sl, key, ["carol@dest.test"])["recipients"][0]["status"] == "suppressed"


def test_deferred_then_delivered_and_rejected(outbound):
    sl, sink, keys = outbound
    key = keys["acme"]
    sink.control(rcpt=[{"match": "dave@", "reply": "451 4.2.1 Mailbox busy, try again"},
                       {"match": "erin@", "reply": "550 5.1.1 <erin@dest.test>: No such user"}])
    sent = send(sl, key, ["dave@dest.test", "erin@dest.test"])
    wait_status(sl, key, sent["id"], "dave@dest.test", "deferred")
    r = wait_status(sl, key, sent["id"], "erin@dest.test", "rejected")
    assert r["reason"] == "userunknown" and r["events"][-1]["smtp_code"] == 550, r
    status, s, _ = api(sl, "GET", "/v1/suppressions/erin@dest.test", key)
    assert status == 200 and s["source"] == "rejected", s
    sink.control()
    r = wait_status(sl, key, sent["id"], "dave@dest.test", "delivered", timeout=30)
    kinds = [(e["type"], e["smtp_code"]) for e in r["events"]]
    assert kinds[0] == ("queued", None) and kinds[-1] == ("delivered", 250), kinds
    deferred = [e for e in r["events"] if e["type"] == "deferred"]
    assert deferred and deferred[0]["smtp_code"] == 451 and deferred[0]["smtp_status"] == "4.2.1", deferred
    assert "Mailbox busy" in deferred[0]["smtp_text"]
    assert len([m for m in sink.messages() if "dave@dest.test" in m.rcpts]) == 1


def test_forged_token_is_not_attached_and_message_id_matching(outbound):
    sl, sink, keys = outbound
    key = keys["acme"]
    sent = send(sl, key, ["frank@dest.test"])
    got = delivered_to(sink, "frank@dest.test")
    wait_status(sl, key, sent["id"], "frank@dest.test", "delivered")
    token = VERP.match(got.mail_from).group(1)
    forged = token[:-1] + ("a" if token[-1] != "a" else "b")
    dsn = fixture("bounces", "lhost-postfix-05.eml", {"kijitora@example.org": "frank@dest.test"})
    feed(sl, f"bounce+{forged}@{BOUNCE_DOMAIN}", dsn)
    wait_until(lambda: "forged or foreign VERP token" in sl.log(), 20, what="the forged token to be logged")
    assert message(sl, key, sent["id"])["recipients"][0]["status"] == "delivered"
    assert api(sl, "GET", "/v1/suppressions/frank@dest.test", key)[0] == 404

    # Without a token: matched by the returned Message-ID and the recipient.
    mid = message(sl, key, sent["id"])["message_id"]
    dsn = fixture("bounces", "lhost-postfix-05.eml",
                  {"kijitora@example.org": "frank@dest.test", "FFFFFFFF.0000000@example.co.jp": mid})
    feed(sl, f"returns@{BOUNCE_DOMAIN}", dsn)
    r = wait_status(sl, key, sent["id"], "frank@dest.test", "bounced")
    assert r["reason"] == "userunknown"


def test_tenant_isolation(outbound):
    sl, sink, keys = outbound
    a, b = keys["acme"], keys["other"]
    sent = send(sl, a, ["gail@dest.test"])
    delivered_to(sink, "gail@dest.test")
    status, s, _ = api(sl, "POST", "/v1/suppressions", a, {"address": "held@dest.test", "reason": "asked us"})
    assert status == 201 and s["source"] == "manual", s

    assert api(sl, "GET", f"/v1/messages/{sent['id']}", b)[0] == 404
    assert api(sl, "GET", "/v1/recipients/gail@dest.test", b)[0] == 404
    assert api(sl, "GET", "/v1/suppressions/held@dest.test", b)[0] == 404
    assert api(sl, "DELETE", "/v1/suppressions/held@dest.test", b)[0] == 404
    status, lst, _ = api(sl, "GET", "/v1/suppressions", b)
    assert status == 200 and lst["suppressions"] == [], lst
    status, ev, _ = api(sl, "GET", "/v1/events", b)
    assert status == 200 and ev["events"] == [], ev
    status, csv, _ = api(sl, "GET", "/v1/suppressions/export", a)
    assert status == 200 and "held@dest.test,asked us,manual," in csv, csv
    row = [line.split(",") for line in csv.splitlines() if line.startswith("held@")][0]
    assert RFC3339_MS.match(row[3]) and row[4] == "", row
    # B's suppression list is B's: sending to held@ from B goes out.
    assert send(sl, b, ["held@dest.test"])["recipients"][0]["status"] == "queued"
    assert send(sl, a, ["held@dest.test"])["recipients"][0]["status"] == "suppressed"
    assert api(sl, "DELETE", "/v1/suppressions/held@dest.test", a)[0] == 204
    assert send(sl, a, ["held@dest.test"])["recipients"][0]["status"] == "queued"
    # The CLI sees the same list.
    sl.cli("suppress", "add", "cli@dest.test", "--tenant", "acme", "--reason", "by hand", "--data", sl.data)
    out = sl.cli("suppress", "export", "--tenant", "acme", "--data", sl.data).stdout.decode()
    assert "cli@dest.test,by hand,manual" in out, out
    row = [line.split(",") for line in out.splitlines() if line.startswith("cli@")][0]
    assert RFC3339_MS.match(row[3]) and row[4] == "", row
    status, lst, _ = api(sl, "GET", "/v1/suppressions", a)
    assert all(RFC3339_MS.match(x["created_at_rfc3339"]) for x in lst["suppressions"]), lst
    assert api(sl, "GET", "/v1/suppressions/cli@dest.test", a)[0] == 200


def test_bad_input_is_refused_with_clear_4xx(outbound):
    sl, _, keys = outbound
    key = keys["acme"]
    good = {"from": "app@acme.test", "to": ["x@dest.test"], "subject": "s", "text": "t"}

    def with_(**kw):
        return {**good, **kw}

    cases = [
        (dict(key=None, body=good), 401, None),
        (dict(key="sk_nope", body=good), 401, None),
        (dict(raw=b'{"from": "a@b.test", "to": [', headers={"Content-Type": "application/json"}), 400, None),
        (dict(raw=json.dumps(good).encode(), headers={"Content-Type": "text/plain"}), 415, None),
        (dict(raw=b"{" + b" " * (300 * 1024) + b"}", headers={"Content-Type": "application/json"}), 413, None),
        (dict(body=with_(colour="blue")), 422, None),
        (dict(body=with_(**{"from": "nobody"})), 422, "from"),
        (dict(body=with_(to=["nope", "also nope"])), 422, "to[0]"),
        (dict(body=with_(to=[])), 422, "to"),
        (dict(body=with_(subject="hi\r\nBcc: victim@else.test")), 422, "subject"),
        (dict(body=with_(headers={"X-Note": "a\nBcc: victim@else.test"})), 422, "headers.X-Note"),
        (dict(body=with_(headers={"Bcc": "victim@else.test"})), 422, "headers.Bcc"),
        (dict(body=with_(headers={"Bad Name": "v"})), 422, "headers.Bad Name"),
        (dict(body=with_(**{"from": {"email": "app@acme.test", "name": "A\r\nB"}})), 422, "from"),
        (dict(body=with_(attachments=[{"filename": "a.txt", "content_base64": "!!!"}])), 422,
         "attachments[0].content_base64"),
        (dict(body=with_(text=None, html=None)), 422, "text"),
        (dict(body=with_(tags=["ok", "x" * 200])), 422, "tags[1]"),
    ]
    for req, want, field in cases:
        k = req.pop("key", key)
        status, body, _ = api(sl, "POST", "/v1/messages", k, **req)
        assert status == want, (req, status, body)
        assert isinstance(body, dict) and body["error"]["code"] and body["error"]["message"], body
        if field:
            assert body["error"]["field"] == field, body
    for path, want in [("/v1/events?type=bounce", 422), ("/v1/events?since=yesterday", 422),
                       ("/v1/messages/0123?as_of=never", 422), ("/v1/nothing", 404),
                       ("/v1/events?cursor=abc", 422), ("/v1/recipients/x@y.test?limit=-1", 422),
                       ("/v1/messages/ffffffffffffffffffffffffffffffff", 404)]:
        status, body, _ = api(sl, "GET", path, key)
        assert status == want and body["error"]["code"], (path, status, body)
    # Garbage on the socket: a 400, and the server is still there.
    with socket.create_connection(("127.0.0.1", sl.http_port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01 GARBAGE /\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400"), "garbage request line"
    assert api(sl, "GET", "/v1/openapi.json")[0] == 200
    assert "panicked" not in sl.log()


def test_idempotency_batch_raw_and_openapi(outbound):
    sl, sink, keys = outbound
    key = keys["acme"]
    body = {"from": "app@acme.test", "to": ["ivan@dest.test"], "subject": "once", "text": "t"}
    s1, r1, _ = api(sl, "POST", "/v1/messages", key, body, headers={"Idempotency-Key": "order-42"})
    s2, r2, h2 = api(sl, "POST", "/v1/messages", key, body, headers={"Idempotency-Key": "order-42"})
    assert s1 == s2 == 202 and r1 == r2, (r1, r2)
    assert h2.get("Idempotent-Replayed") == "true"
    s3, r3, _ = api(sl, "POST", "/v1/messages", key, {**body, "subject": "twice"},
                    headers={"Idempotency-Key": "order-42"})
    assert s3 == 422 and r3["error"]["code"] == "idempotency_mismatch", r3
    # Another tenant's key space is its own.
    s4, r4, _ = api(sl, "POST", "/v1/messages", keys["other"], body, headers={"Idempotency-Key": "order-42"})
    assert s4 == 202 and r4["id"] != r1["id"]
    sink.wait_for(2, match=lambda m: "ivan@dest.test" in m.rcpts)
    time.sleep(0.5)
    assert len([m for m in sink.messages() if "ivan@dest.test" in m.rcpts]) == 2

    # The same key from eight clients at once: one message goes out; the
    # others get the first answer (replayed) or 409 while it is in flight.
    from concurrent.futures import ThreadPoolExecutor
    race = {**body, "to": ["race@dest.test"]}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: api(sl, "POST", "/v1/messages", key, race,
                                              headers={"Idempotency-Key": "race-1"})[:2], range(8)))
    ids = {r["id"] for status, r in answers if status == 202}
    assert len(ids) == 1 and all(status in (202, 409) for status, _ in answers), answers
    delivered_to(sink, "race@dest.test")
    time.sleep(1.0)
    assert len([m for m in sink.messages() if "race@dest.test" in m.rcpts]) == 1

    batch = {"messages": [
        {"from": "app@acme.test", "to": "judy@dest.test", "subject": "b1", "text": "1"},
        {"from": "app@acme.test", "to": "kim@dest.test", "subject": "b2\r\nX: y", "text": "2"},
        {"from": "app@acme.test", "to": ["leo@dest.test"], "subject": "b3", "html": "<p>3</p>"},
    ]}
    status, res, _ = api(sl, "POST", "/v1/messages/batch", key, batch)
    assert status == 202, res
    out = res["results"]
    assert out[0]["recipients"][0]["status"] == "queued" and out[2]["recipients"][0]["status"] == "queued"
    assert out[1]["error"]["field"] == "messages[1].subject", out[1]
    delivered_to(sink, "judy@dest.test")
    delivered_to(sink, "leo@dest.test")

    raw = (b"From: App <app@acme.test>\r\nTo: mia@dest.test\r\nSubject: raw one\r\n"
           b"Message-ID: <raw-1@acme.test>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
           b"\r\nExact bytes.\r\n.leading dot\r\n")
    status, res, _ = api(sl, "POST", "/v1/messages/raw?from=app@acme.test&to=mia@dest.test&tag=raw", key,
                         raw=raw, headers={"Content-Type": "message/rfc822"})
    assert status == 202 and res["recipients"][0]["status"] == "queued", res
    got = delivered_to(sink, "mia@dest.test")
    assert got.content.endswith(raw), got.content
    assert message(sl, key, res["id"])["message_id"] == "raw-1@acme.test"

    status, doc, _ = api(sl, "GET", "/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    from openapi_spec_validator import validate
    validate(doc)
    for path in ["/v1/messages", "/v1/messages/raw", "/v1/messages/batch", "/v1/messages/{id}",
                 "/v1/recipients/{address}", "/v1/events", "/v1/suppressions", "/v1/suppressions/{address}"]:
        assert path in doc["paths"], path


def test_submission_by_a_tenant_user_takes_the_same_path(outbound):
    sl, sink, keys = outbound
    key = keys["acme"]
    sl.add_user("mailer", PASSWORD)
    sl.cli("user", "add", "mailer", "--password-file", os.path.join(sl.workdir, "pw-mailer"),
           "--tenant", "acme", "--data", sl.data)
    api(sl, "POST", "/v1/suppressions", key, {"address": "gone@dest.test", "reason": "left"})
    msg = (b"From: Mailer <mailer@acme.test>\r\nTo: nina@dest.test\r\nSubject: via smtp\r\n"
           b"\r\nSubmitted.\r\n")
    with smtplib.SMTP(*sl.submission, timeout=15) as c:
        c.starttls(context=tls_context())
        c.login("mailer", PASSWORD)
        refused = c.sendmail("mailer@acme.test", ["nina@dest.test", "gone@dest.test"], msg)
    # A suppressed recipient is refused at RCPT, with the entry's reason.
    assert list(refused) == ["gone@dest.test"] and refused["gone@dest.test"][0] == 550, refused
    assert b"5.7.1 <gone@dest.test> is suppressed: left (manual)" in refused["gone@dest.test"][1], refused
    got = delivered_to(sink, "nina@dest.test")
    assert VERP.match(got.mail_from), got.mail_from
    assert got.header("Message-ID"), "a submission server adds a Message-ID when there is none"
    wait_until(lambda: [e["type"] for e in api(sl, "GET", "/v1/events?recipient=nina@dest.test", key)[1]["events"]]
               == ["queued", "delivered"], 20, what="nina's events")
    time.sleep(0.3)
    assert not [m for m in sink.messages() if "gone@dest.test" in m.rcpts]


def test_smart_host_gets_everything_and_250_means_sent(sink, sluice_factory):
    sl = sluice_factory(start=False, config={"outbound": {"bounce_domain": BOUNCE_DOMAIN}},
                        extra_args=["--smart-host", sink.addr])
    key = create_key(sl, "acme")
    sl.start()
    sent = send(sl, key, ["oscar@far.example", "pia@elsewhere.example"])
    for a in ["oscar@far.example", "pia@elsewhere.example"]:
        assert VERP.match(delivered_to(sink, a).mail_from)
        r = wait_status(sl, key, sent["id"], a, "sent")
        assert r["events"][-1]["smtp_code"] == 250 and r["events"][-1]["remote"] == sink.addr


@pytest.mark.time_limit(300)
def test_fuzzing_the_api_from_its_openapi_document_never_gets_a_server_error(outbound):
    """schemathesis generates requests from /v1/openapi.json (valid and
    invalid: wrong types, huge strings, odd encodings) with a valid key; no
    answer may be a 5xx and the server must not panic."""
    import shutil
    import subprocess
    sl, _, keys = outbound
    exe = shutil.which("schemathesis")
    assert exe, "schemathesis is installed by scripts/install-test-deps.sh"
    p = subprocess.run([exe, "run", f"{sl.http}/v1/openapi.json", "-H", f"Authorization: Bearer {keys['acme']}",
                        "--checks", "not_a_server_error", "-n", "15", "--seed", "7", "--request-timeout", "10",
                        "--suppress-health-check=all"], capture_output=True, text=True, timeout=280)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert re.search(r"(\d+) generated, \1 passed", p.stdout), p.stdout[-2000:]
    assert "panicked" not in sl.log()


def test_smart_host_with_starttls_and_auth(tmp_path, sink_factory, sluice_factory):
    """aiosmtpd as an email provider's relay: STARTTLS required, then AUTH."""
    import subprocess
    cert, key = tmp_path / "relay.pem", tmp_path / "relay.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=relay.test",
                    "-keyout", str(key), "-out", str(cert), "-days", "2"], check=True, capture_output=True)
    relay = sink_factory("relay", extra_args=["--tls-cert", str(cert), "--tls-key", str(key),
                                              "--auth", "app-user:relay secret"])
    relay.start()
    (tmp_path / "relay.pass").write_text("relay secret\n")
    (tmp_path / "wrong.pass").write_text("not it\n")

    def serve(password_file):
        sl = sluice_factory(start=False, config={
            "queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
            "outbound": {"bounce_domain": BOUNCE_DOMAIN, "smart_host": relay.addr, "smart_host_tls": "starttls",
                         "smart_host_verify": False, "smart_host_user": "app-user",
                         "smart_host_password_file": str(password_file)}})
        key = create_key(sl, "acme")
        sl.start()
        return sl, key

    sl, k = serve(tmp_path / "relay.pass")
    sent = send(sl, k, ["quinn@far.example"])
    got = delivered_to(relay, "quinn@far.example")
    assert got.meta["tls"] and got.meta["authenticated"], got.meta
    assert VERP.match(got.mail_from)
    r = wait_status(sl, k, sent["id"], "quinn@far.example", "sent")
    assert r["events"][-1]["tls"], r["events"][-1]
    # After the stop: every line the server logged is written out by then.
    sl.stop()
    assert "relay secret" not in sl.log()

    sl2, k2 = serve(tmp_path / "wrong.pass")
    sent = send(sl2, k2, ["rosa@far.example"])
    r = wait_status(sl2, k2, sent["id"], "rosa@far.example", "deferred")
    assert r["events"][-1]["smtp_status"] == "4.7.8", r["events"][-1]
    assert not [m for m in relay.messages() if "rosa@far.example" in m.rcpts]
    sl2.stop()
    assert "not it" not in sl2.log()


def test_rate_limit_per_tenant_is_429(sink, sluice_factory):
    sl = sluice_factory(start=False, config={"http": {"rate_per_sec": 5, "request_timeout_secs": 2},
                                             "outbound.mx_override": {"*": sink.addr}})
    a, b = create_key(sl, "acme"), create_key(sl, "other")
    sl.start()
    # A client that trickles its body is cut off with 408.
    with socket.create_connection(("127.0.0.1", sl.http_port), timeout=15) as s:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + a.encode()
                  + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"from\"")
        started = time.monotonic()
        assert s.recv(100).startswith(b"HTTP/1.1 408"), "a trickled request must time out"
        assert time.monotonic() - started < 10
    answers = [api(sl, "GET", "/v1/events", a)[:2] for _ in range(30)]
    limited = [body for status, body in answers if status == 429]
    assert limited and limited[0]["error"]["code"] == "rate_limited", answers[-1]
    assert sum(1 for status, _ in answers if status == 200) >= 5
    assert api(sl, "GET", "/v1/events", b)[0] == 200, "another tenant has its own budget"


def test_per_domain_rate_limit_paces_delivery(sink, sluice_factory):
    sl = sluice_factory(start=False, config={"outbound": {"bounce_domain": BOUNCE_DOMAIN, "rate_per_domain": 2},
                                             "outbound.mx_override": {"*": sink.addr}})
    key = create_key(sl, "acme")
    sl.start()
    for i in range(6):
        send(sl, key, [f"slow{i}@paced.example"])
    send(sl, key, ["fast@other.example"])
    got = sink.wait_for(7, timeout=30)
    paced = sorted(m.meta["received_at"] for m in got if "paced.example" in m.rcpts[0])
    other = [m.meta["received_at"] for m in got if "other.example" in m.rcpts[0]]
    # 2 per second with a burst of 2: six messages take at least 1.5 s.
    assert paced[-1] - paced[0] >= 1.5, paced
    assert other[0] < paced[-1], "another domain is not held up by this one's limit"


def test_api_keys_can_be_listed_and_revoked(sink, sluice_factory):
    sl = sluice_factory(start=False)
    old, new = create_key(sl, "acme"), create_key(sl, "acme")
    listed = sl.cli("apikey", "list", "--tenant", "acme", "--data", sl.data).stdout.decode()
    assert listed.count("active") == 2 and old not in listed, "only the first characters are shown"
    assert all(RFC3339_MS.match(line.split("  created ")[1].split()[0]) for line in listed.splitlines()), listed
    sl.cli("apikey", "revoke", old[:11], "--tenant", "acme", "--data", sl.data)
    listed = sl.cli("apikey", "list", "--tenant", "acme", "--data", sl.data).stdout.decode()
    assert listed.count("active") == 1 and "revoked" in listed, listed
    assert sl.cli("apikey", "revoke", new[:11], "--tenant", "other", "--data", sl.data, check=False).returncode == 1
    sl.start()
    status, body, _ = api(sl, "GET", "/v1/events", old)
    assert status == 401 and body["error"]["code"] == "unauthorized", body
    assert api(sl, "GET", "/v1/events", new)[0] == 200


def test_list_unsubscribe_one_click(outbound):
    """RFC 8058: each recipient gets its own signed List-Unsubscribe (mailto
    to its VERP address, and the one-click link); a POST to the link
    unsubscribes exactly that recipient; a GET only shows a page."""
    sl, sink, keys = outbound
    key = keys["acme"]
    sent = send(sl, key, ["uma@dest.test", "vic@dest.test"], list_unsubscribe=True)
    uma, vic = delivered_to(sink, "uma@dest.test"), delivered_to(sink, "vic@dest.test")
    lu = uma.header("List-Unsubscribe")
    url = re.search(r"<(http://[^>]+)>", lu).group(1)
    token = VERP.match(uma.mail_from).group(1)
    assert url == f"{sl.http}/v1/unsubscribe/{token}", lu
    assert f"<mailto:{uma.mail_from}?subject=unsubscribe>" in lu, lu
    assert uma.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert vic.header("List-Unsubscribe") != lu, "each recipient has its own link"
    assert "list-unsubscribe" in uma.header("DKIM-Signature").lower(), "RFC 8058: the headers are signed"
    assert dkim_verifies(uma.content, keys["dkim_txt"]) and dkim_verifies(vic.content, keys["dkim_txt"])

    status, page, _ = api(sl, "GET", url[len(sl.http):])
    assert status == 200 and "uma@dest.test" in page, page
    wait_status(sl, key, sent["id"], "uma@dest.test", "delivered")
    status, _, _ = api(sl, "POST", url[len(sl.http):], raw=b"List-Unsubscribe=One-Click",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    r = wait_status(sl, key, sent["id"], "uma@dest.test", "unsubscribed")
    assert r["reason"] == "one-click", r
    assert api(sl, "GET", "/v1/suppressions/uma@dest.test", key)[1]["source"] == "unsubscribed"
    assert message(sl, key, sent["id"])["recipients"][1]["status"] == "delivered", "only that recipient"
    forged = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert api(sl, "POST", f"/v1/unsubscribe/{forged}", raw=b"List-Unsubscribe=One-Click")[0] == 404


def test_errors_are_json_for_a_wrong_method_and_a_malformed_cursor(outbound):
    sl, _, keys = outbound
    status, err, hdrs = api(sl, "DELETE", "/v1/events", keys["acme"])
    assert status == 405 and err["error"]["code"] == "method_not_allowed", (status, err)
    assert hdrs["Content-Type"] == "application/json" and "GET" in hdrs["Allow"], dict(hdrs)
    status, err, _ = api(sl, "PATCH", "/v1/suppressions", keys["acme"])
    assert status == 405 and err["error"]["code"] == "method_not_allowed", (status, err)
    for path in ("/v1/events?cursor=abc", "/v1/recipients/a@dest.test?cursor=1x"):
        status, err, _ = api(sl, "GET", path, keys["acme"])
        assert status == 422 and err["error"]["code"] == "invalid_query", (path, status, err)
