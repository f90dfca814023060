"""Webhooks out, end to end: a tenant makes an endpoint with
`POST /v1/webhook-endpoints`; an application sends mail through the API to
the aiosmtpd sink; every event the record gets (`queued`, `delivered`, ...)
is POSTed to a local receiver (a Python http.server in a thread), which
checks each delivery with the Standard Webhooks reference library
(PyPI `standardwebhooks`) and the secret the API showed once.

What must hold: every event arrives, signed, its body's `data` exactly the
event as `GET /v1/events` shows it, under `webhook-id: msg_<event id>`;
a receiver that fails for a while gets every event in the end, each retry
under the same id (and `Retry-After` is honoured); a kill -9 of sluice
mid-stream loses nothing (at least once: a repeat carries the same id and
body); 410 disables the endpoint until it is enabled again; destinations
on this machine are refused unless allowed; another tenant cannot see or
touch an endpoint; a rotated secret signs beside the old one."""

import http.server
import json
import threading
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from helpers.procs import database_for_test, wait_until
from test_outbound import BOUNCE_DOMAIN, api, create_key, send


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every POST, checks its
    signature with each secret it was given, and answers what `answer`
    (a function of the request) says: a status, or (status, headers)."""

    def __init__(self):
        self.requests = []
        self.secrets = []
        self.answer = lambda req: 200
        self.delay = 0.0
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.take(self, body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def take(self, handler, body):
        headers = {k.lower(): v for k, v in handler.headers.items()}
        req = {"id": headers.get("webhook-id"), "headers": headers, "body": body, "at": time.monotonic(),
               "verified_by": []}
        for i, secret in enumerate(list(self.secrets)):
            try:
                Webhook(secret).verify(body, headers)
                req["verified_by"].append(i)
            except WebhookVerificationError:
                pass
        with self.lock:
            req["n"] = len(self.requests)
            self.requests.append(req)
        if self.delay:
            time.sleep(self.delay)
        answer = self.answer(req)
        status, extra = answer if isinstance(answer, tuple) else (answer, {})
        req["status"] = status
        handler.send_response(status)
        for k, v in extra.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")

    def got(self):
        with self.lock:
            return list(self.requests)

    def ok_ids(self):
        return {r["id"] for r in self.got() if r.get("status", 0) // 100 == 2}

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def config(sink, **webhooks):
    return {
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
        "outbound": {"bounce_domain": BOUNCE_DOMAIN},
        "outbound.mx_override": {"*": sink.addr},
        "webhooks": {"retry_schedule_secs": [1, 1, 1], "allow_destinations": ["127.0.0.0/8"], **webhooks},
    }


def serve(sluice_factory, sink, tenants=("acme",), **webhooks):
    sl = sluice_factory(start=False, config=config(sink, **webhooks))
    keys = {t: create_key(sl, t) for t in tenants}
    sl.start()
    return sl, keys


def endpoint(sl, key, receiver, events=(), **fields):
    status, ep, _ = api(sl, "POST", "/v1/webhook-endpoints", key,
                        {"url": receiver.url, "events": list(events), **fields})
    assert status == 201, ep
    assert ep["secret"].startswith("whsec_") and ep["status"] == "enabled", ep
    receiver.secrets.append(ep["secret"])
    return ep


def events(sl, key):
    status, page, _ = api(sl, "GET", "/v1/events?limit=1000", key)
    assert status == 200, page
    return page["events"]


def expected(sl, key, since_id=0, types=None):
    """The webhook ids the record's events should arrive under."""
    out = {}
    for e in events(sl, key):
        if e["id"] <= since_id or (types and e["type"] not in types):
            continue
        out.setdefault(f"msg_{e['id']}", e)
    return out


def wait_all(receiver, ids, timeout=60):
    return wait_until(lambda: ids <= receiver.ok_ids(), timeout, interval=0.2,
                      what=f"{len(ids)} webhooks (missing {sorted(ids - receiver.ok_ids())[:5]})")


