#!/usr/bin/env python3
"""Search over a record of 1,000,000 events, on SQLite and PostgreSQL:
`GET /v1/events` (what the API and the dashboard's search ask) and the
dashboard's pages, with the server's answer timed from the client on
loopback (an upper bound of server time).

    bench/search.py [--events 1000000] [--repeats 50] [--backends sqlite,postgres] [--keep DIR]

The record is filled as bench/stats.py fills it (a month of an application's
mail straight through the database: messages, tags, events of both
directions, two tenants), and each outbound message is given a subject of a
few common words and its number. Then `sluice serve` runs on it, an operator
logs in to the dashboard, and each query is asked `--repeats` times with a
different value each time (a recipient that is in the record, a message id,
a word of the subjects, a reason): first once to warm the cache, as a
server's steady state. Targets (issue 21): API p99 < 200 ms, a page < 100 ms.

Prints p50, p99 and the slowest answer per query; raw figures go to
bench/results/search-<time>.txt. SLUICE_BIN=path measures that build
(default: target/release/sluice).
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stats as harness  # noqa: E402  (the statistics bench's fill and server)

ROOT = harness.ROOT
DAY = harness.DAY
WORDS = ["receipt", "invoice", "welcome", "password", "shipping", "order", "weekly", "offer"]


def add_subjects(data, url):
    """Every outbound message a subject (two of WORDS and its number) and a
    Message-ID, as the API's sends have."""
    sql = ("UPDATE out_messages SET subject = {w1} || ' ' || {w2} || ' #' || {n}, "
           "message_id = id || '@bench.test' WHERE direction = 'outbound'")
    if url:
        import psycopg
        words = "(ARRAY[" + ",".join(f"'{w}'" for w in WORDS) + "])"
        n = "substr(id, 1, 8)"
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(sql.format(w1=f"{words}[1 + abs(hashtext(id)) % 8]",
                                  w2=f"{words}[1 + abs(hashtext(id || 'x')) % 8]", n=n))
            db.execute("VACUUM ANALYZE out_messages")
        return
    case = lambda salt: ("CASE (unicode(substr(id, 8, 1)) + " + salt + ") % 8 " +
                         " ".join(f"WHEN {i} THEN '{w}'" for i, w in enumerate(WORDS)) + " END")
    db = sqlite3.connect(os.path.join(data, "sluice.db"))
    db.execute(sql.format(w1=case("0"), w2=case("3"), n="substr(id, 1, 8)"))
    db.commit()
    db.execute("ANALYZE")
    db.close()


def samples(data, url, tenant_name):
    """Recipients, message ids and Message-less ids to ask for: (addresses, ids)."""
    q_addr = ("SELECT e.address FROM events e JOIN tenants t ON t.id = e.tenant_id "
              "WHERE t.name = 'bench' AND e.type = 'queued' AND e.id % 997 = 0 LIMIT 400")
    q_ids = ("SELECT m.id FROM out_messages m JOIN tenants t ON t.id = m.tenant_id "
             "WHERE t.name = 'bench' AND m.direction = 'outbound' ORDER BY m.created_at DESC LIMIT 20000")
    if url:
        import psycopg
        with psycopg.connect(url) as db:
            addrs = [r[0] for r in db.execute(q_addr)]
            ids = [r[0] for r in db.execute(q_ids)]
    else:
        with sqlite3.connect(os.path.join(data, "sluice.db")) as db:
            addrs = [r[0] for r in db.execute(q_addr)]
            ids = [r[0] for r in db.execute(q_ids)]
    rnd = random.Random(11)
    return rnd.sample(addrs, min(200, len(addrs))), rnd.sample(ids, min(200, len(ids)))


