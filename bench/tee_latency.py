#!/usr/bin/env python3
"""Relay latency with the tee on and off, in one run (issue 4).

Latency is the time from the client's final dot to the downstream's 250 for
the same message: the client and the downstream (aiosmtpd) live in this
process, so both ends read one clock. Two sluice servers are measured in
alternation on fresh data directories: `off` (no quarantine account, relay
only) and `on` (every message also classified and stored). Each repeat sends
N messages one at a time (latency), then N messages over C parallel
connections (throughput). Prints medians over repeats of p50/p99 and msgs/s.

    bench/tee_latency.py [--n 1000] [--repeats 3] [--conc 8] [--sample FILE]

Needs aiosmtpd (scripts/install-test-deps.sh installs it) and a release build
(or BIN=path to measure that binary).
"""

import argparse
import os
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from aiosmtpd.controller import Controller

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BIN") or os.path.join(ROOT, "target", "release", "sluice")
DEFAULT_SAMPLE = os.path.join(ROOT, "crates", "decide", "tests", "fixtures", "bounces", "lhost-postfix-05.eml")

dot_sent = {}
got_250 = {}


class Downstream:
    async def handle_DATA(self, server, session, envelope):
        content = envelope.content
        i = content.find(b"X-Bench-Token: ")
        if i >= 0:
            tok = content[i + 15:i + 47].decode()
            got_250[tok] = time.perf_counter()
        return "250 2.0.0 Ok"


class TimedSMTP(smtplib.SMTP):
    """Notes when the end-of-data dot leaves."""

    token = None

    def send(self, s):
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n") and self.token:
            dot_sent[self.token] = time.perf_counter()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sluice(workdir, relay_port, tee):
    data = os.path.join(workdir, "data")
    os.makedirs(data)
    if tee:
        pw = os.path.join(workdir, "pw")
        with open(pw, "w") as f:
            f.write("bench\n")
        subprocess.run([BIN, "account", "add", "bench", "--password-file", pw, "--domain", "bench.test",
                        "--data", data], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(
        [BIN, "serve", "--data", data, "--smtp", f"127.0.0.1:{port}", "--submission", f"127.0.0.1:{free_port()}",
         "--imap", f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{free_port()}", "--relay", f"127.0.0.1:{relay_port}",
         "--accept-domain", "bench.test", "--hostname", "bench.sluice.test"],
        stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, "log"), "wb"))
    line = proc.stdout.readline()
    assert b"sluice listening" in line, line
    return proc, port, data


def send_one(port, body):
    tok = uuid.uuid4().hex
    msg = b"X-Bench-Token: " + tok.encode() + b"\r\n" + body
    c = TimedSMTP("127.0.0.1", port)
    c.token = tok
    c.sendmail("", ["bounces@bench.test"], msg)
    c.quit()
    return tok


def wait_all(tokens, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(t in got_250 for t in tokens):
            return
        time.sleep(0.01)
    missing = [t for t in tokens if t not in got_250]
    raise SystemExit(f"{len(missing)} message(s) never reached the downstream")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def run(mode, n, conc, body, relay_port):
    workdir = tempfile.mkdtemp(prefix=f"tee-{mode}-")
    proc, port, data = start_sluice(workdir, relay_port, tee=(mode == "on"))
    try:
        # Warm up the pooled relay connection.
        wait_all([send_one(port, body) for _ in range(20)])
        toks = [send_one(port, body) for _ in range(n)]
        wait_all(toks)
        lat = [(got_250[t] - dot_sent[t]) * 1000 for t in toks]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(conc) as ex:
            toks = list(ex.map(lambda _: send_one(port, body), range(n)))
        wait_all(toks)
        rate = n / (time.perf_counter() - t0)
        stored = 0
        if mode == "on":
            import sqlite3
            # Let the analysis path finish, then check it kept up.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                stored = sqlite3.connect(os.path.join(data, "sluice.db")).execute(
                    "SELECT COUNT(*) FROM messages").fetchone()[0]
                if stored >= 2 * n + 20:
                    break
                time.sleep(0.1)
        return {"p50": pct(lat, 50), "p99": pct(lat, 99), "rate": rate, "stored": stored}
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--conc", type=int, default=8)
    ap.add_argument("--sample", default=DEFAULT_SAMPLE)
    a = ap.parse_args()
    if not os.path.exists(BIN):
        subprocess.run(["cargo", "build", "--release", "-p", "sluice"], cwd=ROOT, check=True)
    with open(a.sample, "rb") as f:
        body = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    relay_port = free_port()
    ctl = Controller(Downstream(), hostname="127.0.0.1", port=relay_port)
    ctl.start()
    results = {"off": [], "on": []}
    try:
        for r in range(a.repeats):
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                res = run(mode, a.n, a.conc, body, relay_port)
                results[mode].append(res)
                print(f"repeat {r + 1} tee {mode:3}: p50 {res['p50']:.3f} ms  p99 {res['p99']:.3f} ms  "
                      f"{res['rate']:.0f} msgs/s  stored {res['stored']}", flush=True)
    finally:
        ctl.stop()
    med = {m: {k: statistics.median(x[k] for x in v) for k in ("p50", "p99", "rate")} for m, v in results.items()}
    print(f"\n## medians over {a.repeats} repeats, {a.n} messages of {len(body)} bytes "
          f"(latency: one at a time; throughput: {a.conc} connections)")
    print("tee   p50_ms  p99_ms  msgs/s")
    for m in ("off", "on"):
        print(f"{m:5} {med[m]['p50']:7.3f} {med[m]['p99']:7.3f} {med[m]['rate']:7.0f}")
    print(f"added by tee: p50 {med['on']['p50'] - med['off']['p50']:+.3f} ms, "
          f"p99 {med['on']['p99'] - med['off']['p99']:+.3f} ms, "
          f"throughput {100 * (med['on']['rate'] / med['off']['rate'] - 1):+.1f}%")


if __name__ == "__main__":
    sys.exit(main())