def test_every_event_arrives_signed_verified_and_as_the_api_shows_it(sink, sluice_factory, receiver):
    sl, keys = serve(sluice_factory, sink)
    key = keys["acme"]
    before = send(sl, key, ["early@dest.test"])
    wait_until(lambda: len(events(sl, key)) >= 2, 30, what="the early message's events")
    last_before = max(e["id"] for e in events(sl, key))
    ep = endpoint(sl, key, receiver, description="all of it")
    delivered_only = Receiver()
    try:
        endpoint(sl, key, delivered_only, events=["delivered"])
        for i in range(3):
            send(sl, key, [f"to{i}@dest.test", f"cc{i}@dest.test"], subject=f"m{i}")
        want = wait_until(lambda: (lambda x: x if len(x) == 12 else None)(expected(sl, key, last_before)), 30,
                          what="12 events (queued and delivered for 6 recipients)")
        wait_all(receiver, set(want))
        wait_all(delivered_only, {i for i, e in want.items() if e["type"] == "delivered"})
        time.sleep(1)
        assert {r["id"] for r in delivered_only.got()} == {i for i, e in want.items() if e["type"] == "delivered"}
    finally:
        delivered_only.stop()

    got = receiver.got()
    assert {r["id"] for r in got} == set(want), "only events recorded after the endpoint was made"
    assert before["id"] not in json.dumps([r["body"].decode() for r in got])
    for r in got:
        assert r["verified_by"] == [0], r
        h = r["headers"]
        assert h["content-type"] == "application/json" and "sluice" in h["user-agent"], h
        assert h["webhook-signature"].startswith("v1,") and " " not in h["webhook-signature"]
        assert abs(int(h["webhook-timestamp"]) - time.time()) < 120
        body = json.loads(r["body"])
        event = want[r["id"]]
        assert body["data"] == event, (body, event)
        assert body["type"] == event["type"]
        assert body["timestamp"].endswith("Z") and body["timestamp"][:10] == time.strftime("%Y-%m-%d", time.gmtime(event["at"] / 1000))

    # What the API shows of the endpoint: never its secret again.
    status, one, _ = api(sl, "GET", f"/v1/webhook-endpoints/{ep['id']}", key)
    assert status == 200 and "secret" not in one and one["description"] == "all of it" and one["events"] == []
    status, listed, _ = api(sl, "GET", "/v1/webhook-endpoints", key)
    assert [e["id"] for e in listed["endpoints"]][0] == ep["id"] and all("secret" not in e for e in listed["endpoints"])
    # The receiver has them all; the attempts reach the log a moment later.
    wait_until(lambda: len(api(sl, "GET", f"/v1/webhook-endpoints/{ep['id']}/deliveries?limit=100",
                               key)[1]["deliveries"]) >= 12, 15, what="every attempt in the log")
    status, log, _ = api(sl, "GET", f"/v1/webhook-endpoints/{ep['id']}/deliveries?limit=5", key)
    assert status == 200 and len(log["deliveries"]) == 5 and log["next_cursor"], log
    d = log["deliveries"][0]
    assert d["type"] == "attempt" and d["response_status"] == 200 and d["response_body"] == "ok", d
    assert d["outcome"] == "delivered" and d["attempt"] == 1 and d["url"] == receiver.url and d["latency_ms"] >= 0
    assert d["webhook_id"] == f"msg_{d['event_id']}"
    status, older, _ = api(sl, "GET", f"/v1/webhook-endpoints/{ep['id']}/deliveries?cursor={log['next_cursor']}", key)
    assert len(older["deliveries"]) == 7 and older["next_cursor"] is None, older


