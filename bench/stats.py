#!/usr/bin/env python3
"""`GET /v1/stats` over a record of 1,000,000 events, on SQLite and PostgreSQL.

    bench/stats.py [--events 1000000] [--repeats 7] [--backends sqlite,postgres]
                   [--keep DIR]

For each backend, on a fresh data directory (SQLite) or a fresh database on
a private server (scripts/pg-test-server, fsync on), the record is filled
straight through the database with a month of an application's mail:
messages of one recipient each, `queued`, then `delivered` (7% after a
`deferred`), 3% `bounced` with a reason, complaints and unsubscribes, opens
(a third of the messages, 1-4 each, classed human, privacy_proxy, scanner
or unknown) and clicks; 10% of the messages' outcomes reported by a
provider (`source` = provider:ses:...); 8 tags, 500 recipient domains
(a few large); a second tenant with a tenth of the mail; and the front
line's inbound `received`/`relayed`/`deferred` events (a tenth of the
record) under the default tenant. Then `sluice serve` runs on it and each
query is asked `--repeats` times over HTTP with the key of the big tenant:
the whole month and the default window (the last 7 days), for each
group_by. Prints the median and the slowest answer per query; raw figures
go to bench/results/stats-<time>.txt.

SLUICE_BIN=path measures that build (default: target/release/sluice).
"""

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "target", "release", "sluice")
DAY = 86_400_000
GROUPS = ["", "hour", "day", "tag", "domain", "reason", "provider", "machine_class"]
CLASSES = ["human", "human", "human", "privacy_proxy", "privacy_proxy", "scanner", "unknown"]
REASONS = ["userunknown", "mailboxfull", "hostunknown", "block", "spam", "filtered"]
EVENT_COLUMNS = "tenant_id, message, idx, address, type, at, reason, source, detail"


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


PG_DIR = None


def database(backend):
    """None (SQLite in the data directory) or the URL of a new database."""
    global PG_DIR
    if backend == "sqlite":
        return None
    script = os.path.join(ROOT, "scripts", "pg-test-server")
    if PG_DIR is None:
        PG_DIR = f"/tmp/sluice-pg-stats-{os.getpid()}"
        subprocess.run([script, "start", PG_DIR, str(os.getpid())], check=True, capture_output=True,
                       env={**os.environ, "PG_FSYNC": "on"})
    out = subprocess.run([script, "createdb", PG_DIR, f"b{time.time_ns()}"], check=True, capture_output=True)
    return out.stdout.decode().strip()


def sluice(data, url, *args, **kw):
    env = {**os.environ, **({"SLUICE_DATABASE": url} if url else {})}
    return subprocess.run([BIN, *args, "--data", data], check=True, capture_output=True, text=True, env=env, **kw)


