#!/usr/bin/env python3
"""Side-by-side classifier evaluation: sluice against Sisimai on a labelled
folder (issue 16, items 1 and 2). Python 3, standard library only.

    bench/classify_peers.py DIR [--split tune|validate|all] [--misses]
                            [--check-eval] [--write-split]

DIR holds .eml files and labels.jsonl (one row per failed recipient: file,
engine, reason, status, hardbounce, recipient, confidence, go_alt), e.g.
/work/shared/corpus/bounces/sisimai. Both tools run once over the same files
(`sluice classify` in one process, bench/sisimai_json.pl in one perl) and are
scored with the rules of crates/decide/src/eval.rs, reimplemented here:
  - a label line that eval.rs's LabelRow cannot deserialise is dropped (the
    CLI says so on stderr); go_alt is a reason or a whole alternative label
    whose reason counts;
  - only rows with confidence "high" (or none) and a reason count;
  - the recipient is matched ASCII-case-insensitively, or the first one is
    taken when the label names none; the go_alt reason counts as right too;
  - status is scored only where the label is an RFC 3463 code (not x.0.9yy);
  - hard/soft is scored where the label has hardbounce.
It prints markdown: rows counted and reason/status/recipient/hard-soft
accuracy of each tool, tune vs validate with the gap (--split all), right/total
per expected reason, the top confusions, throughput (files/s, wall time; the
page cache is warmed first so both tools pay the same file reads), notes on
what Sisimai did not recognise, and with --misses the rows sluice gets wrong.
--check-eval also runs `sluice classify --eval DIR` and checks that this
scorer renders the very same report for sluice (exit 1 if not).
A folder whose labels carry no reason (complaints, autoreplies, not-bounces,
spam) is not scored: it gets what each tool says, by label and by file.

The split (item 2): each labelled folder's files go ~70% to "tune" and ~30%
to "validate", by file, stratified by MTA (the labels' engine; spam by group)
and ordered by a SHA-256 of the file name, so no random state is involved. An
engine with one file goes to tune. bench/corpus-split.txt (one line per file:
`tune|validate<TAB>folder/file`) pins the split; files it does not list are
computed. --write-split adds every labelled folder of the corpus to it.

The sluice binary is $SLUICE, else target/release/sluice, else
target/debug/sluice. bench/classify_peers.sh is the entry point that also
installs Sisimai (Debian's libsisimai-perl).
"""

import argparse
import collections
import hashlib
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SISIMAI_SCRIPT = os.path.join(ROOT, "bench", "sisimai_json.pl")
SPLIT_FILE = os.path.join(ROOT, "bench", "corpus-split.txt")
CORPUS_ROOT = os.environ.get("CORPUS_ROOT", "/work/shared/corpus")
TUNE_SHARE = 0.7
TOP_CONFUSIONS = 10
ARG_BYTES = 64 * 1024  # per sluice process, far below ARG_MAX


# ---------------------------------------------------------------- labels


STRING_FIELDS = ("engine", "reason", "status", "recipient", "confidence")


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate field")  # serde rejects these too
    return dict(pairs)


def _reject_constant(name):
    raise ValueError(f"not JSON: {name}")  # NaN, Infinity: serde_json refuses


