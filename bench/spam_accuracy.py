#!/usr/bin/env python3
"""Accuracy and speed of sluice's spam filter beside SpamAssassin's and rspamd's, in one run.

Split rule (deterministic, by file name): a message is in the REPORT half when
the first byte of sha256("<folder>/<file>") (e.g. "ham/easy-ham-1-01712.eml")
is odd, and in the TRAIN half when it is even. Tuning looks only at the train
half (`--cv`: 5-fold cross-validation inside it, folds by the second byte of the
same hash mod 5); the report half is scored once, for the report.

Modes:
  (default)  train sluice on the train half, score the report half, print FP
             (hard ham separately) and recall; then the same for SpamAssassin
             (Debian's, installed if missing; Bayes trained with sa-learn on
             the same train half; local tests only), then rspamd (Debian's,
             with redis-server, installed if missing; run privately with its
             own config, ports, logs and redis; Bayes taught the same train
             half through the controller's /learnham and /learnspam; network
             checks off, DNS failing fast; the report half scored with
             /checkv2, spam = action reject / add header / rewrite subject,
             i.e. score >= the default add_header threshold 6), and write a
             result file under bench/results/.
  --cv       cross-validation inside the train half (sluice only), for tuning.
  --speed    messages scored per second on one core (taskset -c 0), sluice
             and SpamAssassin (spamd -m 1 pinned to the same core, spamc).

Usage: bench/spam_accuracy.py [--corpus DIR] [--cv] [--speed] [--no-sa] [--no-rspamd]
"""

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "target", "release", "sluice"))
# Tuning overrides passed to `sluice spam score --set` (for --cv runs only;
# the reported run uses the defaults compiled in).
SETTINGS = [kv for kv in os.environ.get("SPAM_SET", "").split(",") if kv]


def digest(name):
    return hashlib.sha256(name.encode()).digest()