@pytest.mark.time_limit(120)
def test_a_receiver_failing_for_a_while_gets_everything_under_the_same_ids(sink, sluice_factory, receiver):
    sl, keys = serve(sluice_factory, sink, retry_schedule_secs=[1, 1, 1, 1, 1, 1])
    key = keys["acme"]
    ep = endpoint(sl, key, receiver)
    started = time.monotonic()
    receiver.answer = lambda req: 500 if time.monotonic() - started < 3 else 200
    for i in range(2):
        send(sl, key, [f"r{i}@dest.test"])
    want = wait_until(lambda: (lambda x: x if len(x) == 4 else None)(expected(sl, key)), 30, what="4 events")
    wait_all(receiver, set(want), timeout=60)
    got = receiver.got()
    failed = [r for r in got if r["status"] == 500]
    assert failed, "the receiver refused some at first"
    for wid in want:
        tries = [r for r in got if r["id"] == wid]
        assert len({r["body"] for r in tries}) == 1, f"{wid}: one body on every attempt"
        assert all(r["verified_by"] == [0] for r in tries)
        assert [r["status"] for r in tries][-1] == 200
    def log_of_all():
        log = api(sl, "GET", f"/v1/webhook-endpoints/{ep['id']}/deliveries?limit=100", key)[1]
        done = {d["webhook_id"] for d in log["deliveries"] if d["outcome"] == "delivered"}
        return log if done >= set(want) else None

    log = wait_until(log_of_all, 15, what="every delivery in the log")
    outcomes = {d["outcome"] for d in log["deliveries"]}
    assert outcomes == {"retrying", "delivered"}, log
    retried = [d for d in log["deliveries"] if d["outcome"] == "retrying"]
    assert all(d["response_status"] == 500 and d["response_body"] == "ok" for d in retried)
    assert max(d["attempt"] for d in log["deliveries"]) >= 2


def test_retry_after_is_honoured_and_exhausted_retries_fail(sink, sluice_factory, receiver):
    sl, keys = serve(sluice_factory, sink, retry_schedule_secs=[60, 60])
    key = keys["acme"]
    ep = endpoint(sl, key, receiver, events=["queued"])
    firsts = {}

    def answer(req):
        firsts.setdefault(req["id"], req["at"])
        return (503, {"Retry-After": "1"}) if req["at"] - firsts[req["id"]] < 0.5 else 200

    receiver.answer = answer
    send(sl, key, ["slow@dest.test"])
    wait_until(lambda: len(receiver.ok_ids()) == 1, 20, what="the retry Retry-After asked for (not 60 s)")
    tries = receiver.got()
    assert [r["status"] for r in tries] == [503, 200]
    assert 0.8 < tries[1]["at"] - tries[0]["at"] < 10

    # Every attempt refused: after the schedule's last the delivery has
    # failed, and the log says so.
    sl2, keys2 = serve(sluice_factory, sink, retry_schedule_secs=[1, 1])
    never = Receiver()
    try:
        never.answer = lambda req: 500
        ep2 = endpoint(sl2, keys2["acme"], never, events=["queued"])
        send(sl2, keys2["acme"], ["never@dest.test"])

        def failed():
            log = api(sl2, "GET", f"/v1/webhook-endpoints/{ep2['id']}/deliveries", keys2["acme"])[1]["deliveries"]
            return log if any(d["outcome"] == "failed" for d in log) else None

        log = wait_until(failed, 30, what="the delivery to fail for good")
        assert [d["attempt"] for d in log] == [3, 2, 1] and len(never.got()) == 3, log
        assert len({r["id"] for r in never.got()}) == 1
    finally:
        never.stop()
    assert api(sl, "GET", f"/v1/webhook-endpoints/{ep['id']}", key)[1]["status"] == "enabled"