def record(events, now, tenants):
    """The month's messages, tags and events: (messages, tags, events) rows."""
    rnd = random.Random(7)
    domains = [f"d{i}.bench.test" for i in range(500)]
    weights = [1 / (i + 1) for i in range(500)]
    tags = [f"tag{i}" for i in range(8)]
    messages, out_tags, rows = [], [], []
    big, small, default = tenants
    n = 0
    while len(rows) < events:
        n += 1
        at = now - rnd.randrange(30 * DAY)
        if n % 10 == 0:
            # The front line's inbound mail (the default tenant's).
            mid = f"{n:08x}-0000-7000-8000-{n:012x}"  # as long as a queue id (UUIDv7)
            messages.append((mid, default, "inbound", at))
            rows.append((default, mid, None, None, "received", at, None, None, None))
            addr = f"u{n % 5000}@sluice.test"
            kind = "deferred" if n % 70 == 0 else "relayed"
            rows.append((default, mid, 0, addr, kind, at + 50, None, None, '{"attempt":1}'))
            continue
        tenant = small if n % 10 == 3 else big
        mid = f"{n:08x}-0000-7000-8000-{n:012x}"
        messages.append((mid, tenant, "outbound", at))
        out_tags.append((tenant, tags[n % 8], mid))
        if n % 5 == 0 and (n // 5) % 8 != n % 8:
            out_tags.append((tenant, tags[(n // 5) % 8], mid))
        addr = f"r{rnd.randrange(200_000)}@{rnd.choices(domains, weights)[0]}"
        src = (lambda i: f"provider:ses:{mid}-{i}:{addr}") if n % 10 == 7 else (lambda i: None)

        def ev(kind, t, reason=None, i=0):
            rows.append((tenant, mid, 0, addr, kind, t, reason, src(i) if kind != "queued" else None, None))
        ev("queued", at)
        roll = rnd.random()
        if roll < 0.03:
            ev("bounced", at + 60_000, rnd.choice(REASONS), 1)
            continue
        if roll < 0.10:
            ev("deferred", at + 1_000, "greylisted", 2)
        ev("delivered", at + 5_000)
        if rnd.random() < 0.001:
            ev("complained", at + 3_600_000, None, 3)
        if rnd.random() < 0.003:
            ev("unsubscribed", at + 3_600_000, None, 4)
        if rnd.random() < 0.33:
            for i in range(rnd.randint(1, 4)):
                ev("opened", at + rnd.randrange(1, 2 * DAY), rnd.choice(CLASSES), 10 + i)
            if rnd.random() < 0.3:
                ev("clicked", at + rnd.randrange(1, 2 * DAY), rnd.choice(CLASSES), 20)
    return messages, out_tags, rows[:events]


def fill(data, url, events):
    now = int(time.time() * 1000)
    if url:
        import psycopg
        with psycopg.connect(url) as db:
            tenants = [db.execute("SELECT id FROM tenants WHERE name = %s", (t,)).fetchone()[0]
                       for t in ("bench", "other", "default")]
            messages, tags, rows = record(events, now, tenants)
            db.execute("SELECT sluice_event_partitions(%s, 2)", (now - 31 * DAY,))
            with db.cursor().copy("COPY out_messages (id, tenant_id, direction, created_at, mail_from) "
                                  "FROM STDIN") as copy:
                for m in messages:
                    copy.write_row((*m, "app@bench.test"))
            with db.cursor().copy("COPY out_tags (tenant_id, tag, message) FROM STDIN") as copy:
                for t in tags:
                    copy.write_row(t)
            with db.cursor().copy(f"COPY events ({EVENT_COLUMNS}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            db.commit()
            db.autocommit = True
            db.execute("VACUUM ANALYZE")
        return len(rows)
    db = sqlite3.connect(os.path.join(data, "sluice.db"))
    tenants = [db.execute("SELECT id FROM tenants WHERE name = ?", (t,)).fetchone()[0]
               for t in ("bench", "other", "default")]
    messages, tags, rows = record(events, now, tenants)
    db.executemany("INSERT INTO out_messages (id, tenant_id, direction, created_at, mail_from) "
                   "VALUES (?, ?, ?, ?, 'app@bench.test')", messages)
    db.executemany("INSERT INTO out_tags (tenant_id, tag, message) VALUES (?, ?, ?)", tags)
    rows.sort(key=lambda r: r[5])  # written as they happen: ids follow time
    db.executemany(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows)
    db.commit()
    db.execute("ANALYZE")
    db.close()
    return len(rows)


class Server:
    def __init__(self, data, url):
        self.data, self.url, self.http = data, url, free_port()
        env = {**os.environ, "SLUICE_LOG": "warn", **({"SLUICE_DATABASE": url} if url else {})}
        self.log = open(os.path.join(data, "serve.log"), "ab")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--data", data, "--http", f"127.0.0.1:{self.http}",
             "--smtp", f"127.0.0.1:{free_port()}", "--submission", f"127.0.0.1:{free_port()}",
             "--imap", f"127.0.0.1:{free_port()}", "--hostname", "bench.sluice.test"],
            stdout=self.log, stderr=self.log, env=env)
        for _ in range(400):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.http}/v1/openapi.json", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("sluice did not start")

    def get(self, key, query):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}/v1/stats?{query}",
                                     headers={"Authorization": f"Bearer {key}"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=60) as r:
            body = json.loads(r.read())
        return time.perf_counter() - t0, body

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


def run(backend, events, repeats, workdir):
    data = os.path.join(workdir, f"stats-{backend}")
    os.makedirs(data, exist_ok=True)
    url = database(backend)
    key = sluice(data, url, "apikey", "create", "--tenant", "bench").stdout.strip()
    sluice(data, url, "apikey", "create", "--tenant", "other")
    sluice(data, url, "db", "check")  # makes the default tenant
    t0 = time.monotonic()
    written = fill(data, url, events)
    filled = time.monotonic() - t0
    server = Server(data, url)
    results = []
    now = int(time.time() * 1000)
    windows = [("month", f"from={now - 31 * DAY}&to={now}"), ("7 days", "")]
    try:
        for label, window in windows:
            for g in GROUPS:
                q = "&".join(x for x in (window, f"group_by={g}" if g else "") if x)
                server.get(key, q)  # warm the cache: a server's steady state
                times, body = [], None
                for _ in range(repeats):
                    dt, body = server.get(key, q)
                    times.append(dt * 1000)
                results.append({"backend": backend, "window": label, "group_by": g or "-",
                                "groups": len(body["groups"]), "sent": body["total"]["sent"],
                                "median_ms": statistics.median(times), "max_ms": max(times)})
    finally:
        server.stop()
    return {"backend": backend, "events": written, "fill_s": filled, "queries": results}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--keep", help="fill the record here and keep it (no temporary directory)")
    args = ap.parse_args()
    if not os.access(BIN, os.X_OK):
        raise SystemExit(f"no sluice at {BIN}: cargo build --release -p sluice (or SLUICE_BIN=...)")
    work = args.keep or tempfile.mkdtemp(prefix="sluice-stats-")
    lines = [f"bench/stats.py --events {args.events} --repeats {args.repeats}, "
             f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, load {os.getloadavg()[0]:.2f}"]
    try:
        for backend in args.backends.split(","):
            r = run(backend, args.events, args.repeats, work)
            lines.append(f"\n{backend}: {r['events']:,} events (filled in {r['fill_s']:.0f} s)")
            lines.append(f"{'window':8} {'group_by':14} {'groups':>6} {'sent':>8} {'median ms':>10} {'max ms':>8}")
            for q in r["queries"]:
                lines.append(f"{q['window']:8} {q['group_by']:14} {q['groups']:6} {q['sent']:8} "
                             f"{q['median_ms']:10.1f} {q['max_ms']:8.1f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    out = os.path.join(ROOT, "bench", "results", f"stats-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.txt")
    with open(out, "w") as f:
        f.write(text + "\n")
    print(f"\n(raw: {out})", file=sys.stderr)


if __name__ == "__main__":
    main()
