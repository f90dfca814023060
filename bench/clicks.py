#!/usr/bin/env python3
"""Click redirects per second: sluice's `/t/c/TOKEN` beside nginx serving a
static 302, on the same machine, in the same run.

    bench/clicks.py [--repeats 3] [--seconds 10] [--conns 64] [--backends sqlite,postgres]

sluice (release build) sends one message with click tracking to an aiosmtpd
sink (tests/peers/sink.py), the tracked link is read from the captured
message, and wrk GETs it from `--conns` connections for `--seconds`. Each
answer is a 302 sent only after the click, classified, is synced to the
event journal (record/src/journal.rs); the record follows the journal, and
the run waits until it holds as many `clicked` events as wrk counted
answers (or fails), and says how long after the load that took. nginx (Debian's, 2 worker
processes like sluice's 2 runtime threads) answers `return 302` for the same
URL shape; wrk and the server share the machine's cores either way.

Prints medians; raw figures go to bench/results/clicks-<time>.txt.
"""

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import api as harness  # noqa: E402  (the API bench's sluice, wrk and database helpers)

ROOT = harness.ROOT
SINK = os.path.join(ROOT, "tests", "peers", "sink.py")

WRK_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.errors.status,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(url, seconds, conns):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_LUA)
    out = subprocess.run(["wrk", "-t", "2", "-c", str(conns), "-d", f"{seconds}s", "-s", f.name, url],
                         capture_output=True, text=True, timeout=seconds + 120)
    os.unlink(f.name)
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", out.stdout)
    if not m:
        raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")
    requests, errors, micros, p50, p99 = map(int, m.groups())
    # wrk counts 3xx as answers, not errors; a 404 would be an error.
    if errors:
        raise SystemExit(f"wrk saw {errors} non-2xx/3xx answers from {url}")
    return requests, requests / (micros / 1e6), p50 / 1000, p99 / 1000


def nginx(port, workdir):
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 2;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx.err warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    location /t/c/ {{ return 302 https://shop.example/offer?id=7; }}
  }}
}}
""")
    return subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"], stderr=subprocess.DEVNULL)


class Sink:
    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "sink")
        os.makedirs(self.dir)
        self.proc = subprocess.Popen([sys.executable, SINK, "--dir", self.dir], stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().split()[-1])

    def message(self, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name in os.listdir(os.path.join(self.dir, "messages")):
                if name.endswith(".json"):
                    with open(os.path.join(self.dir, "messages", name[:-5] + ".eml"), "rb") as f:
                        return f.read()
            time.sleep(0.05)
        raise SystemExit("the tracked message never reached the sink")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def clicked(data, db):
    """`clicked` events in the record."""
    if db is None:
        with sqlite3.connect(os.path.join(data, "sluice.db")) as c:
            return c.execute("SELECT COUNT(*) FROM events WHERE type = 'clicked'").fetchone()[0]
    import psycopg
    with psycopg.connect(db) as c:
        return c.execute("SELECT COUNT(*) FROM events WHERE type = 'clicked'").fetchone()[0]


def sluice_run(backend, seconds, conns):
    with tempfile.TemporaryDirectory() as workdir:
        sink = Sink(workdir)
        db = harness.database(backend)
        data = os.path.join(workdir, "data")
        os.makedirs(data)
        s = harness.Sluice(data, sink.port, db)
        with open(s.cfg, "a") as f:
            f.write(f'[tracking]\nbase_url = "http://127.0.0.1:{s.http}"\n')
        key = s.key()
        s.start()
        try:
            body = {"from": "app@bench.test", "to": ["reader@dest.bench.test"], "subject": "offer",
                    "html": '<p><a href="https://shop.example/offer?id=7">offer</a></p>', "track_clicks": True}
            req = urllib.request.Request(f"http://127.0.0.1:{s.http}/v1/messages", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {key}"})
            urllib.request.urlopen(req, timeout=10).read()
            raw = sink.message().decode("utf-8", "replace").replace("=\r\n", "")
            link = re.search(r'(http://127\.0\.0\.1:\d+/t/c/[A-Za-z0-9_-]+)', raw).group(1)
            before = clicked(data, db)
            perf = None
            if os.environ.get("PERF"):
                perf = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-o", os.environ["PERF"], "-p",
                                         str(s.proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            result = wrk(link, seconds, conns)
            if perf:
                perf.send_signal(2)
                perf.wait(30)
            # Every answer followed its click's sync to the journal; the
            # record follows the journal: wait for it, and say how long.
            end = time.monotonic()
            while clicked(data, db) - before < result[0]:
                if time.monotonic() - end > 300:
                    raise SystemExit(f"{result[0]} redirects answered but only "
                                     f"{clicked(data, db) - before} clicks recorded after 300 s")
                time.sleep(0.2)
            return result + (time.monotonic() - end,)
        finally:
            s.stop()
            sink.stop()


def nginx_run(seconds, conns):
    with tempfile.TemporaryDirectory() as workdir:
        port = harness.free_port()
        proc = nginx(port, workdir)
        time.sleep(0.5)
        try:
            return wrk(f"http://127.0.0.1:{port}/t/c/AAAA", seconds, conns)
        finally:
            proc.terminate()
            proc.wait(10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--backends", default="sqlite,postgres")
    a = ap.parse_args()
    harness.need("wrk", "wrk")
    harness.need("nginx", "nginx")
    runs = {b: [] for b in a.backends.split(",")}
    runs["nginx"] = []
    for _ in range(a.repeats):
        for b in a.backends.split(","):
            runs[b].append(sluice_run(b, a.seconds, a.conns))
        runs["nginx"].append(nginx_run(a.seconds, a.conns))
    lines = [f"clicks: wrk -t2 -c{a.conns} -d{a.seconds}s, {a.repeats} repeats, medians"]
    peer = statistics.median(r[1] for r in runs["nginx"])
    for name, rs in runs.items():
        rate = statistics.median(r[1] for r in rs)
        p50 = statistics.median(r[2] for r in rs)
        p99 = statistics.median(r[3] for r in rs)
        what = "static 302" if name == "nginx" else f"sluice /t/c, recorded ({name})"
        behind = "" if name == "nginx" else \
            f"  record complete {statistics.median(r[4] for r in rs):.1f} s after the load"
        lines.append(f"  {what:38} {rate:10,.0f} redirects/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
                     f"  {rate / peer:5.2f}x nginx{behind}")
    out = "\n".join(lines)
    print(out)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", f"clicks-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.txt"),
              "w") as f:
        f.write(out + "\n" + json.dumps(runs) + "\n")


if __name__ == "__main__":
    main()