@pytest.mark.time_limit(150)
def test_kill_9_mid_stream_loses_nothing(sink, sluice_factory, receiver):
    sl, keys = serve(sluice_factory, sink, workers=2)
    key = keys["acme"]
    endpoint(sl, key, receiver)
    receiver.delay = 0.05
    # The 11th and 12th POSTs hang: both are in flight when sluice dies.
    receiver.answer = lambda req: (time.sleep(3) if req["n"] in (10, 11) else None) or 200
    for i in range(20):
        send(sl, key, [f"k{i}@dest.test", f"l{i}@dest.test"])
    wait_until(lambda: len(receiver.got()) >= 12, 30, what="deliveries under way")
    sl.kill()
    in_flight = [r["id"] for r in receiver.got() if r["n"] in (10, 11)]
    sl.start()
    # Every event the record has (the queue empties; the record settles).
    sl.wait_queue_empty(60)
    want = wait_until(lambda: (lambda x: x if len(x) >= 80 else None)(expected(sl, key)), 30, what="80 events")
    wait_all(receiver, set(want), timeout=90)
    # What was in flight is sent again once its lease runs out (30 s).
    wait_until(lambda: all(sum(r["id"] == i for r in receiver.got()) >= 2 for i in in_flight), 60,
               what=f"{in_flight} sent again")
    got = receiver.got()
    assert set(want) <= {r["id"] for r in got}, "nothing missing"
    by_id = {}
    for r in got:
        by_id.setdefault(r["id"], set()).add(r["body"])
        assert r["verified_by"] == [0]
    assert all(len(bodies) == 1 for bodies in by_id.values()), "a repeat is the same webhook, id and body"
    assert set(by_id) <= set(expected(sl, key)), "no webhook for an event the record does not have"


@pytest.mark.time_limit(150)
def test_two_nodes_share_one_queue_and_one_takes_over_when_the_other_dies(sink, sluice_factory, receiver):
    """Two nodes on one PostgreSQL (whatever the suite's database): both
    scan and send; when A is killed, B takes A's endpoint and deliveries
    once their leases run out, and sends what is recorded after."""
    env = {"SLUICE_DATABASE": database_for_test("postgres")}
    a = sluice_factory(start=False, name="a", config=config(sink, workers=2), env=env)
    b = sluice_factory(start=False, name="b", config=config(sink, workers=2), env=env)
    key = create_key(a, "acme")
    a.start()
    b.start()
    endpoint(a, key, receiver)
    receiver.delay = 0.05
    for i in range(10):
        send(a if i % 2 else b, key, [f"n{i}@dest.test"])
    wait_until(lambda: len(receiver.got()) >= 5, 30, what="deliveries under way")
    a.kill()
    for i in range(10, 15):
        send(b, key, [f"n{i}@dest.test"])
    want = wait_until(lambda: (lambda x: x if len(x) >= 20 else None)(expected(b, key)), 30,
                      what="B's and A's events")
    wait_all(receiver, set(want), timeout=90)
    got = receiver.got()
    assert all(r["verified_by"] == [0] for r in got)
    by_id = {}
    for r in got:
        by_id.setdefault(r["id"], set()).add(r["body"])
    assert all(len(bodies) == 1 for bodies in by_id.values())


def test_gone_disables_until_enabled(sink, sluice_factory, receiver):
    sl, keys = serve(sluice_factory, sink)
    key = keys["acme"]
    ep = endpoint(sl, key, receiver, events=["queued"])
    receiver.answer = lambda req: 410
    send(sl, key, ["gone@dest.test"])

    def disabled():
        e = api(sl, "GET", f"/v1/webhook-endpoints/{ep['id']}", key)[1]
        return e if e["status"] == "disabled" else None

    e = wait_until(disabled, 20, what="the endpoint to be disabled")
    assert "410" in e["disabled_reason"] and e["disabled_at"], e
    log = api(sl, "GET", f"/v1/webhook-endpoints/{ep['id']}/deliveries", key)[1]["deliveries"]
    assert log[0]["type"] == "endpoint.disabled" and "410" in log[0]["error"], log
    assert "webhook endpoint disabled" in sl.log_when(lambda t: "webhook endpoint disabled" in t)
    send(sl, key, ["while@dest.test"])
    time.sleep(2)
    assert len(receiver.got()) == 1, "nothing is sent to a disabled endpoint"

    receiver.answer = lambda req: 200
    status, e, _ = api(sl, "POST", f"/v1/webhook-endpoints/{ep['id']}/enable", key)
    assert status == 200 and e["status"] == "enabled" and e["disabled_reason"] is None, e
    want = expected(sl, key, types={"queued"})
    assert len(want) == 2
    wait_all(receiver, set(want), timeout=20)


