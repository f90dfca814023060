#!/usr/bin/env python3
"""Soak: sluice at half of its measured maximum throughput, tee on, for a
long time (issue 15, item 9). Every minute it prints what would show a leak
or a slow build-up: resident memory, open file descriptors, spool and
SQLite (database and WAL) size, and the p50/p99 accept latency (the time
from MAIL to the 250 after DATA, on persistent connections).

    bench/soak.py [--minutes 30] [--conc 8] [--sample FILE]

The downstream is Postfix's smtp-sink (C, so it is never the bottleneck);
every message is relayed and also classified and filed in a store account.
The maximum is measured first (20 s, same clients, same server). Needs a
release build (or BIN=path) and Postfix's smtp-sink
(scripts/install-test-deps.sh installs it).
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BIN") or os.path.join(ROOT, "target", "release", "sluice")
SMTP_SINK = "/usr/sbin/smtp-sink"
DEFAULT_SAMPLE = os.path.join(ROOT, "crates", "decide", "tests", "fixtures", "bounces", "lhost-postfix-05.eml")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink():
    port = free_port()
    user = ["-u", "nobody"] if os.getuid() == 0 else []
    proc = subprocess.Popen([SMTP_SINK, *user, f"127.0.0.1:{port}", "256"], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("smtp-sink did not start")


def start_sluice(workdir, relay_port):
    data = os.path.join(workdir, "data")
    os.makedirs(data)
    pw = os.path.join(workdir, "pw")
    with open(pw, "w") as f:
        f.write("soak\n")
    subprocess.run([BIN, "account", "add", "soak", "--password-file", pw, "--domain", "soak.test",
                    "--data", data], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(
        [BIN, "serve", "--data", data, "--smtp", f"127.0.0.1:{port}", "--submission", f"127.0.0.1:{free_port()}",
         "--imap", f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{free_port()}",
         "--relay", f"127.0.0.1:{relay_port}", "--accept-domain", "soak.test", "--hostname", "soak.sluice.test"],
        stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, "log"), "wb"))
    line = proc.stdout.readline()
    assert b"sluice listening" in line, line
    return proc, port, data


class Load:
    """`conc` persistent connections sending `body`; `rate` (msgs/s over
    all of them) or as fast as they can (rate None). Latencies in ms."""

    def __init__(self, port, body, conc, rate=None):
        self.port, self.body, self.conc, self.rate = port, body, conc, rate
        self.lock = threading.Lock()
        self.lat, self.sent, self.errors = [], 0, 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(conc)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def client(self, i):
        conn, n, t0 = None, 0, time.perf_counter()
        while not self.stop.is_set():
            if self.rate:
                ahead = t0 + n * self.conc / self.rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            try:
                if conn is None:
                    conn = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
                    conn.ehlo("soak.client")
                start = time.perf_counter()
                conn.sendmail("", ["bounces@soak.test"], self.body)
                ms = (time.perf_counter() - start) * 1000
                with self.lock:
                    self.lat.append(ms)
                    self.sent += 1
            except (smtplib.SMTPException, OSError):
                with self.lock:
                    self.errors += 1
                conn = None
                time.sleep(0.1)
            n += 1
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                pass

    def take(self):
        with self.lock:
            lat, sent, errors = self.lat, self.sent, self.errors
            self.lat, self.sent, self.errors = [], 0, 0
        return lat, sent, errors

    def end(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def size_mib(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total / 2**20


def file_mib(path):
    try:
        return os.path.getsize(path) / 2**20
    except OSError:
        return 0.0


def process(pid):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def trend(values):
    """Least-squares slope per minute over the second half of the run,
    relative to the mean: what a leak looks like."""
    half = values[len(values) // 2:]
    if len(half) < 3:
        return 0.0
    xs = range(len(half))
    mx, my = statistics.mean(xs), statistics.mean(half)
    den = sum((x - mx) ** 2 for x in xs) or 1
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, half)) / den
    return 100 * slope / my if my else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=int, default=30)
    ap.add_argument("--conc", type=int, default=8)
    ap.add_argument("--sample", default=DEFAULT_SAMPLE)
    a = ap.parse_args()
    if not os.path.exists(BIN):
        subprocess.run(["cargo", "build", "--release", "-p", "sluice"], cwd=ROOT, check=True)
    with open(a.sample, "rb") as f:
        body = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    workdir = tempfile.mkdtemp(prefix="sluice-soak-")
    sink, sink_port = start_sink()
    proc, port, data = start_sluice(workdir, sink_port)
    try:
        probe = Load(port, body, a.conc).start()
        time.sleep(20)
        probe.end()
        _, sent, _ = probe.take()
        peak = sent / 20
        rate = peak / 2
        print(f"# maximum {peak:.0f} msgs/s over {a.conc} connections ({len(body)}-byte bounces, tee on); "
              f"soaking at {rate:.0f} msgs/s for {a.minutes} min", flush=True)
        print("| minute | msgs/s | p50 ms | p99 ms | errors | RSS MiB | fds | spool MiB | db MiB | WAL MiB |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
        load = Load(port, body, a.conc, rate=rate).start()
        rows = []
        for minute in range(1, a.minutes + 1):
            time.sleep(60)
            lat, sent, errors = load.take()
            rss, fds = process(proc.pid)
            row = (minute, sent / 60, pct(lat, 50), pct(lat, 99), errors, rss, fds,
                   size_mib(os.path.join(data, "spool")), file_mib(os.path.join(data, "sluice.db")),
                   file_mib(os.path.join(data, "sluice.db-wal")))
            rows.append(row)
            print("| {} | {:.0f} | {:.2f} | {:.2f} | {} | {:.1f} | {} | {:.1f} | {:.1f} | {:.1f} |".format(*row),
                  flush=True)
        load.end()
        names = ["p99 ms", "RSS MiB", "fds", "spool MiB", "WAL MiB"]
        cols = [3, 5, 6, 7, 9]
        print("\ntrend over the second half (% of the mean per minute; ~0 = flat):")
        for name, c in zip(names, cols):
            print(f"  {name:10} {trend([r[c] for r in rows]):+.2f}%/min")
        print("  (the database grows by design: every copy is kept until its retention)")
    finally:
        proc.terminate()
        proc.wait(60)
        sink.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