def parse_label(line):
    """The row as eval.rs's LabelRow would read it, or a reason it would not."""
    try:
        row = json.loads(line, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except ValueError as e:
        return None, f"not JSON ({e})"
    if not isinstance(row, dict):
        return None, "not an object"
    if not isinstance(row.get("file"), str):
        return None, "file missing or not a string"
    for key in STRING_FIELDS:
        if row.get(key) is not None and not isinstance(row[key], str):
            return None, f"{key} is a {type(row[key]).__name__}, not a string"
    if row.get("hardbounce") is not None and not isinstance(row["hardbounce"], bool):
        return None, "hardbounce is not a boolean"
    alt = row.get("go_alt")
    if isinstance(alt, dict):  # the whole alternative label: its reason counts
        alt = alt.get("reason")
    if alt is not None and not isinstance(alt, str):
        return None, f"go_alt is a {type(alt).__name__}"
    row["go_alt"] = alt
    return row, None


def label_lines(folder):
    """The non-blank lines of labels.jsonl, split as Rust's str::lines does."""
    with open(os.path.join(folder, "labels.jsonl"), encoding="utf-8") as f:
        text = f.read()
    lines = (line[:-1] if line.endswith("\r") else line for line in text.split("\n"))
    return [line for line in lines if line.strip()]


def load_labels(folder):
    """(rows, dropped): dropped counts (why, would it have counted) per line left out."""
    rows, dropped = [], collections.Counter()
    for line in label_lines(folder):
        row, why = parse_label(line)
        if row is None:
            dropped[(why, counts(_loose(line)))] += 1
        else:
            rows.append(row)
    return rows, dropped


def _loose(line):
    try:
        row = json.loads(line)
    except ValueError:
        return {}
    return row if isinstance(row, dict) else {}


def labelled_files(folder):
    """Every file labels.jsonl names, read or not by LabelRow: the files to run."""
    return sorted({f for f in (_loose(line).get("file") for line in label_lines(folder)) if isinstance(f, str)})


# ---------------------------------------------------------------- scoring


class Tally:
    def __init__(self):
        self.right = 0
        self.total = 0

    def add(self, ok):
        self.total += 1
        self.right += int(bool(ok))

    def ratio(self):
        return 1.0 if self.total == 0 else self.right / self.total

    def pct(self):
        return f"{100.0 * self.ratio():6.2f}% ({self.right}/{self.total})"


class Report:
    def __init__(self):
        self.rows = 0
        self.reason, self.recipient, self.status, self.hard = Tally(), Tally(), Tally(), Tally()
        self.by_reason = collections.defaultdict(Tally)
        self.by_status = collections.defaultdict(Tally)
        self.by_engine = collections.defaultdict(Tally)
        self.confusion = collections.Counter()  # (expected, got) -> count
        self.misses = []  # (file, expected, got)


def is_rfc3463(s):
    parts = s.split(".")
    if len(parts) != 3:
        return False
    cls, subject, detail = parts
    return (
        cls in ("2", "4", "5")
        and len(subject) == 1
        and subject in "01234567"
        and detail != ""
        and all(c in "0123456789" for c in detail)
        and not (subject == "0" and len(detail) == 3 and detail.startswith("9"))
    )


def counts(row):
    return row.get("confidence") in (None, "high") and row.get("reason") is not None


def ascii_lower(s):
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def find_entry(recipients, want):
    """The recipient a label row speaks of, as eval.rs picks it."""
    if recipients is None:
        return None
    want = want or ""
    for r in recipients:
        if ascii_lower(r["address"]) == ascii_lower(want):
            return r
    return recipients[0] if recipients and want == "" else None


def evaluate(rows, results):
    """Scores results ({file: [recipient dicts]}) against label rows."""
    r = Report()
    for row in filter(counts, rows):
        r.rows += 1
        expected = row["reason"]
        entry = find_entry(results.get(row["file"]), row.get("recipient"))
        got = entry["reason"] if entry else "(none)"
        ok = got == expected or row.get("go_alt") == got
        r.reason.add(ok)
        r.recipient.add(entry is not None or not row.get("recipient"))
        r.by_reason[expected].add(ok)
        r.by_engine[row.get("engine") or ""].add(ok)
        if not ok:
            r.confusion[(expected, got)] += 1
            r.misses.append((row["file"], expected, got, row.get("recipient")))
        status = row.get("status")
        if status is not None and is_rfc3463(status):
            good = entry is not None and entry.get("status") == status
            r.status.add(good)
            r.by_status[status].add(good)
        if row.get("hardbounce") is not None:
            r.hard.add(entry is not None and entry.get("hard") == row["hardbounce"])
    return r


def render_like_eval(r):
    """The text `sluice classify --eval` prints (Report::render), for --check-eval."""
    out = [
        f"rows scored (confidence high): {r.rows}",
        f"reason accuracy:    {r.reason.pct()}",
        f"recipient accuracy: {r.recipient.pct()}",
        f"status accuracy:    {r.status.pct()}  (RFC 3463 labels only)",
        f"hard/soft accuracy: {r.hard.pct()}",
    ]
    for title, table in (("reason", r.by_reason), ("status", r.by_status), ("engine", r.by_engine)):
        out += ["", f"per {title}:"] + [f"  {k:<24} {table[k].pct()}" for k in sorted(table)]
    out += ["", "confusion (expected → got: count):"]
    out += [f"  {e:<16} → {g:<16} {n}" for (e, g), n in sorted(r.confusion.items())]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the tools


def sluice_binary():
    for path in (
        os.environ.get("SLUICE"),
        os.path.join(ROOT, "target", "release", "sluice"),
        os.path.join(ROOT, "target", "debug", "sluice"),
    ):
        if path and os.access(path, os.X_OK):
            return path
    sys.exit("classify_peers: no sluice binary (set SLUICE, or build target/release/sluice)")


def chunks(files, limit=ARG_BYTES):
    batch, size = [], 0
    for f in files:
        if batch and size + len(f) + 1 > limit:
            yield batch
            batch, size = [], 0
        batch.append(f)
        size += len(f) + 1
    if batch:
        yield batch


def run_sluice(binary, folder, files):
    """({file: recipients}, {file: verdict}, errors, wall seconds): `sluice
    classify` over files, in as few processes as the argument limit allows."""
    results, verdicts, errors, lines = {}, {}, {}, []
    start = time.perf_counter()
    for batch in chunks(files):
        done = subprocess.run(
            [binary, "classify", "--format", "jsonl", *batch],
            cwd=folder, capture_output=True, text=True, check=False,
        )
        if done.returncode not in (0, 1):  # 1: some file could not be read
            sys.exit(f"classify_peers: sluice classify failed:\n{done.stderr}")
        lines += done.stdout.splitlines()
    seconds = time.perf_counter() - start
    for line in lines:
        v = json.loads(line)
        if "error" in v:
            errors[v["file"]] = v["error"]
        else:
            verdicts[v["file"]] = v.get("verdict")
            results[v["file"]] = [
                {"address": x["address"], "reason": x["reason"], "status": x.get("status"), "hard": x.get("hard")}
                for x in v.get("recipients", [])
            ]
    return results, verdicts, errors, seconds


def run_sisimai(folder, files):
    """({file: recipients}, rows by kind, summary, wall seconds)."""
    start = time.perf_counter()
    done = subprocess.run(
        ["perl", SISIMAI_SCRIPT, "-"], input="\n".join(files) + "\n",
        cwd=folder, capture_output=True, text=True, check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"classify_peers: {SISIMAI_SCRIPT} failed:\n{done.stderr}")
    results, odd, summary = {}, {"not a bounce": [], "error": []}, {}
    for line in done.stdout.splitlines():
        v = json.loads(line)
        if "summary" in v:
            summary = v["summary"]
        elif "error" in v:
            odd["error"].append((v["file"], v["error"]))
            results.setdefault(v["file"], [])
        elif v.get("bounce") is False:
            odd["not a bounce"].append(v["file"])
            results.setdefault(v["file"], [])
        else:
            results.setdefault(v["file"], []).append(
                {"address": v["recipient"], "reason": v["reason"], "status": v["status"], "hard": v["hardbounce"]}
            )
    summary["stderr_lines"] = len(done.stderr.splitlines())
    return results, odd, summary, seconds


def warm_cache(folder, files):
    """Reads every file once so that neither tool pays for a cold page cache."""
    for f in files:
        with open(os.path.join(folder, f), "rb") as fh:
            fh.read()


# ---------------------------------------------------------------- the split


def folder_key(folder):
    """The folder as corpus-split.txt names it: relative to the corpus root."""
    full, root = os.path.abspath(folder), os.path.abspath(CORPUS_ROOT)
    if os.path.commonpath([full, root]) == root and full != root:
        return os.path.relpath(full, root)
    return os.path.basename(full.rstrip("/"))


def file_hash(name):
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def stratum(row):
    """The MTA that wrote the bounce; for other corpora the nearest analogue."""
    return row.get("engine") or row.get("group") or ""


def compute_split(strata):
    """{file: part} from {file: stratum}: per stratum, files in hash order,
    the first round(70%) (at least one) to tune, the rest to validate."""
    groups = collections.defaultdict(list)
    for f, s in strata.items():
        groups[s].append(f)
    split = {}
    for files in groups.values():
        files.sort(key=lambda f: (file_hash(f), f))
        n_tune = max(1, int(TUNE_SHARE * len(files) + 0.5))
        for i, f in enumerate(files):
            split[f] = "tune" if i < n_tune else "validate"
    return split


def read_split_file(path=SPLIT_FILE):
    """{"folder/file": part} from corpus-split.txt (missing file: empty)."""
    pinned = {}
    if not os.path.exists(path):
        return pinned
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line and not line.startswith("#"):
                part, name = line.split("\t", 1)
                pinned[name] = part
    return pinned


def file_strata(folder):
    """{file: stratum} of a folder's labelled files (the folder is the label
    where there is no labels.jsonl)."""
    if os.path.exists(os.path.join(folder, "labels.jsonl")):
        strata = {}
        for row in map(_loose, label_lines(folder)):
            if isinstance(row.get("file"), str):
                strata.setdefault(row["file"], stratum(row))
        return strata
    return {f: "" for f in sorted(os.listdir(folder)) if os.path.isfile(os.path.join(folder, f))}


def split_for(folder):
    """{file: part} for one folder: the pinned list, computed where unlisted."""
    key, pinned = folder_key(folder), read_split_file()
    computed = compute_split(file_strata(folder))
    return {f: pinned.get(f"{key}/{f}", part) for f, part in computed.items()}


def labelled_folders(root=CORPUS_ROOT):
    """Corpus folders (relative) with labels.jsonl, and bounces/not-bounces."""
    found = []
    for dirpath, _, names in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if "labels.jsonl" in names or rel == os.path.join("bounces", "not-bounces"):
            found.append(rel)
    return sorted(found)


def write_split_file(path=SPLIT_FILE):
    """Writes every labelled folder's split, keeping the lines already pinned."""
    lines = []
    for rel in labelled_folders():
        for f, part in sorted(split_for(os.path.join(CORPUS_ROOT, rel)).items()):
            lines.append(f"{part}\t{rel}/{f}")
    header = (
        "# The tuning/validation split of the labelled corpora (issue 16, item 2).\n"
        "# Written by bench/classify_peers.py --write-split, which keeps the part of every file\n"
        "# already listed here and computes the others.\n"
        "# part<TAB>folder/file, folder relative to the corpus root.\n"
    )
    with open(path, "w", encoding="utf-8") as f:
        f.write(header + "\n".join(lines) + "\n")
    return len(lines)


# ---------------------------------------------------------------- output


def shown(path):
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def frac(t):
    return f"{100.0 * t.ratio():.1f}% ({t.right}/{t.total})"


METRICS = (
    ("reason", "reason"),
    ("status (RFC 3463 labels)", "status"),
    ("recipient", "recipient"),
    ("hard/soft", "hard"),
)


def headline_table(a, b):
    rows = [("rows counted", a.rows, b.rows)]
    rows += [(name, frac(getattr(a, m)), frac(getattr(b, m))) for name, m in METRICS]
    return table(("metric", "sluice", "Sisimai"), rows)


def gap(t1, t2):
    return f"{100.0 * (t1.ratio() - t2.ratio()):+.1f} pts"


def split_table(parts):
    """parts: {part: (sluice report, sisimai report)} for tune and validate."""
    (st, mt), (sv, mv) = parts["tune"], parts["validate"]
    rows = [("rows counted", st.rows, sv.rows, "", mt.rows, mv.rows, "")]
    for name, m in METRICS:
        a, b, c, d = (getattr(x, m) for x in (st, sv, mt, mv))
        rows.append((name, frac(a), frac(b), gap(a, b), frac(c), frac(d), gap(c, d)))
    header = ("metric", "sluice tune", "sluice validate", "gap", "Sisimai tune", "Sisimai validate", "gap")
    return table(header, rows)


def per_reason_table(a, b, sisimai_reasons):
    rows = []
    for reason in sorted(a.by_reason, key=lambda k: (-a.by_reason[k].total, k)):
        s, m = a.by_reason[reason], b.by_reason[reason]
        mark = " †" if sisimai_reasons and reason not in sisimai_reasons else ""
        rows.append((reason + mark, s.total, f"{s.right}/{s.total}", f"{m.right}/{m.total}"))
    return table(("expected reason", "rows", "sluice", "Sisimai"), rows)


def confusion_table(report):
    top = sorted(report.confusion.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CONFUSIONS]
    return table(("expected", "got", "count"), [(e, g, n) for (e, g), n in top]) if top else "(none)"


def throughput_table(n, sluice_s, sisimai_s, sisimai_summary):
    inner = sisimai_summary.get("seconds")
    rows = [
        ("sluice", n, f"{sluice_s:.3f}", f"{n / sluice_s:,.0f}", "one `sluice classify` process"),
        ("Sisimai", n, f"{sisimai_s:.3f}", f"{n / sisimai_s:,.0f}",
         f"one perl process; {inner:.3f} s ({n / inner:,.0f}/s) without perl start-up" if inner else "one perl process"),
    ]
    return table(("tool", "files", "wall s", "messages/s", "how"), rows)


def some(names, limit=20):
    names = sorted(names)
    return ", ".join(names[:limit]) + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def sisimai_notes(odd, summary, rows, sisimai_reasons, scored=True):
    notes = []
    if odd["not a bounce"] and scored:
        notes.append(f"Sisimai found no bounce in {len(odd['not a bounce'])} file(s): " + some(odd["not a bounce"]))
    if odd["error"]:
        notes.append(f"Sisimai died on {len(odd['error'])} file(s): "
                     + "; ".join(f"{f}: {e}" for f, e in odd["error"]))
    if summary.get("stderr_lines"):
        notes.append(f"Sisimai wrote {summary['stderr_lines']} line(s) of warnings on standard error")
    lacking = collections.Counter(r["reason"] for r in rows if counts(r) and r["reason"] not in sisimai_reasons)
    if sisimai_reasons and lacking:
        notes.append(f"† reasons Sisimai {summary.get('sisimai', '')} cannot give at all (newer taxonomy): "
                     + ", ".join(f"{k} ({n})" for k, n in sorted(lacking.items()))
                     + f"; {sum(lacking.values())} counted rows")
    return notes


def misses_list(report, sisimai_results):
    out = []
    for file, expected, got, want in report.misses:
        entry = find_entry(sisimai_results.get(file), want)
        out.append(f"- {file} <{want or ''}>: {expected} → sluice {got} (Sisimai: {entry['reason'] if entry else '(none)'})")
    return "\n".join(out) if out else "(none)"


# ---------------------------------------------------------------- main


def check_eval(binary, folder, rows, sluice_results):
    """Compares this scorer with `sluice classify --eval` over the whole folder."""
    env = {k: v for k, v in os.environ.items() if k != "SLUICE_EVAL_MISSES"}
    done = subprocess.run([binary, "classify", "--eval", folder], capture_output=True, text=True, env=env, check=False)
    ours = render_like_eval(evaluate(rows, sluice_results))
    if done.returncode == 0 and done.stdout == ours:
        return f"check: this scorer's sluice report equals `sluice classify --eval` ({len(ours.splitlines())} lines)"
    sys.stderr.write("--- sluice classify --eval\n" + done.stdout + done.stderr + "--- classify_peers.py\n" + ours)
    return None


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dir", nargs="?", help="a labelled folder (labels.jsonl + files)")
    p.add_argument("--split", choices=("tune", "validate", "all"), default="all")
    p.add_argument("--misses", action="store_true", help="list the files where sluice's reason is wrong")
    p.add_argument("--check-eval", action="store_true", help="check the scorer against `sluice classify --eval`")
    p.add_argument("--write-split", action="store_true", help=f"write {os.path.relpath(SPLIT_FILE, ROOT)} and exit")
    args = p.parse_args(argv)
    if not args.write_split and not args.dir:
        p.error("give a labelled folder")
    return args


class Runs:
    """Both tools run once over the same files."""

    def __init__(self, binary, folder, files):
        warm_cache(folder, files)
        self.binary, self.files = binary, files
        self.sluice, self.verdicts, self.sluice_errors, self.sluice_secs = run_sluice(binary, folder, files)
        self.sisimai, self.odd, self.summary, self.sisimai_secs = run_sisimai(folder, files)
        self.sisimai_reasons = set(self.summary.get("reasons", []))

    def header(self, title, how="Scored with the rules of crates/decide/src/eval.rs."):
        return [title, "",
                f"sluice: `{shown(self.binary)}`; Sisimai {self.summary.get('sisimai', '?')} (Debian libsisimai-perl). " + how,
                ""]

    def throughput(self):
        return ["### Throughput (each tool once over the files, file reads included, page cache warm)", "",
                throughput_table(len(self.files), self.sluice_secs, self.sisimai_secs, self.summary), ""]


def scored_report(runs, rows, split, args, dropped):
    """The markdown of the side-by-side scores."""
    s_all, m_all = evaluate(rows, runs.sluice), evaluate(rows, runs.sisimai)
    out = runs.header(f"## sluice vs Sisimai: {folder_key(args.dir)} (split: {args.split}, {len(runs.files)} files)")
    out += [headline_table(s_all, m_all), ""]
    if args.split == "all":
        out += split_section(runs, rows, split)
    out += ["### Per reason (right/total)", "", per_reason_table(s_all, m_all, runs.sisimai_reasons), "",
            "### Top confusions: sluice", "", confusion_table(s_all), "",
            "### Top confusions: Sisimai", "", confusion_table(m_all), ""]
    out += runs.throughput() + notes_section(runs, rows, dropped)
    if args.misses:
        out += ["### Files where sluice's reason is wrong", "", misses_list(s_all, runs.sisimai), ""]
    return out


def split_section(runs, rows, split):
    parts = {}
    for part in ("tune", "validate"):
        sub = [r for r in rows if split.get(r["file"]) == part]
        parts[part] = (evaluate(sub, runs.sluice), evaluate(sub, runs.sisimai))
    n = collections.Counter(split.get(f) for f in runs.files)
    return [f"### Tune ({n['tune']} files) vs validate ({n['validate']} files); gap = tune − validate", "",
            split_table(parts), ""]


def notes_section(runs, rows, dropped, scored=True):
    notes = sisimai_notes(runs.odd, runs.summary, rows, runs.sisimai_reasons, scored)
    if dropped:
        notes.insert(0, "label lines eval.rs's LabelRow cannot read, so dropped here as `sluice classify --eval` drops them: "
                     + "; ".join(f"{n} × {why} ({'would have counted' if c else 'would not count anyway: confidence not high'})"
                                 for (why, c), n in sorted(dropped.items())))
    if runs.sluice_errors:
        notes.append(f"sluice could not read {len(runs.sluice_errors)} file(s): " + some(runs.sluice_errors))
    return ["### Notes", ""] + [f"- {n}" for n in notes] + [""] if notes else []


PER_FILE_MAX = 40  # a longer folder gets the summary by label only


def folder_labels(folder):
    """{file: label text} from a labels.jsonl without reasons (or none)."""
    labels = {}
    if os.path.exists(os.path.join(folder, "labels.jsonl")):
        for row in map(_loose, label_lines(folder)):
            label = row.get("label") or row.get("feedback_types") or ""
            labels[row.get("file")] = ",".join(dict.fromkeys(label)) if isinstance(label, list) else str(label)
    return labels


def said(recipients):
    return ", ".join(sorted({r["reason"] for r in recipients})) or "(none)"


def per_file_report(runs, folder, args):
    """For a folder whose labels give no reason (complaints, auto-replies,
    not-bounces, spam): what each tool says, beside the label; nothing scored."""
    labels = folder_labels(folder)
    label_of = lambda f: labels.get(f) or os.path.basename(folder)
    out = runs.header(f"## sluice vs Sisimai: {folder_key(folder)} (split: {args.split}, {len(runs.files)} files)",
                      "No reason labels here, so nothing is scored: what each tool says, beside the label.")
    by_label = collections.defaultdict(lambda: (collections.Counter(), collections.Counter()))
    for f in runs.files:
        by_label[label_of(f)][0][runs.verdicts.get(f, "?")] += 1
        by_label[label_of(f)][1][said(runs.sisimai.get(f, []))] += 1
    fmt = lambda c: ", ".join(f"{k} {n}" for k, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))
    rows = [(label, sum(v.values()), fmt(v), fmt(m)) for label, (v, m) in sorted(by_label.items())]
    out += [table(("label", "files", "sluice verdicts", "Sisimai reasons"), rows), ""]
    if len(runs.files) <= PER_FILE_MAX:
        rows = [(f, label_of(f), f"{runs.verdicts.get(f, '?')}: {said(runs.sluice.get(f, []))}", said(runs.sisimai.get(f, [])))
                for f in runs.files]
        out += [table(("file", "label", "sluice verdict: reasons", "Sisimai reasons"), rows), ""]
    return out + runs.throughput() + notes_section(runs, [], collections.Counter(), scored=False)


def main(argv):
    args = parse_args(argv)
    if args.write_split:
        print(f"wrote {write_split_file()} lines to {SPLIT_FILE}")
        return 0
    folder = args.dir = os.path.abspath(args.dir)
    has_labels = os.path.exists(os.path.join(folder, "labels.jsonl"))
    rows, dropped = load_labels(folder) if has_labels else ([], collections.Counter())
    split = split_for(folder)
    files = labelled_files(folder) if has_labels else sorted(split)
    if args.split != "all":
        rows = [r for r in rows if split.get(r["file"]) == args.split]
        files = [f for f in files if split.get(f) == args.split]
    runs = Runs(sluice_binary(), folder, files)

    scored = any(counts(r) for r in rows)
    print("\n".join(scored_report(runs, rows, split, args, dropped) if scored else per_file_report(runs, folder, args)))
    if args.check_eval:
        if args.split != "all":
            sys.exit("classify_peers: --check-eval needs --split all (the --eval report covers the whole folder)")
        verdict = check_eval(runs.binary, folder, rows, runs.sluice)
        print(verdict or "check: MISMATCH between this scorer and `sluice classify --eval` (both on stderr)")
        return 0 if verdict else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