def test_destinations_on_this_machine_are_refused_unless_allowed(sink, sluice_factory, receiver):
    sl = sluice_factory(start=False, config={"outbound.mx_override": {"*": sink.addr}})
    key = create_key(sl, "acme")
    sl.start()
    port = receiver.server.server_address[1]
    for url in [receiver.url, f"http://localhost:{port}/", "http://[::1]/x", "http://10.1.2.3/",
                "http://169.254.169.254/latest/meta-data", "http://2130706433/", "ftp://example.com/",
                "not a url"]:
        status, err, _ = api(sl, "POST", "/v1/webhook-endpoints", key, {"url": url})
        assert status == 422 and err["error"]["field"] == "url", (url, err)
    for bad in [{"url": "https://hooks.example.com/", "events": ["nonsense"]}, {"events": []},
                {"url": "https://hooks.example.com/", "colour": "red"},
                {"url": "https://hooks.example.com/", "batch": {"max_events": 0, "max_wait_ms": 10}}]:
        status, err, _ = api(sl, "POST", "/v1/webhook-endpoints", key, bad)
        assert status == 422, (bad, err)
    status, ok, _ = api(sl, "POST", "/v1/webhook-endpoints", key,
                        {"url": "https://hooks.example.com/in", "events": ["bounced", "complained"]})
    assert status == 201 and ok["events"] == ["bounced", "complained"], ok
    assert not receiver.got()


def test_another_tenant_cannot_see_or_touch_an_endpoint(sink, sluice_factory, receiver):
    sl, keys = serve(sluice_factory, sink, tenants=("acme", "other"))
    ep = endpoint(sl, keys["acme"], receiver)
    theirs = keys["other"]
    base = f"/v1/webhook-endpoints/{ep['id']}"
    for method, path, body in [("GET", base, None), ("DELETE", base, None), ("POST", base + "/rotate", None),
                               ("POST", base + "/enable", None), ("GET", base + "/deliveries", None),
                               ("POST", base + "/replay", {"event_id": 1})]:
        status, err, _ = api(sl, method, path, theirs, body)
        assert status == 404 and err["error"]["code"] == "not_found", (method, path, err)
    assert api(sl, "GET", "/v1/webhook-endpoints", theirs)[1]["endpoints"] == []
    assert api(sl, "GET", "/v1/webhook-endpoints", None)[0] == 401
    send(sl, theirs, ["theirs@dest.test"])
    send(sl, keys["acme"], ["ours@dest.test"])
    want = wait_until(lambda: (lambda x: x if len(x) == 2 else None)(expected(sl, keys["acme"])), 30,
                      what="acme's events")
    wait_all(receiver, set(want))
    time.sleep(1)
    assert {r["id"] for r in receiver.got()} == set(want), "only acme's events"
    assert api(sl, "DELETE", base, keys["acme"])[0] == 204
    assert api(sl, "GET", base, keys["acme"])[0] == 404