def load(corpus):
    rows = []
    with open(os.path.join(corpus, "labels.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            d = digest(r["file"])
            r["half"] = "report" if d[0] % 2 else "train"
            r["fold"] = d[1] % 5
            r["path"] = os.path.join(corpus, r["file"])
            rows.append(r)
    return rows


def link_dirs(tmp, rows):
    """Folders of symlinks, one per label, for `train --ham DIR --spam DIR`."""
    dirs = {}
    for label in ("ham", "spam"):
        d = os.path.join(tmp, label)
        os.makedirs(d, exist_ok=True)
        dirs[label] = d
    for r in rows:
        os.symlink(r["path"], os.path.join(dirs[r["label"]], os.path.basename(r["path"])))
    return dirs


def sluice_train(tmp, rows, model):
    dirs = link_dirs(tmp, rows)
    subprocess.run([SLUICE, "spam", "train", "--reset", "--ham", dirs["ham"], "--spam", dirs["spam"],
                    "--model", model], check=True, stdout=subprocess.DEVNULL)


def sluice_score(rows, model, cpu=None):
    """{path: verdict} for rows, and the seconds scoring took."""
    out = {}
    cmd = ["taskset", "-c", str(cpu)] if cpu is not None else []
    cmd += [SLUICE, "spam", "score", "--model", model]
    for kv in SETTINGS:
        cmd += ["--set", kv]
    start = time.monotonic()
    for i in range(0, len(rows), 2000):
        chunk = [r["path"] for r in rows[i:i + 2000]]
        res = subprocess.run(cmd + chunk, check=True, capture_output=True, text=True)
        for line in res.stdout.splitlines():
            v = json.loads(line)
            out[v["file"]] = v
    return out, time.monotonic() - start


def figures(rows, is_spam, unsure=None):
    """FP on ham (and hard ham), recall on spam."""
    ham = [r for r in rows if r["label"] == "ham"]
    hard = [r for r in ham if r["group"].startswith("hard")]
    spam = [r for r in rows if r["label"] == "spam"]
    fp = [r for r in ham if is_spam(r)]
    fp_hard = [r for r in fp if r["group"].startswith("hard")]
    tp = [r for r in spam if is_spam(r)]
    f = {
        "ham": len(ham), "hard_ham": len(hard), "spam": len(spam),
        "fp": len(fp), "fp_rate": len(fp) / max(1, len(ham)),
        "fp_hard": len(fp_hard), "fp_hard_rate": len(fp_hard) / max(1, len(hard)),
        "recall": len(tp) / max(1, len(spam)), "fn": len(spam) - len(tp),
        "fp_files": [r["file"] for r in fp],
    }
    if unsure:
        f["unsure_ham"] = sum(1 for r in ham if unsure(r))
        f["unsure_spam"] = sum(1 for r in spam if unsure(r))
    return f


def line(name, f):
    s = (f"{name:<14} ham {f['ham']:>5} (hard {f['hard_ham']:>3})  spam {f['spam']:>5}  "
         f"FP {f['fp']:>3} = {100 * f['fp_rate']:.2f}% (hard {f['fp_hard']} = {100 * f['fp_hard_rate']:.2f}%)  "
         f"recall {100 * f['recall']:.2f}% (FN {f['fn']})")
    if "unsure_ham" in f:
        s += f"  unsure: ham {f['unsure_ham']}, spam {f['unsure_spam']}"
    return s


def run_sluice(rows, tmp):
    train = [r for r in rows if r["half"] == "train"]
    report = [r for r in rows if r["half"] == "report"]
    model = os.path.join(tmp, "model.bin")
    t0 = time.monotonic()
    sluice_train(os.path.join(tmp, "sluice-train"), train, model)
    train_s = time.monotonic() - t0
    verdicts, _ = sluice_score(report, model)
    f = figures(report, lambda r: verdicts[r["path"]]["is_spam"],
                lambda r: verdicts[r["path"]]["class"] == "unsure")
    f["train_seconds"] = round(train_s, 2)
    return f, model


def cross_validate(rows, tmp):
    """5-fold CV inside the train half; prints each fold's figures and the
    distribution of scores so thresholds and weights can be tuned on it."""
    train = [r for r in rows if r["half"] == "train"]
    allv = {}
    for k in range(5):
        fit = [r for r in train if r["fold"] != k]
        held = [r for r in train if r["fold"] == k]
        model = os.path.join(tmp, f"cv{k}.bin")
        sluice_train(os.path.join(tmp, f"cv{k}"), fit, model)
        v, _ = sluice_score(held, model)
        allv.update(v)
        print(line(f"cv fold {k}", figures(held, lambda r: v[r["path"]]["is_spam"])))
    f = figures(train, lambda r: allv[r["path"]]["is_spam"], lambda r: allv[r["path"]]["class"] == "unsure")
    print(line("cv all", f))
    for r in train:
        v = allv[r["path"]]
        wrong = v["is_spam"] != (r["label"] == "spam")
        if wrong or v["class"] == "unsure":
            sig = ",".join(f"{s['name']}:{s['score']:.2f}" for s in v["signals"])
            print(f"  {'WRONG' if wrong else 'unsure'} {r['label']:<4} {r['group']:<10} {v['score']:6.2f} {r['file']} {sig}")
    with open(os.path.join(tmp, "cv.json"), "w") as out:
        json.dump({r["path"]: allv[r["path"]] | {"label": r["label"], "group": r["group"]} for r in train}, out)
    print(f"cv verdicts: {os.path.join(tmp, 'cv.json')}")


# ---------------------------------------------------------------- SpamAssassin

def ensure_spamassassin():
    # Debian 12 ships spamd and spamc in packages of their own.
    missing = [tool for tool in ("spamassassin", "spamd", "spamc") if not shutil.which(tool)]
    if missing:
        subprocess.run(["apt-get", "install", "-y"] + missing, check=True, stdout=subprocess.DEVNULL)


def sa_version():
    out = subprocess.run(["spamassassin", "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "?"


def sa_setup(tmp):
    """A private site config (Debian's rules + Bayes at a private path, no
    auto-learn, no network tests), a private home, and a Bayes dir spamd's
    unprivileged child can use."""
    conf = os.path.join(tmp, "sa-conf")
    shutil.copytree("/etc/spamassassin", conf)
    bayes = os.path.join(tmp, "sa-bayes")
    os.makedirs(bayes)
    with open(os.path.join(conf, "local.cf"), "a") as f:
        f.write(f"\nuse_bayes 1\nbayes_auto_learn 0\nbayes_path {bayes}/bayes\nbayes_file_mode 0666\n"
                "use_auto_whitelist 0\nskip_rbl_checks 1\ndns_available no\nlock_method flock\n")
    home = os.path.join(tmp, "sa-home")
    os.makedirs(home)
    for d in (tmp, bayes, home):
        os.chmod(d, 0o777)
    return conf, bayes, home


def sa_learn(conf, home, rows, tmp):
    dirs = link_dirs(os.path.join(tmp, "sa-train"), rows)
    env = dict(os.environ, HOME=home)
    for label in ("ham", "spam"):
        subprocess.run(["sa-learn", "--local", "--siteconfigpath", conf, f"--{label}", dirs[label]],
                       check=True, env=env, stdout=subprocess.DEVNULL)
    for root, _, files in os.walk(os.path.dirname(conf)):
        if "sa-bayes" in root:
            for name in files:
                os.chmod(os.path.join(root, name), 0o666)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Spamd:
    """spamd with local tests only, `children` processes, pinned to `cpu`."""

    def __init__(self, conf, home, tmp, children, cpu=None):
        self.port = free_port()
        cmd = ["taskset", "-c", str(cpu)] if cpu is not None else []
        cmd += ["spamd", "--local", "--siteconfigpath", conf, "-i", "127.0.0.1", "-p", str(self.port),
                "-m", str(children), "--min-children", str(children), "--min-spare", str(children),
                "--max-spare", str(children), "-x", "-u", "nobody", "-H", home, "-s", "stderr",
                "--pidfile", os.path.join(tmp, f"spamd-{self.port}.pid")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "spamd.log"), "a"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("spamd did not start; see spamd.log")
        self.score("/dev/null")

    def score(self, path):
        """(score, is_spam) from `spamc -c`: "score/required", exit 1 when spam."""
        with open(path, "rb") as f:
            res = subprocess.run(["spamc", "-p", str(self.port), "-c", "-s", "5000000"], stdin=f,
                                 capture_output=True, text=True)
        score = float(res.stdout.strip().split("/")[0]) if "/" in res.stdout else 0.0
        return score, res.returncode == 1

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def run_spamassassin(rows, tmp, jobs):
    conf, _, home = sa_setup(tmp)
    train = [r for r in rows if r["half"] == "train"]
    report = [r for r in rows if r["half"] == "report"]
    t0 = time.monotonic()
    sa_learn(conf, home, train, tmp)
    train_s = time.monotonic() - t0
    spamd = Spamd(conf, home, tmp, jobs)
    try:
        with ThreadPoolExecutor(jobs) as pool:
            verdicts = dict(zip([r["path"] for r in report], pool.map(spamd.score, [r["path"] for r in report])))
    finally:
        spamd.stop()
    f = figures(report, lambda r: verdicts[r["path"]][1])
    f["train_seconds"] = round(train_s, 2)
    return f, conf, home


# ---------------------------------------------------------------- rspamd

# What the private rspamd has switched off, and why: everything that would
# ask the network (or needs an SMTP session the corpus files do not carry),
# so the figures are local and the same on every run. Written as
# local.d/<module>.conf files; printed with the result.
RSPAMD_OFF = {
    "rbl": "enabled = false;",            # DNS blocklists: RBLs, URIBL/SURBL, DWL, email lists
    "surbl": "enabled = false;",
    "emails": "enabled = false;",
    "fuzzy_check": "enabled = false;",    # fuzzy hashes at fuzzy1/2.rspamd.com
    "spf": "enabled = false;",            # DNS
    "dkim": "enabled = false;",           # DNS (keys)
    "dmarc": "enabled = false;",          # DNS
    "arc": "enabled = false;",            # DNS (keys)
    "asn": "enabled = false;",            # DNS (asn.rspamd.com)
    "whitelist": "enabled = false;",      # SPF/DKIM/DMARC-based, remote maps
    "url_redirector": "enabled = false;", # follows redirector URLs over HTTP
    "mx_check": "enabled = false;",       # DNS
    "dcc": "enabled = false;",            # external service
    "greylist": "enabled = false;",       # soft reject, not a verdict
    "ratelimit": "enabled = false;",
    "neural": "enabled = false;",         # learns from its own verdicts in redis
    "reputation": "enabled = false;",
    "rspamd_update": "enabled = false;",  # downloads rule updates
    # phishing's local checks stay; its feeds are remote (DNS / HTTP).
    "phishing": "phishtank_enabled = false;\nopenphish_enabled = false;",
    # hfilter's URL checks stay; the HELO / hostname / sender-domain / MID
    # checks need an SMTP session (none here: HFILTER_HOSTNAME_UNKNOWN, 2.5
    # points, on every message) and DNS.
    "hfilter": "helo_enabled = false;\nhostname_enabled = false;\nfrom_enabled = false;\n"
               "rcpt_enabled = false;\nmid_enabled = false;",
}
RSPAMD_OFF_TEXT = ("network checks off: RBL/URIBL/SURBL/DWL, fuzzy, SPF, DKIM, DMARC, ARC, ASN, "
                   "MX, DCC, phishtank/openphish, URL redirector, SPF/DKIM whitelists; hfilter "
                   "HELO/hostname/sender-domain checks (no SMTP session); greylist, ratelimit, neural, "
                   "reputation; remote maps (maps.rspamd.com) not fetched: DNS goes to 127.0.0.1:1 and fails fast")
# rspamd's actions that mean spam: its default actions are reject 15,
# add_header 6, greylist 4, so this is score >= 6 (greylist / soft reject
# is a "try again later", not a verdict).
RSPAMD_SPAM_ACTIONS = ("reject", "add header", "rewrite subject")
# The controller's answers to a learn request.
LEARN_STATUS = {200: "learned", 204: "too few tokens (< 11), not learned", 208: "already learned (duplicate)"}


def ensure_rspamd():
    missing = [p for p, tool in (("rspamd", "rspamd"), ("redis-server", "redis-server")) if not shutil.which(tool)]
    if missing:
        subprocess.run(["apt-get", "install", "-y"] + missing, check=True, stdout=subprocess.DEVNULL)


def rspamd_version():
    out = subprocess.run(["rspamd", "--version"], capture_output=True, text=True).stdout
    return out.strip().splitlines()[0] if out.strip() else "rspamd ?"


class Rspamd:
    """Debian's rspamd in the foreground (`-f`) with a configuration of its
    own under `tmp` (the approach of tests/test_rspamd.py): normal and
    controller workers on free loopback ports, logs and databases there, DNS
    that fails fast, the network checks of RSPAMD_OFF off, no autolearn, and
    Bayes statistics in a private redis-server. Run as `_rspamd` when we are
    root. Each process is the leader of its own process group, which stop()
    ends (and only that)."""

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "rspamd")
        self.normal, self.controller, self.redis_port = free_port(), free_port(), free_port()
        for d in ("local/local.d", "local/override.d", "db", "run", "log"):
            os.makedirs(os.path.join(self.dir, d))
        os.chmod(self.dir, 0o755)
        self.log_path = os.path.join(self.dir, "log", "rspamd.log")
        local = os.path.join(self.dir, "local", "local.d")
        files = dict(RSPAMD_OFF)
        files["redis"] = f'servers = "127.0.0.1:{self.redis_port}";'
        files["classifier-bayes"] = "autolearn = false;"
        for name, text in files.items():
            with open(os.path.join(local, f"{name}.conf"), "w") as f:
                f.write(text + "\n")
        self.config = os.path.join(self.dir, "rspamd.conf")
        with open(self.config, "w") as f:
            f.write(f""".include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    dns {{ nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 1; }}
}}
logging {{ type = "file"; filename = "{self.log_path}"; level = "notice"; }}
worker "normal" {{ bind_socket = "127.0.0.1:{self.normal}"; .include "$CONFDIR/worker-normal.inc" }}
worker "controller" {{ bind_socket = "127.0.0.1:{self.controller}"; .include "$CONFDIR/worker-controller.inc" }}
""")
        self.root = os.geteuid() == 0
        if self.root:
            subprocess.run(["chown", "-R", "_rspamd:_rspamd", self.dir], check=True)
        self.redis = self.proc = None

    def start(self, timeout=120):
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=open(os.path.join(self.dir, "redis.out"), "wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        cmd = ["rspamd", "-f", "-c", self.config]
        if self.root:
            cmd += ["-u", "_rspamd", "-g", "_rspamd"]
        for var, sub in (("LOCAL_CONFDIR", "local"), ("DBDIR", "db"), ("RUNDIR", "run"), ("LOGDIR", "log")):
            cmd.append(f"--var={var}={os.path.join(self.dir, sub)}")
        self.proc = subprocess.Popen(cmd, stdout=open(os.path.join(self.dir, "rspamd.out"), "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rspamd exited {self.proc.returncode}: {self.tail()}")
            try:
                self.get("/stat", self.controller)
                socket.create_connection(("127.0.0.1", self.normal), 1).close()
                return self
            except OSError:
                time.sleep(0.25)
        raise RuntimeError(f"rspamd did not start: {self.tail()}")

    def get(self, path, port):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return json.loads(r.read())

    def post(self, path, port, content, headers=None, timeout=60):
        """(status, reason, body) of a POST."""
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=content, method="POST",
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.reason, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.reason, e.read()

    def learn(self, path, label):
        """Teach the controller one file; `Learn-Type: bulk` makes rspamd learn
        it even when its Bayes already puts it in that class (as sa-learn does)."""
        with open(path, "rb") as f:
            content = f.read()
        status, reason, _ = self.post(f"/learn{label}", self.controller, content, {"Learn-Type": "bulk"})
        return status, reason

    def check(self, path):
        """rspamd's /checkv2 answer (a dict) for one file, from a normal worker."""
        with open(path, "rb") as f:
            content = f.read()
        status, reason, body = self.post("/checkv2", self.normal, content)
        if status != 200:
            raise RuntimeError(f"/checkv2 {path}: {status} {reason} {body[:300]!r}")
        return json.loads(body)

    def bayes_learns(self):
        """{"ham": n, "spam": n} messages in the Bayes statistics, read from
        redis (the controller's /stat is refreshed only now and then)."""
        res = subprocess.run(["redis-cli", "-p", str(self.redis_port), "HGETALL", "RS"],
                             capture_output=True, text=True)
        f = res.stdout.split()
        got = dict(zip(f[0::2], f[1::2]))
        return {k: int(got.get(f"learns_{k}", 0)) for k in ("ham", "spam")}

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def tail(self):
        try:
            with open(os.path.join(self.dir, "rspamd.out"), errors="replace") as f:
                out = f.read()[-3000:]
        except FileNotFoundError:
            out = ""
        return out + self.log()[-3000:]

    def stop(self):
        for p in (self.proc, self.redis):
            if p is None:
                continue
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            # Workers left behind by the main process: its group, by id.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def run_rspamd(rows, tmp, jobs):
    train = [r for r in rows if r["half"] == "train"]
    report = [r for r in rows if r["half"] == "report"]
    rs = Rspamd(tmp)
    try:
        rs.start()
        actions = {a["action"]: a["value"] for a in rs.get("/actions", rs.controller) if "value" in a}
        t0 = time.monotonic()
        learned = {}
        # As sa-learn: all the ham, then all the spam, one message at a time.
        for label in ("ham", "spam"):
            for r in train:
                if r["label"] == label:
                    status, reason = rs.learn(r["path"], label)
                    what = LEARN_STATUS.get(status) or f"{status} {reason}"
                    key = f"{label} {what}"
                    learned[key] = learned.get(key, 0) + 1
        train_s = time.monotonic() - t0
        bayes = rs.bayes_learns()
        with ThreadPoolExecutor(jobs) as pool:
            answers = dict(zip([r["path"] for r in report], pool.map(rs.check, [r["path"] for r in report])))
    except BaseException:
        print(rs.tail(), file=sys.stderr)
        raise
    finally:
        rs.stop()
    f = figures(report, lambda r: answers[r["path"]].get("action") in RSPAMD_SPAM_ACTIONS)
    f["train_seconds"] = round(train_s, 2)
    f["learn_answers"] = learned
    f["bayes_learned"] = bayes
    f["actions"] = actions
    f["bayes_fired"] = sum(1 for a in answers.values()
                           if {"BAYES_SPAM", "BAYES_HAM"} & set(a.get("symbols", {})))
    f["action_counts"] = {}
    for a in answers.values():
        f["action_counts"][a.get("action")] = f["action_counts"].get(a.get("action"), 0) + 1
    f["off"] = RSPAMD_OFF_TEXT
    return f


def speed(rows, tmp, model, conf, home, sa_sample):
    """Messages per second on one core (cpu 0) for both filters."""
    report = [r for r in rows if r["half"] == "report"]
    reps = max(1, 20000 // len(report))
    many = report * reps
    _, secs = sluice_score(many, model, cpu=0)
    result = {"sluice_msgs": len(many), "sluice_seconds": round(secs, 3), "sluice_per_sec": round(len(many) / secs)}
    if conf:
        spamd = Spamd(conf, home, tmp, 1, cpu=0)
        try:
            sample = report[:sa_sample]
            t0 = time.monotonic()
            for r in sample:
                spamd.score(r["path"])
            secs = time.monotonic() - t0
        finally:
            spamd.stop()
        result |= {"sa_msgs": len(sample), "sa_seconds": round(secs, 3), "sa_per_sec": round(len(sample) / secs, 1)}
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=os.path.join(ROOT, "..", "shared", "corpus", "spam"))
    ap.add_argument("--cv", action="store_true", help="cross-validate inside the train half only")
    ap.add_argument("--speed", action="store_true", help="also measure messages/second on one core")
    ap.add_argument("--no-sa", action="store_true", help="skip SpamAssassin")
    ap.add_argument("--no-rspamd", action="store_true", help="skip rspamd")
    ap.add_argument("--sa-jobs", type=int, default=2)
    ap.add_argument("--rspamd-jobs", type=int, default=2, help="concurrent /checkv2 requests")
    ap.add_argument("--sa-speed-sample", type=int, default=300)
    args = ap.parse_args()
    rows = load(os.path.abspath(args.corpus))
    tmp = tempfile.mkdtemp(prefix="spam-bench-")
    os.chmod(tmp, 0o777)
    try:
        run(args, rows, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, rows, tmp):
    if args.cv:
        cross_validate(rows, tmp)
        return
    n = {h: sum(1 for r in rows if r["half"] == h) for h in ("train", "report")}
    out = [f"split: report half = first byte of sha256('<folder>/<file>') odd; train = even "
           f"(train {n['train']}, report {n['report']} messages)"]
    sl, model = run_sluice(rows, tmp)
    out.append(line("sluice", sl))
    result = {"split": out[0], "sluice": sl}
    conf = home = None
    if not args.no_sa:
        ensure_spamassassin()
        sa, conf, home = run_spamassassin(rows, tmp, args.sa_jobs)
        out.append(line("spamassassin", sa) + f"  [{sa_version()}, Bayes on the train half, -L]")
        result["spamassassin"] = sa
    notes = []
    if not args.no_rspamd:
        ensure_rspamd()
        rs = run_rspamd(rows, tmp, args.rspamd_jobs)
        add_header = rs["actions"].get("add header", 6)
        out.append(line("rspamd", rs) + f"  [{rspamd_version()}, Bayes on the train half, "
                   f"spam = action {'/'.join(RSPAMD_SPAM_ACTIONS)} (score >= {add_header:g})]")
        notes.append(f"rspamd: {rs['off']}; autolearn off; Bayes learned "
                     f"ham {rs['bayes_learned']['ham']}, spam {rs['bayes_learned']['spam']} "
                     f"(answers: {', '.join(f'{k}: {v}' for k, v in sorted(rs['learn_answers'].items()))}); "
                     f"Bayes symbol on {rs['bayes_fired']} of {rs['ham'] + rs['spam']} report messages; "
                     f"actions {', '.join(f'{k} {v}' for k, v in sorted(rs['action_counts'].items()))}")
        result["rspamd"] = rs
    if args.speed:
        sp = speed(rows, tmp, model, conf, home, args.sa_speed_sample)
        out.append(f"speed (one core, taskset -c 0): sluice {sp['sluice_per_sec']} msgs/s "
                   f"({sp['sluice_msgs']} in {sp['sluice_seconds']} s, process incl. reading files and JSON out)")
        if "sa_per_sec" in sp:
            out.append(f"speed (one core): spamassassin spamd -m 1 + spamc {sp['sa_per_sec']} msgs/s "
                       f"({sp['sa_msgs']} in {sp['sa_seconds']} s)")
        result["speed"] = sp
    out += notes
    print("\n".join(out))
    for name in ("sluice", "spamassassin", "rspamd"):
        if name in result and result[name]["fp_files"]:
            print(f"{name} false positives: {', '.join(result[name]['fp_files'])}")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = os.path.join(ROOT, "bench", "results", f"spam-{stamp}.txt")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n\n" + json.dumps(result, indent=1) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    sys.exit(main())
