"""rspamd as an option in filter mode (issue 20): with `[spam] rspamd_url`
set, each filter-mode message is also checked by a real rspamd (Debian's
package, run privately: its own configuration, ports, logs and a private
redis for its Bayes statistics), its score is one more signal of ours
(`RSPAMD`), an rspamd that does not answer makes the message unscanned
(each recipient's `scan_failure` decides: 451 or delivered untagged),
and an IMAP move into Spam teaches rspamd (`/learnspam`).
`SLUICE_TEST_DATABASE=postgres` runs it on PostgreSQL."""

import imaplib
import json
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from helpers.mail import send_raw
from helpers.net import free_port, tls_context
from helpers.procs import wait_until

DOMAIN = "isp.test"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(subject, body, mid):
    return (f"From: Sender <news@sender.example>\r\nTo: team@{DOMAIN}\r\nSubject: {subject}\r\n"
            f"Date: Sun, 06 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{mid}@sender.example>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{body}\r\n").encode()


GTUBE_MSG = message("quarterly notes", f"Hello team, the notes are below.\r\n{GTUBE}\r\nRegards", "gtube1")
PLAIN = message("lunch on thursday",
                "Hello team, lunch is moved to thursday at noon in the small meeting room; "
                "bring the project schedule and the budget draft so we can review the minutes "
                "of last week together before the report goes out on friday.", "plain1")


