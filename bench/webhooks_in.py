#!/usr/bin/env python3
"""Provider webhook ingestion: events recorded per second from SendGrid
batches and Amazon SES notifications (through SNS), each post verified the
provider's way, on SQLite and PostgreSQL.

    bench/webhooks_in.py [--repeats 3] [--sendgrid-posts 200] [--batch 100] [--ses-posts 2000]
                         [--clients 16] [--backends sqlite,postgres]

Every body is distinct (its own event ids) and signed beforehand with keys
made by openssl, as the e2e tests make them: SendGrid bodies of `--batch`
events with an ECDSA P-256 signature over timestamp and body; SES bounce
notifications in SNS envelopes signed with RSA-SHA1 by a certificate that
sluice fetches (once) over HTTPS from a local server it is told to trust.
`--clients` keep-alive connections post them all once; the figure is the
events the record then holds over the wall time of the posting (every 200
was answered after its events were committed). The clients are Python:
with one event per post (SES) they, not sluice, may be the limit, which the
CPU line says. No peer runs these webhooks on this machine: the providers'
own limits are quoted in the README beside the figures.
"""

import argparse
import http.client
import json
import os
import queue
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
import api as harness  # noqa: E402
from test_provider_webhooks import CertServer, Keys, ses_bounce, sns  # noqa: E402

ROOT = harness.ROOT


def sendgrid_bodies(keys, posts, batch):
    out = []
    for p in range(posts):
        events = [{"event": "delivered", "email": f"r{p}-{i}@dest.bench.test", "sg_event_id": uuid.uuid4().hex,
                   "sg_message_id": f"sg{p}.{i}", "timestamp": int(time.time()), "response": "250 2.0.0 OK"}
                  for i in range(batch)]
        body = json.dumps(events).encode()
        ts = str(int(time.time()))
        sig = keys.sign(keys.ec_key, "sha256", ts.encode() + body)
        out.append(("/v1/webhooks/sendgrid", body, {"X-Twilio-Email-Event-Webhook-Signature": sig,
                                                     "X-Twilio-Email-Event-Webhook-Timestamp": ts}))
    return out


def ses_bodies(keys, certs, posts):
    out = []
    for p in range(posts):
        note = sns(keys, certs.base, "Notification",
                   ses_bounce(f"m{p}@bench.test", f"r{p}@dest.bench.test", "smtp; 550 5.1.1 unknown user",
                              uuid.uuid4().hex))
        out.append(("/v1/webhooks/ses", json.dumps(note).encode(), {}))
    return out


def post_all(port, bodies, clients):
    work = queue.Queue()
    for b in bodies:
        work.put(b)
    failures = []

    def run():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            try:
                path, body, headers = work.get_nowait()
            except queue.Empty:
                return
            c.request("POST", path, body, {"Content-Type": "application/json", **headers})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                failures.append(r.status)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"{len(failures)} posts failed: {sorted(set(failures))}")
    return time.monotonic() - start


def recorded(data, db, provider):
    sql = "SELECT COUNT(*) FROM events WHERE source LIKE %s"
    if db is None:
        with sqlite3.connect(os.path.join(data, "sluice.db")) as c:
            return c.execute(sql.replace("%s", "?"), (f"provider:{provider}:%",)).fetchone()[0]
    import psycopg
    with psycopg.connect(db) as c:
        return c.execute(sql, (f"provider:{provider}:%",)).fetchone()[0]


def run(backend, keys, certs, bodies, provider, clients):
    with tempfile.TemporaryDirectory() as workdir:
        db = harness.database(backend)
        data = os.path.join(workdir, "data")
        os.makedirs(data)
        s = harness.Sluice(data, harness.free_port(), db)
        with open(s.cfg, "a") as f:
            f.write(f'[provider_webhooks.sendgrid]\ntenant = "bench"\npublic_key = "{keys.ec_public}"\n'
                    f'[provider_webhooks.ses]\ntenant = "bench"\nsns_cert_hosts = ["127.0.0.1:*"]\n'
                    f'sns_ca_file = "{keys.ca}"\n')
        s.start()
        try:
            cpu0 = cpu_of(s.proc.pid)
            seconds = post_all(s.http, bodies, clients)
            cpu = cpu_of(s.proc.pid) - cpu0
            n = recorded(data, db, provider)
            return n / seconds, n, seconds, cpu
        finally:
            s.stop()


def cpu_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sendgrid-posts", type=int, default=200)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--ses-posts", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--backends", default="sqlite,postgres")
    a = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    with tempfile.TemporaryDirectory() as kd:
        keys = Keys(kd)
        certs = CertServer(keys)
        results = {}
        try:
            for _ in range(a.repeats):
                sg = sendgrid_bodies(keys, a.sendgrid_posts, a.batch)
                ses = ses_bodies(keys, certs, a.ses_posts)
                for b in a.backends.split(","):
                    results.setdefault(("sendgrid", b), []).append(run(b, keys, certs, sg, "sendgrid", a.clients))
                    results.setdefault(("ses", b), []).append(run(b, keys, certs, ses, "ses", a.clients))
        finally:
            certs.stop()
    lines = [f"webhooks in: {a.clients} clients, {a.repeats} repeats, medians"]
    for (provider, backend), rs in results.items():
        rate = statistics.median(r[0] for r in rs)
        n = rs[0][1]
        cpu = statistics.median(r[3] * 1e6 / r[1] for r in rs)
        shape = f"batches of {a.batch}" if provider == "sendgrid" else "one event per notification"
        lines.append(f"  {provider:8} {backend:8} {rate:10,.0f} events/s  ({n} events, {shape}; "
                     f"sluice CPU {cpu:.2f} ms/1000 events)")
    out = "\n".join(lines)
    print(out)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    name = f"webhooks_in-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.txt"
    with open(os.path.join(ROOT, "bench", "results", name), "w") as f:
        f.write(out + "\n")


if __name__ == "__main__":
    main()
