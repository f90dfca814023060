#!/usr/bin/env python3
"""Accuracy and speed of sluice's spam filter beside SpamAssassin's, in one run.

Split rule (deterministic, by file name): a message is in the REPORT half when
the first byte of sha256("<folder>/<file>") (e.g. "ham/easy-ham-1-01712.eml")
is odd, and in the TRAIN half when it is even. Tuning looks only at the train
half (`--cv`: 5-fold cross-validation inside it, folds by the second byte of the
same hash mod 5); the report half is scored once, for the report.

Modes:
  (default)  train sluice on the train half, score the report half, print FP
             (hard ham separately) and recall; then the same for SpamAssassin
             (Debian's, installed if missing; Bayes trained with sa-learn on
             the same train half; local tests only), and write a result file
             under bench/results/.
  --cv       cross-validation inside the train half (sluice only), for tuning.
  --speed    messages scored per second on one core (taskset -c 0), sluice
             and SpamAssassin (spamd -m 1 pinned to the same core, spamc).

Usage: bench/spam_accuracy.py [--corpus DIR] [--cv] [--speed] [--no-sa]
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
import time

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
    if shutil.which("spamassassin") and shutil.which("spamd"):
        return
    subprocess.run(["apt-get", "install", "-y", "spamassassin"], check=True, stdout=subprocess.DEVNULL)


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
    from concurrent.futures import ThreadPoolExecutor
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
    ap.add_argument("--sa-jobs", type=int, default=2)
    ap.add_argument("--sa-speed-sample", type=int, default=300)
    args = ap.parse_args()
    rows = load(os.path.abspath(args.corpus))
    tmp = tempfile.mkdtemp(prefix="spam-bench-")
    os.chmod(tmp, 0o777)
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
    if args.speed:
        sp = speed(rows, tmp, model, conf, home, args.sa_speed_sample)
        out.append(f"speed (one core, taskset -c 0): sluice {sp['sluice_per_sec']} msgs/s "
                   f"({sp['sluice_msgs']} in {sp['sluice_seconds']} s, process incl. reading files and JSON out)")
        if "sa_per_sec" in sp:
            out.append(f"speed (one core): spamassassin spamd -m 1 + spamc {sp['sa_per_sec']} msgs/s "
                       f"({sp['sa_msgs']} in {sp['sa_seconds']} s)")
        result["speed"] = sp
    print("\n".join(out))
    for name in ("sluice", "spamassassin"):
        if name in result and result[name]["fp_files"]:
            print(f"{name} false positives: {', '.join(result[name]['fp_files'])}")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = os.path.join(ROOT, "bench", "results", f"spam-{stamp}.txt")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n\n" + json.dumps(result, indent=1) + "\n")
    print(f"written: {path}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
