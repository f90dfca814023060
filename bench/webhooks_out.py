#!/usr/bin/env python3
"""Webhooks out: deliveries per second from sluice to a local receiver,
beside a plain Python POST loop to the same receiver, on SQLite and
PostgreSQL.

    bench/webhooks_out.py [--repeats 3] [--events 20000] [--workers 32]
                          [--loop-threads 16] [--backends sqlite,postgres]

Per backend and repeat, on a fresh data directory and database: sluice is
started once to make a tenant and an endpoint (`POST
/v1/webhook-endpoints`) pointing at nginx (Debian's, `return 200`, an
access log of each request's `webhook-id`), and stopped; `--events` events
of that tenant are written straight into the record (as bench/api.py fills
it), all recorded after the endpoint was made; sluice is started again and
its dispatcher tails the record, queues a delivery per event, and POSTs
each one signed (`[webhooks] workers` at once). The figure is the events
delivered (distinct webhook-ids answered 200 in nginx's log) over the time
from the first delivery to the last; the time from the start is printed
beside it. Every delivery is queued, claimed, sent and its attempt
recorded (a transaction per batch of outcomes) as in production.

The peer, in the same run: `--loop-threads` Python threads POSTing bodies
of the same shape, signed the same way (HMAC-SHA256, base64), over
keep-alive connections to the same nginx: what a plain loop without a
queue, a record or retries does on this machine. Svix publishes no
delivery throughput for its server; its hosted plans' API limits are
200 messages/s (free) and 800 messages/s (professional).

Prints medians; raw figures go to bench/results/webhooks-out-<time>.txt.
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import api as harness  # noqa: E402

ROOT = harness.ROOT


def nginx(port, workdir):
    """nginx answering 200 to every POST, logging each webhook-id."""
    conf = os.path.join(workdir, "nginx.conf")
    log = os.path.join(workdir, "hooks.log")
    user = "user root;" if os.geteuid() == 0 else ""
    with open(conf, "w") as f:
        f.write(f"""{user}
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx.err warn;
events {{ worker_connections 1024; }}
http {{
  log_format hooks '$msec $status $http_webhook_id';
  access_log {log} hooks buffer=64k flush=100ms;
  client_body_temp_path {workdir}/body;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "ok"; }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, log


def lines(log):
    try:
        with open(log) as f:
            return [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def sluice_run(backend, events, workers, receiver, log):
    with tempfile.TemporaryDirectory() as workdir:
        data = os.path.join(workdir, "data")
        os.makedirs(data)
        s = harness.Sluice(data, harness.free_port(), harness.database(backend))
        with open(s.cfg, "a") as f:
            f.write(f'[webhooks]\nallow_destinations = ["127.0.0.0/8"]\nworkers = {workers}\n')
        key = s.key()
        s.start()
        c = http.client.HTTPConnection("127.0.0.1", s.http, timeout=30)
        c.request("POST", "/v1/webhook-endpoints", json.dumps({"url": receiver}),
                  {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        r = c.getresponse()
        assert r.status == 201, r.read()
        r.read()
        s.stop()
        harness.fill(s, events, max(1, events // 100))
        before = len(lines(log))
        start = time.monotonic()
        s.start()
        deadline = time.monotonic() + 600
        while len(lines(log)) - before < events and time.monotonic() < deadline:
            time.sleep(0.2)
        total = time.monotonic() - start
        s.stop()
        got = lines(log)[before:]
        ids = {line[2] for line in got if line[1] == "200"}
        if len(ids) < events:
            raise SystemExit(f"{backend}: {len(ids)} of {events} events delivered")
        first, last = float(got[0][0]), float(got[-1][0])
        return {"backend": backend, "events": events, "requests": len(got), "distinct": len(ids),
                "rate": (len(ids) - 1) / max(last - first, 1e-6), "from_start_s": total}


def body(i):
    event = {"id": i, "message": f"{i // 3:032x}", "idx": i % 3, "address": f"addr{i}@q.bench.test",
             "type": "delivered", "at": 1795428000000 + i, "reason": None, "smtp_code": 250,
             "smtp_status": "2.0.0", "smtp_text": "OK", "remote": "mx.q.bench.test", "tls": "TLSv1.3"}
    return json.dumps({"type": "delivered", "timestamp": "2026-11-23T10:00:00.000Z", "data": event}).encode()


def loop_run(port, posts, threads):
    """The peer: a plain Python loop, signed as Standard Webhooks sign."""
    key = os.urandom(32)
    counter = iter(range(posts))
    lock = threading.Lock()
    failures = []

    def run():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            b, wid, ts = body(i), f"msg_{i}", str(int(time.time()))
            sig = base64.b64encode(hmac.new(key, f"{wid}.{ts}.".encode() + b, hashlib.sha256).digest()).decode()
            c.request("POST", "/hook", b, {"content-type": "application/json", "webhook-id": wid,
                                           "webhook-timestamp": ts, "webhook-signature": f"v1,{sig}"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                failures.append(r.status)

    ts = [threading.Thread(target=run) for _ in range(threads)]
    start = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if failures:
        raise SystemExit(f"the loop's posts failed: {sorted(set(failures))}")
    return posts / (time.monotonic() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--loop-threads", type=int, default=16)
    ap.add_argument("--backends", default="sqlite,postgres")
    a = ap.parse_args()
    harness.need("nginx", "nginx")
    runs = {b: [] for b in a.backends.split(",")}
    loops = []
    with tempfile.TemporaryDirectory() as workdir:
        os.chmod(workdir, 0o755)
        port = harness.free_port()
        proc, log = nginx(port, workdir)
        try:
            for _ in range(a.repeats):
                for b in runs:
                    runs[b].append(sluice_run(b, a.events, a.workers, f"http://127.0.0.1:{port}/hook", log))
                loops.append(loop_run(port, a.events, a.loop_threads))
        finally:
            proc.terminate()
            proc.wait(10)
    out = [f"webhooks out: {a.events} events to nginx on loopback, {a.repeats} repeats, medians"]
    for b, rs in runs.items():
        rate = statistics.median(r["rate"] for r in rs)
        whole = statistics.median(r["from_start_s"] for r in rs)
        out.append(f"  sluice ({b}, {a.workers} workers) {rate:10,.0f} deliveries/s"
                   f"   all {a.events} in {whole:5.1f} s from start")
    out.append(f"  plain Python POST loop ({a.loop_threads} threads) {statistics.median(loops):10,.0f} posts/s")
    out.append("  Svix (hosted) publishes API limits of 200 (free) and 800 (pro) messages/s")
    text = "\n".join(out)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    name = time.strftime("webhooks-out-%Y%m%dT%H%M%SZ.txt", time.gmtime())
    with open(os.path.join(ROOT, "bench", "results", name), "w") as f:
        f.write(text + "\n\n" + json.dumps({"runs": runs, "loop": loops}, indent=1) + "\n")


if __name__ == "__main__":
    main()
