#!/usr/bin/env python3
"""IMAP over a big folder, sluice beside Dovecot on the same messages (issue 4).

Builds one folder of N messages (corpus samples, each made unique by a
header) as sluice's store and as a Maildir, then times, for each server:

  - SELECT of the folder (Dovecot: the first one builds its index, so both
    the cold and the warm figure are shown);
  - UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO
    SUBJECT DATE MESSAGE-ID)]) — what a client does to list a folder;
  - and for sluice, a retention sweep of all N messages once they expire.

sluice is reached over TCP on loopback (plaintext allowed for loopback in
this run's config); Dovecot's imap process runs pre-authenticated over pipes
(no login, no network), which favours it slightly.

    bench/imap.py [--n 100000] [--repeats 3]

Needs dovecot-imapd (apt-get install dovecot-imapd) and a release build.
"""

import argparse
import datetime
import hashlib
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "sluice")
FIXTURES = os.path.join(ROOT, "crates", "decide", "tests", "fixtures")
FETCH = b"UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])"


def samples():
    out = []
    for d in ("bounces", "autoreplies", "complaints"):
        for f in sorted(os.listdir(os.path.join(FIXTURES, d))):
            if f.endswith(".eml"):
                with open(os.path.join(FIXTURES, d, f), "rb") as fh:
                    out.append(fh.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return out


def messages(n):
    base = samples()
    for i in range(n):
        yield b"X-Bench-Seq: %d\r\n" % i + base[i % len(base)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    """Minimal IMAP client: send a tagged command, read to its completion."""

    def __init__(self, rfile, wfile):
        self.r, self.w, self.n = rfile, wfile, 0
        self.greeting = self.r.readline()

    def cmd(self, line):
        self.n += 1
        tag = b"t%d" % self.n
        self.w.write(tag + b" " + line + b"\r\n")
        self.w.flush()
        total = 0
        while True:
            ln = self.r.readline()
            if not ln:
                raise SystemExit(f"connection closed during {line!r}")
            total += len(ln)
            # Skip literal payloads ({n}\r\n then n bytes).
            if ln.endswith(b"}\r\n") and b"{" in ln:
                k = int(ln[ln.rindex(b"{") + 1:-3])
                total += len(self.r.read(k))
                continue
            if ln.startswith(tag + b" "):
                if not ln.startswith(tag + b" OK"):
                    raise SystemExit(f"{line!r} failed: {ln!r}")
                return total

    def timed(self, line):
        t = time.perf_counter()
        size = self.cmd(line)
        return (time.perf_counter() - t) * 1000, size


def build_sluice(root, msgs, received_at):
    data = os.path.join(root, "data")
    os.makedirs(data)
    pw = os.path.join(root, "pw")
    with open(pw, "w") as f:
        f.write("bench\n")
    subprocess.run([BIN, "account", "add", "bench", "--password-file", pw, "--domain", "bench.test",
                    "--data", data], check=True, capture_output=True)
    db = sqlite3.connect(os.path.join(data, "sluice.db"))
    fid = db.execute("SELECT f.id FROM folders f JOIN accounts a ON a.id = f.account_id "
                     "WHERE a.name = 'bench' AND f.name = 'Bounces/Hard'").fetchone()[0]
    rows = []
    blobs = {}
    for uid, m in enumerate(msgs, 1):
        h = hashlib.sha256(m).hexdigest()
        blobs[h] = m
        rows.append((fid, uid, h, len(m), received_at, "$Verdict_bounce $Reason_userunknown", "bounce",
                     "userunknown", "[]"))
    db.executemany("INSERT OR IGNORE INTO blobs (hash, bytes) VALUES (?, ?)", blobs.items())
    db.executemany("INSERT INTO messages (folder_id, uid, blob, size, received_at, flags, verdict, reason, rcpts) "
                   "VALUES (?,?,?,?,?,?,?,?,?)", rows)
    db.execute("UPDATE folders SET uidnext = ? WHERE id = ?", (len(rows) + 1, fid))
    db.commit()
    db.close()
    return data


def build_maildir(root, msgs, received_at):
    home = os.path.join(root, "home")
    cur = os.path.join(home, "Maildir", "cur")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(home, "Maildir", sub))
    for i, m in enumerate(msgs):
        p = os.path.join(cur, f"{received_at}.M{i}P1.bench,S={len(m)}:2,")
        with open(p, "wb") as f:
            f.write(m)
        os.utime(p, (received_at, received_at))
    conf = os.path.join(root, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"mail_location = maildir:{home}/Maildir\n"
                f"base_dir = {root}/run\nlog_path = {root}/dovecot.log\nssl = no\n")
    return home, conf


def sluice_session(data, port):
    cfg = os.path.join(os.path.dirname(data), "sluice.toml")
    with open(cfg, "w") as f:
        f.write("[imap]\nplaintext_loopback = true\n")
    proc = subprocess.Popen([BIN, "serve", "--config", cfg, "--data", data, "--smtp", f"127.0.0.1:{free_port()}",
                             "--submission", f"127.0.0.1:{free_port()}", "--imap", f"127.0.0.1:{port}", "--http", f"127.0.0.1:{free_port()}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert b"sluice listening" in proc.stdout.readline()
    s = socket.create_connection(("127.0.0.1", port))
    c = Conn(s.makefile("rb"), s.makefile("wb"))
    c.cmd(b"LOGIN bench bench")
    return proc, s, c


def dovecot_session(home, conf):
    # Dovecot refuses to serve mail as root: run its imap process as nobody.
    env = dict(os.environ, USER="bench", HOME=home)
    proc = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                             "/usr/lib/dovecot/imap", "-c", conf], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    c = Conn(proc.stdout, proc.stdin)
    assert c.greeting.startswith(b"* PREAUTH"), c.greeting
    return proc, c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if not os.path.exists(BIN):
        subprocess.run(["cargo", "build", "--release", "-p", "sluice"], cwd=ROOT, check=True)
    have_dovecot = os.path.exists("/usr/lib/dovecot/imap")
    root = tempfile.mkdtemp(prefix="imap-bench-")
    received_at = int(time.time())
    t = time.perf_counter()
    data = build_sluice(os.path.join(root, "sluice"), messages(a.n), received_at)
    print(f"built sluice store of {a.n} messages in {time.perf_counter() - t:.1f} s", flush=True)
    if have_dovecot:
        t = time.perf_counter()
        home, conf = build_maildir(os.path.join(root, "dovecot"), messages(a.n), received_at)
        print(f"built Maildir of {a.n} messages in {time.perf_counter() - t:.1f} s", flush=True)
        if os.geteuid() == 0:
            os.chmod(root, 0o755)
            subprocess.run(["chown", "-R", "nobody:nogroup", os.path.join(root, "dovecot")], check=True)
    res = {}

    def note(key, ms):
        res.setdefault(key, []).append(ms)

    port = free_port()
    for r in range(a.repeats):
        proc, s, c = sluice_session(data, port)
        # A fresh process reads the folder from the database; after that the
        # listing is cached until the folder changes.
        ms, _ = c.timed(b'SELECT "Bounces/Hard"')
        note(("sluice", "select-first"), ms)
        ms, _ = c.timed(b'SELECT "Bounces/Hard"')
        note(("sluice", "select"), ms)
        ms, size = c.timed(FETCH)
        note(("sluice", "fetch"), ms)
        c.cmd(b"LOGOUT")
        s.close()
        proc.terminate()
        proc.wait(30)
        print(f"repeat {r + 1} sluice : SELECT {res[('sluice', 'select')][-1]:8.1f} ms "
              f"(first in process {res[('sluice', 'select-first')][-1]:.1f} ms)  "
              f"UID FETCH headers {ms:8.1f} ms ({size / 1e6:.1f} MB)", flush=True)
        if have_dovecot:
            dproc, dc = dovecot_session(home, conf)
            ms, _ = dc.timed(b"SELECT INBOX")
            note(("dovecot", "select-cold" if r == 0 else "select"), ms)
            ms, size = dc.timed(FETCH)
            note(("dovecot", "fetch-cold" if r == 0 else "fetch"), ms)
            dc.cmd(b"LOGOUT")
            dproc.wait(30)
            print(f"repeat {r + 1} dovecot: SELECT {res[('dovecot', 'select-cold' if r == 0 else 'select')][-1]:8.1f} ms"
                  f"  UID FETCH headers {ms:8.1f} ms ({size / 1e6:.1f} MB)", flush=True)

    # Retention: everything has expired 31 days on.
    as_of = datetime.datetime.fromtimestamp(received_at + 31 * 86400, datetime.timezone.utc).isoformat()
    t = time.perf_counter()
    p = subprocess.run([BIN, "quarantine", "sweep", "--as-of", as_of, "--data", data], capture_output=True, text=True)
    sweep_s = time.perf_counter() - t
    print(f"sweep: {p.stdout.strip()} in {sweep_s:.1f} s ({a.n / sweep_s:.0f} msgs/s)")

    print(f"\n## IMAP over one folder of {a.n} messages, medians of {a.repeats} repeats (ms)")
    print("server   SELECT   UID-FETCH-headers")
    for srv in ("sluice", "dovecot"):
        if (srv, "fetch") in res:
            print(f"{srv:8} {statistics.median(res[(srv, 'select')]):8.1f} "
                  f"{statistics.median(res[(srv, 'fetch')]):10.1f}")
    print(f"sluice first SELECT in a fresh process (reads the database) "
          f"{statistics.median(res[('sluice', 'select-first')]):.1f} ms")
    if ("dovecot", "select-cold") in res:
        print(f"dovecot first SELECT (index build) {res[('dovecot', 'select-cold')][0]:.1f} ms, "
              f"first FETCH {res[('dovecot', 'fetch-cold')][0]:.1f} ms")
    print(f"retention sweep of {a.n}: {sweep_s:.1f} s")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