class Client:
    """One keep-alive connection, as a browser's or an application's."""

    def __init__(self, port, key):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.key, self.cookie = key, None

    def get(self, path, page=False):
        headers = {"Cookie": self.cookie} if page else {"Authorization": f"Bearer {self.key}"}
        t0 = time.perf_counter()
        self.conn.request("GET", path, headers=headers)
        r = self.conn.getresponse()
        body = r.read()
        dt = time.perf_counter() - t0
        if r.status != 200:
            raise SystemExit(f"GET {path}: {r.status} {body[:200]!r}")
        return dt * 1000, body

    def login(self, name, password):
        self.conn.request("GET", "/login")
        r = self.conn.getresponse()
        page = r.read().decode()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        login_cookie = r.getheader("Set-Cookie").split(";")[0]
        form = urllib.parse.urlencode({"csrf": csrf, "name": name, "password": password})
        self.conn.request("POST", "/login", body=form, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": login_cookie})
        r = self.conn.getresponse()
        r.read()
        session = [c.split(";")[0] for c in r.headers.get_all("Set-Cookie") if c.startswith("sluice_session=")]
        if r.status != 303 or not session:
            raise SystemExit(f"dashboard login failed: {r.status}")
        self.cookie = session[0]


def rows(body, page):
    """Events in an answer: the API's list, or a page's table rows."""
    if page:
        return body.count(b"<tr") - 1 if b"<tr" in body else 0
    return len(json.loads(body)["events"])


def queries(addrs, ids, now):
    """(label, is_page, [paths]): each asked once per value."""
    week = f"since={now - 7 * DAY}"
    q = urllib.parse.quote
    return [
        ("api recipient", False, [f"/v1/events?recipient={q(a)}" for a in addrs]),
        ("api message", False, [f"/v1/events?message={q(i)}" for i in ids]),
        ("api q=word, 7 days", False, [f"/v1/events?q={w}&{week}" for w in WORDS]),
        ("api q=subject #n, 7 days", False, [f"/v1/events?q=%23{i[:8]}&{week}" for i in ids]),
        ("api bounced+reason, 7 days", False,
         [f"/v1/events?type=bounced&reason={r}&{week}" for r in harness.REASONS]),
        ("api inbound, 7 days", False, [f"/v1/events?direction=inbound&{week}"]),
        ("api all, first page", False, ["/v1/events"]),
        ("page search recipient", True, [f"/?q={q(a)}" for a in addrs]),
        ("page search message id", True, [f"/?q={q(i)}" for i in ids]),
        ("page search word", True, [f"/?q={w}" for w in WORDS]),
        ("page message", True, [f"/messages/{q(i)}" for i in ids]),
    ]


def run(backend, events, repeats, workdir):
    data = os.path.join(workdir, f"search-{backend}")
    os.makedirs(data, exist_ok=True)
    url = harness.database(backend)
    key = harness.sluice(data, url, "apikey", "create", "--tenant", "bench").stdout.strip()
    harness.sluice(data, url, "apikey", "create", "--tenant", "other")
    harness.sluice(data, url, "db", "check")
    pw = os.path.join(workdir, "operator.pass")
    with open(pw, "w") as f:
        f.write("bench-operator-password\n")
    harness.sluice(data, url, "operator", "add", "bench", "--password-file", pw, "--tenant", "bench")
    t0 = time.monotonic()
    written = harness.fill(data, url, events)
    add_subjects(data, url)
    filled = time.monotonic() - t0
    addrs, ids = samples(data, url, "bench")
    server = harness.Server(data, url)
    out = []
    try:
        client = Client(server.http, key)
        client.login("bench", "bench-operator-password")
        now = int(time.time() * 1000)
        for label, page, paths in queries(addrs, ids, now):
            client.get(paths[0], page)  # warm
            times, found = [], 0
            for i in range(repeats):
                dt, body = client.get(paths[i % len(paths)], page)
                times.append(dt)
                found += rows(body, page)
            if found == 0:
                raise SystemExit(f"{backend}: {label} found nothing: the bench asks the wrong question")
            times.sort()
            p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
            out.append({"query": label, "page": page, "rows": found / repeats, "p50_ms": statistics.median(times),
                        "p99_ms": p99, "max_ms": times[-1], "n": len(times)})
    finally:
        server.stop()
    return {"backend": backend, "events": written, "fill_s": filled, "queries": out}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--keep", help="fill the record here and keep it (no temporary directory)")
    args = ap.parse_args()
    if not os.access(harness.BIN, os.X_OK):
        raise SystemExit(f"no sluice at {harness.BIN}: cargo build --release -p sluice (or SLUICE_BIN=...)")
    work = args.keep or tempfile.mkdtemp(prefix="sluice-search-")
    lines = [f"bench/search.py --events {args.events} --repeats {args.repeats}, "
             f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, load {os.getloadavg()[0]:.2f}; "
             "targets: API p99 < 200 ms, page < 100 ms"]
    try:
        for backend in args.backends.split(","):
            r = run(backend, args.events, args.repeats, work)
            lines.append(f"\n{backend}: {r['events']:,} events (filled in {r['fill_s']:.0f} s)")
            lines.append(f"{'query':30} {'rows':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  target")
            for q in r["queries"]:
                target = 100 if q["page"] else 200
                ok = "ok" if q["p99_ms"] < target else "MISSED"
                lines.append(f"{q['query']:30} {q['rows']:6.1f} {q['p50_ms']:8.1f} {q['p99_ms']:8.1f} {q['max_ms']:8.1f}  "
                             f"< {target} {ok}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    out = os.path.join(ROOT, "bench", "results", f"search-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.txt")
    with open(out, "w") as f:
        f.write(text + "\n" + json.dumps(lines) + "\n")
    print(f"\n(raw: {out})", file=sys.stderr)


if __name__ == "__main__":
    main()