class Rspamd:
    """Debian's rspamd in the foreground (`-f`), with a configuration of
    its own under a temporary directory: the normal and controller
    workers on free loopback ports, logs and databases there, DNS that
    fails fast (no network needed), and Bayes statistics in a private
    redis-server. Run as `_rspamd` (Debian's user) when we are root."""

    def __init__(self):
        for tool in ("rspamd", "redis-server"):
            if not shutil.which(tool):
                raise AssertionError(f"{tool} is not installed: run scripts/install-test-deps.sh")
        self.dir = tempfile.mkdtemp(prefix="sluice-rspamd-")
        os.chmod(self.dir, 0o755)
        self.normal, self.controller, self.redis_port = free_port(), free_port(), free_port()
        for d in ("local/local.d", "db", "run", "log"):
            os.makedirs(os.path.join(self.dir, d))
        self.log_path = os.path.join(self.dir, "log", "rspamd.log")
        with open(os.path.join(self.dir, "local/local.d/redis.conf"), "w") as f:
            f.write(f'servers = "127.0.0.1:{self.redis_port}";\n')
        self.config = os.path.join(self.dir, "rspamd.conf")
        with open(self.config, "w") as f:
            f.write(f""".include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    dns {{ nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 1; }}
}}
logging {{ type = "file"; filename = "{self.log_path}"; level = "info"; }}
worker "normal" {{ bind_socket = "127.0.0.1:{self.normal}"; .include "$CONFDIR/worker-normal.inc" }}
worker "controller" {{ bind_socket = "127.0.0.1:{self.controller}"; .include "$CONFDIR/worker-controller.inc" }}
""")
        self.root = os.geteuid() == 0
        if self.root:
            subprocess.run(["chown", "-R", "_rspamd:_rspamd", self.dir], check=True)
        self.redis = None
        self.proc = None

    @property
    def url(self):
        """The controller: it answers /checkv2 and the learn endpoints."""
        return f"http://127.0.0.1:{self.controller}"

    def start(self, timeout=60):
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=open(os.path.join(self.dir, "redis.out"), "wb"), stderr=subprocess.STDOUT)
        cmd = ["rspamd", "-f", "-c", self.config]
        if self.root:
            cmd += ["-u", "_rspamd", "-g", "_rspamd"]
        for var, sub in (("LOCAL_CONFDIR", "local"), ("DBDIR", "db"), ("RUNDIR", "run"), ("LOGDIR", "log")):
            cmd.append(f"--var={var}={os.path.join(self.dir, sub)}")
        self.proc = subprocess.Popen(cmd, stdout=open(os.path.join(self.dir, "rspamd.out"), "wb"),
                                     stderr=subprocess.STDOUT)

        def up():
            assert self.proc.poll() is None, f"rspamd exited {self.proc.returncode}: {self.tail()}"
            try:
                return self.stat()
            except OSError:
                return None
        wait_until(up, timeout, interval=0.25, what="rspamd's controller")
        return self

    def stat(self):
        with urllib.request.urlopen(f"{self.url}/stat", timeout=5) as r:
            return json.loads(r.read())

    def learn(self, content, path="learnspam"):
        """(status, reason) of rspamd's answer to a learn request."""
        req = urllib.request.Request(f"{self.url}/{path}", data=content, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.reason
        except urllib.error.HTTPError as e:
            return e.code, e.reason

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def tail(self):
        with open(os.path.join(self.dir, "rspamd.out"), errors="replace") as f:
            return f.read()[-3000:] + self.log()[-3000:]

    def stop(self):
        for p in (self.proc, self.redis):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def rspamd():
    r = Rspamd().start()
    yield r
    r.stop()


def policy(sl, *args):
    return sl.cli("policy", *args, "--data", sl.data).stdout.decode()


def thresholds(sl, scope, unsure, spam):
    first = sl.cli("policy", "set", scope, "unsure_threshold", f"{unsure:.2f}", "--data", sl.data, check=False)
    policy(sl, "set", scope, "spam_threshold", f"{spam:.2f}")
    if first.returncode != 0:
        policy(sl, "set", scope, "unsure_threshold", f"{unsure:.2f}")


def filtered(sl):
    rows = sl.rows("SELECT address, reason, detail FROM events WHERE type = 'filtered' ORDER BY id")
    return [(a, r, json.loads(d)) for a, r, d in rows]


def our_score(sl, tmp_path, content):
    """What sluice's own filter alone scores `content`."""
    f = tmp_path / "probe.eml"
    f.write_bytes(content)
    line = sl.cli("spam", "score", str(f), "--data", sl.data).stdout.decode().strip().splitlines()[-1]
    return json.loads(line)["score"]


def start(sluice_factory, sink, url, timeout_ms=5000):
    return sluice_factory(relay=sink.addr, extra_args=["--filter-domain", DOMAIN], config={
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
        "spam": {"authenticate": False, "rspamd_url": url, "rspamd_timeout_ms": timeout_ms},
    })


def add_account(sl, tmp_path, user, password):
    pw = tmp_path / f"{user}.pw"
    pw.write_text(password + "\n")
    sl.cli("account", "add", f"{user}@{DOMAIN}", "--password-file", str(pw), "--data", sl.data)


def test_rspamds_score_counts_with_ours(rspamd, sluice_factory, sink, tmp_path):
    sl = start(sluice_factory, sink, rspamd.url)
    add_account(sl, tmp_path, "ann", "ann-secret")
    ours = our_score(sl, tmp_path, GTUBE_MSG)
    # Our filter does not know GTUBE: alone it stays under these
    # thresholds; rspamd says reject (15 of 15), which is 5 points of ours.
    for user, action in (("ann", "quarantine"), ("bob", "tag")):
        thresholds(sl, f"{user}@{DOMAIN}", ours + 1.5, ours + 2)
        policy(sl, "set", f"{user}@{DOMAIN}", "spam_action", action)
    send_raw(sl.smtp, GTUBE_MSG, mail_from="news@sender.example", rcpts=[f"ann@{DOMAIN}", f"bob@{DOMAIN}"])

    tagged = sink.wait_for(1, timeout=20)[0]
    assert tagged.rcpts == [f"bob@{DOMAIN}"], tagged.rcpts
    assert b"X-Spam-Status: Yes" in tagged.content and b"RSPAMD" in tagged.content, tagged.content[:400]
    events = wait_until(lambda: len(filtered(sl)) >= 2 and filtered(sl), 20, what="filtered events")
    got = {a: (r, d) for a, r, d in events}
    assert got[f"ann@{DOMAIN}"][0] == "quarantine" and got[f"bob@{DOMAIN}"][0] == "tag", got
    for _, d in got.values():
        sig = [s for s in d["signals"] if s["name"] == "RSPAMD"]
        assert len(sig) == 1 and sig[0]["score"] == 5.0, d["signals"]
        assert "reject" in sig[0]["detail"] and "GTUBE" in sig[0]["detail"], sig
        assert d["rspamd"]["action"] == "reject" and d["rspamd"]["score"] == 15.0, d
        assert abs(d["score"] - (ours + 5.0)) < 0.01, (ours, d)
    # Asked once, with the envelope: both recipients, the sender, the client.
    log = wait_until(lambda: "rcpts: <" in rspamd.log() and rspamd.log(), 10, what="rspamd's task log")
    asked = [line for line in log.splitlines() if "rspamd_task_write_log" in line and "gtube1@sender.example" in line]
    assert len(asked) == 1, asked
    assert f"rcpts: <ann@{DOMAIN},bob@{DOMAIN}>" in asked[0] and "from: <news@sender.example>" in asked[0], asked
    assert "ip: 127.0.0.1" in asked[0], asked

    # A plain message: rspamd's (small) opinion is one signal among ours.
    send_raw(sl.smtp, PLAIN, mail_from="news@sender.example", rcpts=[f"bob@{DOMAIN}"])
    events = wait_until(lambda: len(filtered(sl)) >= 3 and filtered(sl), 20, what="the plain message's event")
    d = events[-1][2]
    assert d["rspamd"]["action"] != "reject" and any(s["name"] == "RSPAMD" for s in d["signals"]), d


class Silent:
    """A listener that takes connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("down", ["closed port", "no answer"])
def test_an_rspamd_that_does_not_answer_leaves_the_message_unscanned(down, sluice_factory, sink, tmp_path):
    silent = Silent() if down == "no answer" else None
    url = silent.url if silent else f"http://127.0.0.1:{free_port()}"
    try:
        sl = start(sluice_factory, sink, url, timeout_ms=700)
        policy(sl, "set", f"bob@{DOMAIN}", "scan_failure", "accept_unscanned")
        # ann keeps the built-in scan_failure, tempfail: the whole message waits.
        for rcpts in ([f"ann@{DOMAIN}"], [f"ann@{DOMAIN}", f"bob@{DOMAIN}"]):
            began = time.monotonic()
            with smtplib.SMTP(*sl.smtp, timeout=30) as c:
                c.ehlo("client.test")
                with pytest.raises(smtplib.SMTPDataError) as refused:
                    c.sendmail("news@sender.example", rcpts, PLAIN)
            assert refused.value.smtp_code == 451 and b"4.7.1" in refused.value.smtp_error, refused.value
            assert b"rspamd unavailable" in refused.value.smtp_error, refused.value
            assert time.monotonic() - began < 10, "the timeout is rspamd_timeout_ms"
        # bob alone accepts it unscanned: delivered, untagged, as received.
        send_raw(sl.smtp, PLAIN, mail_from="news@sender.example", rcpts=[f"bob@{DOMAIN}"])
        got = sink.wait_for(1, timeout=20)[0]
        assert got.rcpts == [f"bob@{DOMAIN}"] and b"X-Spam-Status" not in got.content, got.content[:300]
        # A message refused whole records the refusing decisions only.
        events = wait_until(lambda: len(filtered(sl)) >= 3 and filtered(sl), 20, what="filtered events")
        assert [(a, r) for a, r, _ in events] == [
            (f"ann@{DOMAIN}", "tempfail"), (f"ann@{DOMAIN}", "tempfail"), (f"bob@{DOMAIN}", "deliver")], events
        assert all(d["why"].startswith("rspamd unavailable: ") for _, _, d in events), events
        last = events[-1][2]
        assert last["why"].startswith("rspamd unavailable: ") and "not scanned" in last["why"], last
        assert "error" in last["rspamd"] and last["class"] is None, last
        assert not any(s["name"] == "RSPAMD" for s in last["signals"]), last
        if silent:
            assert "no answer in 700 ms" in last["why"], last
        # Logged at WARN once per message (three messages).
        assert sl.log().count("rspamd unavailable: the message counts as not scanned") == 3, sl.tail()
    finally:
        if silent:
            silent.close()


def test_an_imap_move_into_spam_teaches_rspamd(rspamd, sluice_factory, sink, tmp_path):
    sl = start(sluice_factory, sink, rspamd.url)
    add_account(sl, tmp_path, "cat", "cat-secret")
    policy(sl, "set", f"cat@{DOMAIN}", "archive", "true")
    thresholds(sl, f"cat@{DOMAIN}", 50, 60)  # delivered, and archived
    msg = message("team offsite", PLAIN.decode().split("\r\n\r\n", 1)[1] + " See you at the offsite.", "teach1")
    send_raw(sl.smtp, msg, mail_from="news@sender.example", rcpts=[f"cat@{DOMAIN}"])
    sink.wait_for(1, timeout=20)
    learned = rspamd.stat()["learned"]

    host, port = sl.imap

    def archived():
        with imaplib.IMAP4(host, port) as m:
            m.starttls(ssl_context=tls_context())
            m.login(f"cat@{DOMAIN}", "cat-secret")
            typ, data = m.select('"Archive"')
            return typ == "OK" and int(data[0]) > 0
    wait_until(archived, 20, what="cat's Archive")
    with imaplib.IMAP4(host, port) as m:
        m.starttls(ssl_context=tls_context())
        m.login(f"cat@{DOMAIN}", "cat-secret")
        m.select('"Archive"')
        typ, got = m.fetch("1", "(BODY.PEEK[])")
        stored = got[0][1]
        typ, data = m.copy("1", "Spam")
        assert typ == "OK", data
    sl.log_when(lambda log: "rspamd taught from an IMAP move" in log, 15, what="rspamd being taught")
    taught = [line for line in sl.log().splitlines() if "rspamd taught from an IMAP move" in line]
    assert len(taught) == 1 and "learnt: " in taught[0] and "declined" not in taught[0], taught
    # rspamd itself says so: it counted one more lesson, and the same
    # message again is "already learned" (its learn cache, in redis).
    assert rspamd.stat()["learned"] == learned + 1, rspamd.stat()
    status, reason = rspamd.learn(stored, "learnspam")
    assert status == 208 and "already learned as spam" in reason, (status, reason)
