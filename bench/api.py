#!/usr/bin/env python3
"""HTTP send API throughput and recipient-query latency, beside Postfix.

    bench/api.py [--repeats 3] [--seconds 10] [--events 1000000] [--skip-peer]
                 [--backends sqlite,postgres] [--nodes 2]

For each backend of the record (SQLite in the data directory; PostgreSQL on
a private server started for the run, scripts/pg-test-server with fsync
on), per repeat, on a fresh data directory and database, with Postfix's
smtp-sink as every domain's MX (the override map):
  single : wrk POSTs /v1/messages (one recipient, ~1 KiB body) from 64
           connections; accepted msgs/s = 202 answers / seconds. Every 202 is
           durable (spool fsync + the record's transaction) before it is sent.
  batch  : wrk POSTs /v1/messages/batch with 100 messages per request.
  e2e    : for each of the above, the time until smtp-sink has received every
           accepted message, counted from the start of the load.
  nodes  : with --nodes N (PostgreSQL only), single and batch again on N
           sluice processes sharing the one database, each with its own data
           directory and spool, wrk's connections split between them: the
           aggregate beside one node's, in the same run.
The peer, in the same run: Postfix accepting 4 KiB messages over SMTP from
smtp-source (64 sessions) and relaying them to smtp-sink (the shared
harness, ../shared/bench/smtp_bench.sh): the same work, durable accept and
hand-off, through the other front door.

Then the query: `--events` events (100 per address) are written into the
record, sluice is restarted, and wrk GETs /v1/recipients/{address} over
random addresses for `--seconds`; wrk's latency distribution gives p50/p99.

Prints medians; raw figures go to bench/results/api-<time>.txt.
SLUICE_BIN=path measures that build instead of this tree's (a before/after
comparison: run once per build, back to back).
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.environ.get("HARNESS", os.path.join(ROOT, "..", "shared", "bench", "smtp_bench.sh"))
BIN = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "target", "release", "sluice")


def need(cmd, package):
    if shutil.which(cmd) is None:
        subprocess.run(["apt-get", "install", "-y", package], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class SmtpSink:
    """Postfix's smtp-sink with -c: counts messages as they arrive."""

    def __init__(self):
        self.port = free_port()
        self.count = 0
        self.proc = subprocess.Popen(["smtp-sink", "-c", "-u", "nobody", f"127.0.0.1:{self.port}", "4096"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(0.3)

    def _read(self):
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(65536) if hasattr(self.proc.stdout, "read1") else self.proc.stdout.read(1)
            if not chunk:
                return
            buf = (buf + chunk)[-200:]
            m = re.findall(rb"mesg=(\d+)", buf)
            if m:
                self.count = int(m[-1])

    def wait_for(self, n, timeout=300):
        end = time.monotonic() + timeout
        while self.count < n and time.monotonic() < end:
            time.sleep(0.02)
        return self.count >= n

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


PG_DIR = None


def database(backend):
    """A fresh database for one run: None (SQLite in the data directory) or
    the URL of a new PostgreSQL database on the run's server."""
    global PG_DIR
    if backend == "sqlite":
        return None
    script = os.path.join(ROOT, "scripts", "pg-test-server")
    if PG_DIR is None:
        PG_DIR = f"/tmp/sluice-pg-bench-{os.getpid()}"
        subprocess.run([script, "start", PG_DIR, str(os.getpid())], check=True, capture_output=True,
                       env={**os.environ, "PG_FSYNC": "on"})
    out = subprocess.run([script, "createdb", PG_DIR, f"b{time.time_ns()}"], check=True, capture_output=True)
    return out.stdout.decode().strip()


class Sluice:
    def __init__(self, data, sink_port, database=None):
        self.data = data
        self.env = {**os.environ, **({"SLUICE_DATABASE": database} if database else {})}
        self.http = free_port()
        cfg = os.path.join(data, "bench.toml")
        with open(cfg, "w") as f:
            f.write(f'[http]\nrate_per_sec = 0\n[outbound]\nbounce_domain = "bounces.bench.test"\n'
                    f'[outbound.mx_override]\n"*" = "127.0.0.1:{sink_port}"\n')
        self.cfg = cfg

    def dkim(self, algorithm):
        subprocess.run([BIN, "dkim", "generate", "bench.test", "--algorithm", algorithm, "--data", self.data],
                       check=True, capture_output=True, env=self.env)

    def key(self):
        out = subprocess.run([BIN, "apikey", "create", "--tenant", "bench", "--data", self.data],
                             check=True, capture_output=True, text=True, env=self.env)
        return out.stdout.strip()

    def start(self):
        self.log = open(os.path.join(self.data, "serve.log"), "ab")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--data", self.data, "--config", self.cfg, "--http", f"127.0.0.1:{self.http}",
             "--smtp", f"127.0.0.1:{free_port()}", "--submission", f"127.0.0.1:{free_port()}",
             "--imap", f"127.0.0.1:{free_port()}", "--hostname", "bench.sluice.test"],
            stdout=self.log, stderr=self.log, env={**self.env, "SLUICE_LOG": "warn"})
        import urllib.request
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.http}/v1/openapi.json", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("sluice did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


