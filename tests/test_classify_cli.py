"""`sluice classify` as a user runs it over many files (issue 16, items 6-7):
every core by default with the output in the files' order, and `--explain`
saying how each field was decided, in agreement with the JSON it prints."""

import glob
import json
import os
import subprocess

from helpers.procs import sluice_bin

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "crates", "decide", "tests", "fixtures", "bounces")


def classify(*args):
    return subprocess.run([sluice_bin(), "classify", *args], capture_output=True, timeout=120)


def fixture_files():
    files = sorted(glob.glob(os.path.join(FIXTURES, "*.eml")))
    assert len(files) > 50, "the decide fixtures are there"
    return files


def test_many_files_on_all_cores_keep_their_order():
    files = fixture_files()
    missing = os.path.join(FIXTURES, "no-such-file.eml")
    files = files[:40] + [missing] + files[40:]
    one = classify("--jobs", "1", *files)
    many = classify("--jobs", "4", *files)
    default = classify(*files)
    assert one.returncode == many.returncode == default.returncode == 1, "an unreadable file says so"
    assert one.stdout == many.stdout == default.stdout
    rows = [json.loads(line) for line in many.stdout.splitlines()]
    assert [r["file"] for r in rows] == files
    assert "error" in rows[40] and "error" not in rows[39]


def test_explain_says_how_each_recipient_was_decided():
    files = fixture_files()[:60]
    p = classify("--explain", *files)
    assert p.returncode == 0, p.stderr
    blocks, current = [], None
    for line in p.stdout.decode().splitlines():
        if line.startswith("# ") and not line.startswith("#   "):
            current = {"file": line[2:], "steps": []}
            blocks.append(current)
        elif line.startswith("#   "):
            current["steps"].append(line[4:])
        else:
            current["json"] = json.loads(line)
    assert [b["file"] for b in blocks] == files
    explained = 0
    for b in blocks:
        steps, c = b["steps"], b["json"]
        assert steps and steps[0].startswith("parser: "), (b["file"], steps)
        for r in c["recipients"]:
            if c["verdict"] not in ("bounce", "delay"):
                continue
            verdict = [s for s in steps if s.startswith(f"=> {r['address']}: ")]
            assert verdict, (b["file"], steps)
            assert verdict[-1].split(": ", 1)[1].startswith(r["reason"] + " "), (b["file"], verdict, r)
            explained += 1
    assert explained > 40
    # A rule's decision names the rule and where its wording comes from.
    assert any("rule #" in s and "source: " in s for b in blocks for s in b["steps"])
