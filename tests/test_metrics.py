"""Prometheus metrics and health checks (issue 21, part 2): `/metrics` is
scraped and read with the Prometheus text format parser (PyPI
`prometheus-client`), and its counters agree with the record and with what
SMTP clients were told; `/healthz` and `/readyz` answer load balancers,
and `/readyz` names the check that fails (docs/metrics.md)."""

import os
import shutil
import smtplib
import subprocess
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from helpers.mail import simple_message, token
from helpers.procs import ROOT, wait_until

SCRIPT = os.path.join(ROOT, "scripts", "pg-test-server")
ROUTES = {"relay", "quarantine", "outbound", "feedback"}


def get(sl, path, headers=None):
    """(status, body text) of one GET on the HTTP listener."""
    req = urllib.request.Request(sl.http + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(sl, headers=None):
    """Every sample of /metrics: {(name, sorted label items): value}."""
    status, text = get(sl, "/metrics", headers)
    assert status == 200, (status, text)
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def by_label(samples, name, label):
    """A metric's values summed by one label."""
    out = {}
    for (n, labels), v in samples.items():
        if n == name:
            key = dict(labels)[label]
            out[key] = out.get(key, 0) + v
    return out


def recorded(sl):
    """Events in the record by type, as the record counts them."""
    return {t: n for t, n in sl.rows("SELECT type, count(*) FROM events GROUP BY type")}


def counted(sl):
    return {t: int(v) for t, v in by_label(scrape(sl), "sluice_events_total", "type").items()}


def send(sl, rcpts):
    """One message over SMTP on its own connection; the recipients refused
    at RCPT, {address: (code, text)}."""
    with smtplib.SMTP(*sl.smtp, timeout=20) as c:
        try:
            return c.sendmail("sender@src.test", list(rcpts), simple_message(token()))
        except smtplib.SMTPRecipientsRefused as e:
            return e.recipients


def test_the_counters_match_the_record_and_what_clients_were_told(sink, sluice_factory):
    sink.control(rcpt=[{"match": "nobody@", "reply": "550 5.1.1 No such user"}])
    sl = sluice_factory(relay=sink.addr,
                        config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    assert get(sl, "/healthz") == (200, '{"status":"ok"}')

    refused = {}
    for i in range(3):
        refused.update(send(sl, [f"ann{i}@sluice.test"]))
    # Refused at RCPT: not a domain of ours (550, no relaying), twice.
    refused.update(send(sl, ["someone@elsewhere.test", "ann9@sluice.test"]))
    refused.update(send(sl, ["other@elsewhere.test"]))
    # Refused downstream: `refused`, and a DSN back to the sender.
    send(sl, ["nobody@sluice.test"])
    sink.wait_for(5, timeout=30)  # 4 relayed messages and the DSN
    sl.wait_queue_empty(timeout=30)

    codes = {}
    for code, _ in refused.values():
        codes[str(code)] = codes.get(str(code), 0) + 1
    assert codes == {"550": 2}, refused

    # The record has every outcome (its writer commits every 100 ms)...
    def complete():
        r = recorded(sl)  # the DSN itself is no event: 4 relayed
        return {"refused", "dsn_sent"} <= set(r) and r.get("relayed", 0) >= 4 or None
    wait_until(complete, 20, what="the record to have every outcome")
    # ... and, counted after each commit, the counters are the record, row for row.
    wait_until(lambda: counted(sl) == recorded(sl) or None, 20, what="the counters to reach the record")
    got, want = counted(sl), recorded(sl)
    assert got == want

    samples = scrape(sl)
    # The reason label is the schema's word (the refusal was classified).
    reasons = {dict(l)["reason"] for (n, l) in samples
               if n == "sluice_events_total" and dict(l)["type"] == "refused"}
    assert reasons == {r for (r,) in sl.rows("SELECT reason FROM events WHERE type = 'refused'")} == {"userunknown"}
    assert by_label(samples, "sluice_smtp_refusals_total", "code") == codes
    assert by_label(samples, "sluice_smtp_sessions_total", "listener") == {"mx": 6}
    # The queue per route (empty now), held mail, copies pending.
    for gauge in ("sluice_queue_messages", "sluice_queue_recipients", "sluice_queue_oldest_seconds"):
        assert by_label(samples, gauge, "route") == {r: 0 for r in ROUTES}, gauge
    assert samples[("sluice_queue_held_messages", ())] == 0
    assert samples[("sluice_copies_pending", ())] == 0
    # Each relay attempt's latency, and the record's batches.
    attempts = samples[("sluice_attempt_duration_seconds_count", (("route", "relay"),))]
    assert attempts >= 5, attempts
    assert by_label(samples, "sluice_record_batch_size_count", "writer").get("front", 0) >= 1

    status, body = get(sl, "/readyz")
    assert status == 200, body
    assert '"failing":[]' in body and all(f'"name":"{c}"' in body for c in ("spool", "database", "listeners"))


def test_the_queue_gauges_follow_mail_waiting_for_a_route(sluice_factory):
    # No relay: mail for the relay waits in the spool.
    sl = sluice_factory()
    send(sl, ["ann@sluice.test", "bob@sluice.test"])
    samples = scrape(sl)
    assert by_label(samples, "sluice_queue_messages", "route")["relay"] == 1
    assert by_label(samples, "sluice_queue_recipients", "route")["relay"] == 2
    assert by_label(samples, "sluice_queue_oldest_seconds", "route")["relay"] >= 0
    assert set(by_label(samples, "sluice_queue_messages", "route")) == ROUTES


def test_readyz_names_the_spool_when_it_cannot_be_written(sluice_factory):
    sl = sluice_factory()
    assert get(sl, "/readyz")[0] == 200
    # Root writes through any mode: a directory where the probe file goes
    # is what makes the spool unwritable here.
    probe = os.path.join(sl.data, "spool", ".readyz-probe")
    os.makedirs(os.path.join(probe, "in-the-way"))
    try:
        status, body = get(sl, "/readyz")
        assert status == 503, body
        assert '"failing":["spool"]' in body, body
        assert get(sl, "/healthz")[0] == 200  # alive, just not ready
    finally:
        shutil.rmtree(probe)
    assert get(sl, "/readyz")[0] == 200


def test_readyz_names_the_database_when_it_is_down(sluice_factory):
    # A PostgreSQL server of its own, so stopping it stops no other test's.
    pg = f"/tmp/sluice-pg-readyz-{os.getpid()}"
    url = subprocess.run([SCRIPT, "start", pg, str(os.getpid())], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        sl = sluice_factory(env={"SLUICE_DATABASE": url})
        assert get(sl, "/readyz")[0] == 200
        subprocess.run([SCRIPT, "stop", pg], check=True)
        status, body = get(sl, "/readyz")
        assert status == 503, body
        assert '"failing":["database"]' in body, body
        assert get(sl, "/healthz")[0] == 200
        subprocess.run([SCRIPT, "resume", pg], check=True)
        wait_until(lambda: get(sl, "/readyz")[0] == 200 or None, 30, what="ready again")
    finally:
        subprocess.run([SCRIPT, "stop", pg], check=False)


def test_metrics_can_require_a_bearer_token(sluice_factory, tmp_path):
    (tmp_path / "metrics-token").write_text("m3trics\n")
    sl = sluice_factory(config={"http": {"metrics_token_file": str(tmp_path / "metrics-token")}})
    assert get(sl, "/metrics")[0] == 401
    assert get(sl, "/metrics", {"Authorization": "Bearer wrong"})[0] == 401
    samples = scrape(sl, {"Authorization": "Bearer m3trics"})
    assert ("sluice_queue_held_messages", ()) in samples
    # Health checks stay open to load balancers.
    assert get(sl, "/healthz")[0] == 200 and get(sl, "/readyz")[0] == 200