def message(i):
    return {"from": "app@bench.test", "to": [f"user{i}@dest{i % 50}.bench.test"], "subject": f"bench {i}",
            "text": "x" * 900, "tags": ["bench"]}


LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
wrk.body = [==[%s]==]
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d\\n", summary.requests, summary.errors.status,
    summary.duration, latency:percentile(99)))
end
"""

GET_LUA = """
math.randomseed(os.time())
wrk.headers["Authorization"] = "Bearer %s"
request = function()
  return wrk.format("GET", "/v1/recipients/addr" .. math.random(0, %d) .. "@q.bench.test?limit=100")
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d %%d\\n", summary.requests, summary.errors.status,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(script, url, seconds, conns, threads=2):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s", "-s", f.name, url],
                         capture_output=True, text=True, timeout=seconds + 120)
    os.unlink(f.name)
    m = re.search(r"RESULT ([\d ]+)", out.stdout)
    if not m:
        raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")
    return [int(x) for x in m.group(1).split()]


def load(nodes, key, path, body, seconds, conns):
    """wrk on every node at once, the connections split; (requests, non-2xx,
    seconds, p99 us of the slowest node)."""
    runs = [None] * len(nodes)

    def one(i):
        runs[i] = wrk(LUA % (key, body), f"http://127.0.0.1:{nodes[i].http}{path}", seconds,
                      max(conns // len(nodes), 1))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (sum(r[0] for r in runs), sum(r[1] for r in runs), max(r[2] for r in runs), max(r[3] for r in runs))


def send_run(kind, seconds, workdir, dkim=None, backend="sqlite", nodes=1):
    sink = SmtpSink()
    url = database(backend)
    sls = []
    for n in range(nodes):
        data = os.path.join(workdir, f"{kind}-{n}-{time.time_ns()}")
        os.makedirs(data)
        sls.append(Sluice(data, sink.port, url))
    key = sls[0].key()
    if dkim:
        sls[0].dkim(dkim)
    for sl in sls:
        sl.start()
    per = 1 if kind == "single" else 100
    body = json.dumps(message(1)) if per == 1 else json.dumps({"messages": [message(i) for i in range(per)]})
    path = "/v1/messages" if per == 1 else "/v1/messages/batch"
    t0 = time.monotonic()
    requests, bad, dur_us, p99_us = load(sls, key, path, body, seconds, 64 if per == 1 else 8)
    accepted = (requests - bad) * per
    ok = sink.wait_for(accepted, timeout=600)
    e2e = time.monotonic() - t0
    for sl in sls:
        sl.stop()
    sink.stop()
    for sl in sls:
        if bad:
            # Keep the server's warnings: a refusal under load must be explained.
            with open(os.path.join(sl.data, "serve.log"), errors="replace") as f:
                warnings = [line for line in f if "WARN" in line or "ERROR" in line]
            print(f"{bad} non-2xx answers; server warnings:\n" + "".join(warnings[-20:]), file=sys.stderr)
        shutil.rmtree(sl.data, ignore_errors=True)
    return {"kind": kind, "backend": backend, "nodes": nodes, "requests": requests, "non_2xx": bad,
            "accepted": accepted, "accept_mps": accepted / (dur_us / 1e6), "e2e_mps": accepted / e2e if ok else 0.0,
            "delivered_all": ok, "p99_ms": p99_us / 1000}


EVENT_COLUMNS = ("tenant_id, message, idx, address, type, at, reason, smtp_code, smtp_status, smtp_text, "
                 "remote, tls")


def fill(sl, events, addresses):
    """Writes `events` events (100 per address) straight into the record."""
    kinds = ["queued", "delivered", "deferred", "bounced", "complained"]
    now = int(time.time() * 1000)

    def rows(tenant):
        return ((tenant, f"{i // 3:032x}", i % 3, f"addr{i % addresses}@q.bench.test", kinds[i % 5],
                 now - events + i, None, 250, "2.0.0", "OK", "mx.q.bench.test", "TLSv1.3") for i in range(events))
    url = sl.env.get("SLUICE_DATABASE")
    if url:
        import psycopg
        with psycopg.connect(url) as db:
            tenant = db.execute("SELECT id FROM tenants WHERE name = 'bench'").fetchone()[0]
            with db.cursor().copy(f"COPY events ({EVENT_COLUMNS}) FROM STDIN") as copy:
                for row in rows(tenant):
                    copy.write_row(row)
            db.commit()
            db.execute("ANALYZE events")
        return
    db = sqlite3.connect(os.path.join(sl.data, "sluice.db"))
    tenant = db.execute("SELECT id FROM tenants WHERE name = 'bench'").fetchone()[0]
    db.executemany(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows(tenant))
    db.commit()
    db.close()


def query_run(events, seconds, workdir, backend="sqlite"):
    sink = SmtpSink()
    data = os.path.join(workdir, f"query-{backend}")
    os.makedirs(data, exist_ok=True)
    sl = Sluice(data, sink.port, database(backend))
    key = sl.key()
    sl.start()
    sl.stop()  # migrated, tenant made; now fill the record directly
    addresses = max(1, events // 100)
    fill(sl, events, addresses)
    sl.start()
    requests, bad, _, p50, p99 = wrk(GET_LUA % (key, addresses - 1), f"http://127.0.0.1:{sl.http}", seconds, 4, 1)
    sl.stop()
    sink.stop()
    return {"backend": backend, "events": events, "addresses": addresses, "requests": requests, "non_2xx": bad,
            "p50_ms": p50 / 1000, "p99_ms": p99 / 1000}


def postfix_peer(workdir):
    if not os.access(HARNESS, os.X_OK):
        return None
    out = os.path.join(workdir, f"postfix-{time.time_ns()}.tsv")
    env = {**os.environ, "N": "20000", "CONCS": "64", "RCPTS": "1", "REPEATS": "1", "OUT": out,
           "RUN_ROOT": os.path.join(workdir, "harness")}
    subprocess.run([HARNESS, "postfix"], env=env, check=False, capture_output=True, timeout=900)
    try:
        with open(out) as f:
            rows = [line.rstrip("\n").split("\t") for line in f if line.startswith("postfix")]
    except FileNotFoundError:
        return None
    return [{"accept_mps": float(r[9]), "e2e_mps": float(r[10])} for r in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--dkim", choices=["rsa", "ed25519"], help="sign every message (a key for bench.test)")
    ap.add_argument("--backends", default="sqlite,postgres", help="the record's databases, in one run")
    ap.add_argument("--nodes", type=int, default=1, help="also run N nodes on one PostgreSQL (N > 1)")
    args = ap.parse_args()
    backends = args.backends.split(",")
    if args.nodes > 1:
        backends.append(f"postgres x{args.nodes}")
    need("wrk", "wrk")
    need("smtp-sink", "postfix")
    subprocess.run(["cargo", "build", "--release", "-p", "sluice"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="sluice-api-bench-")
    os.chmod(work, 0o755)  # the harness's Postfix runs as the postfix user
    results = {"postfix": [], **{(b, k): [] for b in backends for k in ("single", "batch")}}
    for r in range(args.repeats):
        order = ["single", "batch"] if r % 2 == 0 else ["batch", "single"]
        for backend in backends if r % 2 == 0 else backends[::-1]:
            for kind in order:
                nodes = int(backend.rsplit("x", 1)[1]) if " x" in backend else 1
                res = send_run(kind, args.seconds, work, args.dkim, backend.split(" ")[0], nodes)
                res["backend"] = backend
                print(json.dumps(res), flush=True)
                results[(backend, kind)].append(res)
        if not args.skip_peer:
            peer = postfix_peer(work) or []
            for p in peer:
                print(json.dumps({"kind": "postfix-smtp", **p}), flush=True)
            results["postfix"].extend(peer)
    queried = [b for b in backends if " x" not in b]
    queries = [query_run(args.events, args.seconds, work, b) for b in queried] if args.events else []
    for q in queries:
        print(json.dumps({"kind": "query", **q}), flush=True)
    shutil.rmtree(work, ignore_errors=True)

    med = lambda xs, k: statistics.median(x[k] for x in xs) if xs else float("nan")
    signed = f", DKIM {args.dkim}" if args.dkim else ""
    lines = [f"## sluice HTTP API{signed}, medians of {args.repeats} ({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})",
             "| path | record | accepted msgs/s | end-to-end msgs/s (to smtp-sink) | p99 request ms |",
             "|---|---|---|---|---|"]
    for kind, label in [("single", "POST /v1/messages (1 msg/request, 64 conns)"),
                        ("batch", "POST /v1/messages/batch (100 msgs/request, 8 conns)")]:
        for b in backends:
            rs = results[(b, kind)]
            lines.append(f"| {label} | {b} | {med(rs, 'accept_mps'):.0f} | {med(rs, 'e2e_mps'):.0f} "
                         f"| {med(rs, 'p99_ms'):.1f} |")
    if results["postfix"]:
        lines.append(f"| peer: Postfix, SMTP from smtp-source (64 sessions, 4 KiB) | its queue | "
                     f"{med(results['postfix'], 'accept_mps'):.0f} | {med(results['postfix'], 'e2e_mps'):.0f} | - |")
    for q in queries:
        lines.append(f"\nGET /v1/recipients/{{address}} on {q['backend']} over {q['events']:,} events "
                     f"({q['addresses']:,} addresses): p50 {q['p50_ms']:.2f} ms, p99 {q['p99_ms']:.2f} ms, "
                     f"{q['requests']} requests, {q['non_2xx']} non-2xx")
    text = "\n".join(lines)
    print("\n" + text)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", f"api-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.txt"),
              "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