def test_rotation_signs_with_both_secrets_and_replay_keeps_the_id(sink, sluice_factory, receiver):
    sl, keys = serve(sluice_factory, sink)
    key = keys["acme"]
    ep = endpoint(sl, key, receiver, events=["queued"])
    send(sl, key, ["one@dest.test"])
    wait_until(lambda: len(receiver.ok_ids()) == 1, 20, what="the first webhook")
    first = receiver.got()[0]
    status, rotated, _ = api(sl, "POST", f"/v1/webhook-endpoints/{ep['id']}/rotate", key)
    assert status == 200 and rotated["secret"].startswith("whsec_") and rotated["secret"] != ep["secret"]
    receiver.secrets.append(rotated["secret"])
    send(sl, key, ["two@dest.test"])
    wait_until(lambda: len(receiver.ok_ids()) == 2, 20, what="the second webhook")
    second = receiver.got()[-1]
    assert len(second["headers"]["webhook-signature"].split(" ")) == 2, second["headers"]
    assert second["verified_by"] == [0, 1], "the old secret and the new one both verify"

    # Replay: the first event again, under its first id and body, signed now.
    event_id = int(first["id"].removeprefix("msg_"))
    status, r, _ = api(sl, "POST", f"/v1/webhook-endpoints/{ep['id']}/replay", key, {"event_id": event_id})
    assert status == 202 and r["queued"] == 1, r
    wait_until(lambda: len(receiver.got()) == 3, 20, what="the replay")
    again = receiver.got()[-1]
    assert again["id"] == first["id"] and again["body"] == first["body"] and again["verified_by"] == [0, 1]
    status, r, _ = api(sl, "POST", f"/v1/webhook-endpoints/{ep['id']}/replay", key,
                       {"since": "2020-01-01T00:00:00Z", "until": int(time.time() * 1000) + 60_000})
    assert status == 202 and r["queued"] == 2, r
    wait_until(lambda: len(receiver.got()) == 5, 20, what="the range replayed")
    assert {r["id"] for r in receiver.got()[3:]} == receiver.ok_ids()
    for bad in [{}, {"event_id": 1, "since": 0}, {"since": "yesterday"}, {"since": 10, "until": 5}]:
        assert api(sl, "POST", f"/v1/webhook-endpoints/{ep['id']}/replay", key, bad)[0] == 422, bad
    assert api(sl, "POST", f"/v1/webhook-endpoints/{ep['id']}/replay", key, {"event_id": 10**9})[0] == 404


def test_a_batching_endpoint_gets_several_events_in_one_signed_post(sink, sluice_factory, receiver):
    sl, keys = serve(sluice_factory, sink)
    key = keys["acme"]
    ep = endpoint(sl, key, receiver, batch={"max_events": 4, "max_wait_ms": 1500})
    assert ep["batch"] == {"max_events": 4, "max_wait_ms": 1500}, ep
    for i in range(3):
        send(sl, key, [f"b{i}@dest.test"])
    want = wait_until(lambda: (lambda x: x if len(x) == 6 else None)(expected(sl, key)), 30, what="6 events")

    def delivered():
        return {f"msg_{item['data']['id']}" for r in receiver.got() for item in json.loads(r["body"])["data"]}

    wait_until(lambda: set(want) <= delivered(), 30, what="every event in some batch")
    got = receiver.got()
    assert len(got) < 6, f"{len(got)} POSTs for 6 events"
    for r in got:
        assert r["verified_by"] == [0], r
        body = json.loads(r["body"])
        assert body["type"] == "batch" and 1 <= len(body["data"]) <= 4, body
        for item in body["data"]:
            assert item["data"] == want[f"msg_{item['data']['id']}"] and item["type"] == item["data"]["type"]
        first = f"msg_{body['data'][0]['data']['id']}"
        assert r["id"] == f"{first}_batch{len(body['data'])}", r["id"]
    # The receiver answered before the attempt was written to the log: wait for it.
    def logged():
        log = api(sl, "GET", f"/v1/webhook-endpoints/{ep['id']}/deliveries", key)[1]["deliveries"]
        return sorted(d["webhook_id"] for d in log)

    wait_until(lambda: logged() == sorted(want), 15, what="the log to name each event's own id")
