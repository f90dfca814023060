"""What the real-MTA ground-truth tests share (issue 16, item 3): each sends
one message per cause through an MTA of its own, collects the reports that
come back to the capture sink, and has `sluice classify` name each cause."""

import contextlib
import json
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import threading

from helpers.mail import simple_message, token
from helpers.procs import sluice_bin, wait_until


def listening(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class Foreground:
    """An MTA daemon the test runs in the foreground: started, awaited on its
    port (failing with its log if it exits), stopped. Subclasses set `dir`,
    `port` (on `host`) and `out` (a file for its output, the log unless they
    say otherwise)."""

    proc = None
    host = "127.0.0.1"

    def run(self, args):
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: self._listening() or None, 20, what=f"{args[0]} in {self.dir} listening\n{self.log()}")

    def _listening(self):
        if self.proc.poll() is not None:
            with open(self.out, errors="replace") as f:
                raise RuntimeError(f"{self.proc.args} exited:\n{f.read()}\n{self.log()}")
        return listening(self.port, self.host)

    def log(self):
        try:
            with open(self.out, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.running():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Silent:
    """A TCP listener that takes every connection and never says a word: an
    SMTP server that never greets, so the client's greeting timeout fires
    (the "timeouts until expiry" of the labs)."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self._hold, daemon=True).start()

    def _hold(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def stop(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def await_reports(done, source, timeout, what, log):
    """Polls `done` (once a second) until it returns the reports; on a
    timeout fails with the tail of the MTA's `log()` (read then, not before).
    With SLUICE_MTA_DUMP set, every report `source` holds is written there
    as .eml files either way (for a look at an MTA's own format)."""
    dump = os.environ.get("SLUICE_MTA_DUMP")
    try:
        return wait_until(done, timeout, interval=1, what=what)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{log()[-8000:]}") from None
    finally:
        if dump:
            dump_reports(source, dump)


def dump_reports(source, folder):
    """Every report `source` holds, as numbered .eml files in `folder` (for
    a look at an MTA's own format)."""
    os.makedirs(folder, exist_ok=True)
    for i, m in enumerate(reports(source)):
        with open(os.path.join(folder, f"{i}.eml"), "wb") as f:
            f.write(m.content)


def message(kind, t):
    """A small message, a big one (in lines RFC 5322 allows: Exim refuses
    longer ones itself), or one whose subject a content check refuses."""
    subject = f"FORBIDDEN {t}" if kind == "forbidden" else t
    body = (b"x" * 76 + b"\r\n") * 800 if kind == "big" else b"hello\r\n"
    return simple_message(subject, body=body)


def send_causes(port, causes):
    """One message per cause through the MTA on `port`; returns {cause: token}."""
    sent = {}
    for cause, (sender, rcpt, kind, *_) in causes.items():
        t = token()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            c.sendmail(sender, [rcpt], message(kind, t))
        sent[cause] = t
    return sent


# One message to two unknown users and one that exists (B's dest.test): the
# reports name the two, and only them, whatever the MTA's format (one report
# listing both, or one a recipient).
TWO_UNKNOWN = ("two unknown users beside a good one", "s@sender.test",
               ("nobody@dest.test", "ok@dest.test", "nobody-else@dest.test"),
               {"nobody@dest.test", "nobody-else@dest.test"})


def send_two_unknown(port):
    """TWO_UNKNOWN's message through the MTA on `port`; returns its token."""
    _, sender, rcpts, _ = TWO_UNKNOWN
    t = token()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        c.sendmail(sender, list(rcpts), message("small", t))
    return t


def two_unknown_reports(source, t, final_mark):
    """The final reports of TWO_UNKNOWN's message once they name both
    addresses between them, else None."""
    got = [m for m in reports(source) if t.encode() in m.content and final_mark in m.content]
    named = {a for m in got for a in TWO_UNKNOWN[3] if a.encode() in m.content.lower()}
    return got if named == TWO_UNKNOWN[3] else None


def wrong_two_unknown(got, status, tmp_path):
    """What sluice got wrong in TWO_UNKNOWN's reports: every failed address
    named once, userunknown, `status`, hard; the good one never."""
    seen = {}
    for i, m in enumerate(got):
        path = tmp_path / f"two-unknown-{i}.eml"
        path.write_bytes(m.content)
        c, why = classify(path)
        if c["verdict"] != "bounce":
            return [f"{TWO_UNKNOWN[0]}: verdict {c['verdict']}\n" + "\n".join(why)]
        for r in c["recipients"]:
            seen[r["address"].lower()] = (r["reason"], r["status"], r["hard"], why)
    want = {a: ("userunknown", status, True) for a in TWO_UNKNOWN[3]}
    got_rows = {a: v[:3] for a, v in seen.items()}
    if got_rows == want:
        return []
    why = "\n".join(line for v in seen.values() for line in v[3])
    return [f"{TWO_UNKNOWN[0]}: expected {want}, got {got_rows}\n{why}"]


def reports(sink):
    """What came back with a null sender: bounces and delay notices."""
    return [m for m in sink.messages() if m.mail_from == ""]


def finals(sink, sent, final_mark):
    """{cause: its final report} once every cause has one (`final_mark` is
    the bytes a final report has and a delay notice has not), else None."""
    got = {}
    for m in reports(sink):
        for cause, t in sent.items():
            if t.encode() in m.content and final_mark in m.content:
                got[cause] = m
    return got if len(got) == len(sent) else None


def classify(path):
    """`sluice classify --explain`: (the JSON line, the explanation lines)."""
    out = subprocess.run([sluice_bin(), "classify", "--explain", str(path)], capture_output=True, timeout=30)
    lines = out.stdout.decode().splitlines()
    return json.loads(lines[-1]), lines[:-1]


def wrong_verdicts(got, causes, tmp_path):
    """Each report classified; the causes whose (verdict, reason, status,
    hard) differ from the table, with sluice's explanation."""
    wrong = []
    for cause, m in got.items():
        _, rcpt, _, reason, status, hard, verdict = causes[cause]
        path = tmp_path / f"{cause.replace(' ', '-').replace(',', '')}.eml"
        path.write_bytes(m.content)
        c, why = classify(path)
        entry = next((r for r in c["recipients"] if r["address"].lower() == rcpt), None)
        seen = (c["verdict"], entry and entry["reason"], entry and entry["status"], entry and entry["hard"])
        if seen != (verdict, reason, status, hard):
            wrong.append(f"{cause}: expected {(verdict, reason, status, hard)}, got {seen}\n" + "\n".join(why))
    return wrong


@contextlib.contextmanager
def lab_dir(prefix, base=None):
    """A temporary directory the MTAs' own users can reach (pytest's
    tmp_path is root's alone), under `base` if given, and a list of the
    MTAs to stop at the end."""
    if base:
        os.makedirs(base, mode=0o755, exist_ok=True)
    root = tempfile.mkdtemp(prefix=prefix, dir=base)
    os.chmod(root, 0o755)
    mtas = []
    try:
        yield root, mtas
    finally:
        for mta in reversed(mtas):
            mta.stop()
        shutil.rmtree(root, ignore_errors=True)


def check_delay(sink, sent, is_delay, tmp_path, cause="connection refused until expiry", rcpt="x@down.test"):
    """A delay notice came for `cause` before its final report, and sluice
    calls it a delay naming its recipient."""
    delays = [m for m in reports(sink) if is_delay(m.content) and sent[cause].encode() in m.content]
    assert delays, f"a delay notice came for {cause!r} before the final report"
    (tmp_path / "delay.eml").write_bytes(delays[0].content)
    c, why = classify(tmp_path / "delay.eml")
    assert c["verdict"] == "delay", (c, why)
    assert [r["address"] for r in c["recipients"]] == [rcpt], (c, why)
