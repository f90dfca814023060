"""A full disk (issue 15, item 5), on a real small filesystem: a tmpfs this
test mounts under its own directory (the suite runs as root in CI; if the
mount fails the test fails loudly, it never skips).

The downstream is down while 8 KiB messages fill the data directory. Every
refusal must be `452 4.3.1` (never a dropped connection, never a 250 that is
not durable), the HTTP API must answer 507 with its JSON error body, and once
the downstream is back and the queue drains, sluice must accept again on its
own, with nothing accepted lost.
"""

import hashlib
import json
import os
import smtplib
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from helpers.procs import wait_until

FS_MIB = 48
BODY = ("x" * 76 + "\r\n") * 105  # ~8 KiB


def mount_tmpfs(path, mib):
    os.makedirs(path, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", path],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.fail(f"cannot mount a {mib} MiB tmpfs at {path} (the full-disk test needs root): "
                    f"{p.stderr.strip()}")


def message(mid):
    return (f"From: a@src.test\r\nTo: rcpt@sluice.test\r\nSubject: full {mid}\r\n"
            f"Message-ID: <{mid}>\r\n\r\n{BODY}").encode()


def fill(host, port, prefix, accepted, refusals, clients=8, per_client=1500):
    """Sends until every client has seen a refusal; returns nothing."""
    lock = threading.Lock()
    dropped = []

    def client(c):
        conn = smtplib.SMTP(host, port, timeout=30)
        refused_in_a_row = 0
        for i in range(per_client):
            mid = f"{prefix}.{c}.{i}@full.test"
            try:
                conn.sendmail("a@src.test", ["rcpt@sluice.test"], message(mid))
                with lock:
                    accepted.add(mid)
                refused_in_a_row = 0
            except smtplib.SMTPDataError as e:
                with lock:
                    refusals.append((e.smtp_code, e.smtp_error.decode(errors="replace")))
                refused_in_a_row += 1
                if refused_in_a_row >= 20:
                    break
            except (smtplib.SMTPServerDisconnected, OSError) as e:
                with lock:
                    dropped.append(repr(e))
                return
        conn.quit()

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not dropped, f"connections dropped instead of a 452: {dropped[:3]}"


def api_send(sl, key):
    body = json.dumps({"from": "app@acme.test", "to": ["ann@dest.test"], "subject": "hi",
                       "text": BODY}).encode()
    req = urllib.request.Request(sl.http + "/v1/messages", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {key}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def run_full_disk(tmp_path, sink_factory, sluice_factory, tee, fs_mib, ballast_mib):
    """Fills the data directory's filesystem with the downstream down, then
    brings the downstream back (and, with `ballast_mib`, frees that much as
    an operator would) and checks that everything drains and sluice takes
    mail again on its own."""
    sink = sink_factory()  # not started: the downstream is down
    sl = sluice_factory(start=False, relay=sink.addr, config={
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
        "smtp": {"max_connections_per_ip": 1000},
        "outbound.mx_override": {"*": sink.addr},
    })
    mount_tmpfs(sl.data, fs_mib)
    try:
        key = sl.cli("apikey", "create", "--tenant", "acme", "--data", sl.data).stdout.decode().strip()
        if tee:
            # Copies are filed too: the store shares the full disk with the spool.
            pw = tmp_path / "pw"
            pw.write_text("s3cret\n")
            sl.cli("account", "add", "acme", "--password-file", str(pw), "--domain", "sluice.test",
                   "--data", sl.data)
        ballast = os.path.join(sl.data, "ballast")
        if ballast_mib:
            with open(ballast, "wb") as f:
                f.write(b"\0" * (ballast_mib << 20))
        sl.start()
        host, port = sl.smtp
        accepted, refusals = set(), []
        fill(host, port, "a", accepted, refusals)
        assert accepted, "nothing was accepted before the disk filled"
        assert refusals, "the disk never filled"
        wrong = [r for r in refusals if r[0] != 452 or "4.3.1" not in r[1]]
        assert not wrong, f"refusals other than 452 4.3.1: {wrong[:3]}"
        status, doc = api_send(sl, key)
        assert status == 507, (status, doc)
        assert doc.get("error", {}).get("code") == "insufficient_storage", doc
        assert sl.running, sl.tail()

        # The downstream comes back (and the operator frees the ballast):
        # everything accepted drains, and sluice takes mail again with no
        # restart.
        sink.start()
        if ballast_mib:
            os.remove(ballast)
        sl.queue("flush")
        got = lambda: {m.header("Message-ID").strip("<>") for m in sink.messages()}  # noqa: E731
        wait_until(lambda: accepted <= got(), 120, interval=1,
                   what=f"all {len(accepted)} accepted messages at the sink")
        sl.wait_queue_empty(90)
        if tee:
            # The store is consistent: every accepted message's copy is there, once.
            want = {hashlib.sha256(message(m)).hexdigest() for m in accepted}
            filed = dict(sl.rows("SELECT blob, count(*) FROM messages GROUP BY blob"))
            if not sl.database:
                assert sl.rows("PRAGMA integrity_check") == [("ok",)]
            assert want <= set(filed), f"{len(want - set(filed))} copies missing from the store"
            assert all(filed[h] == 1 for h in want), "a copy was filed twice"

        def accepts_again():
            try:
                with smtplib.SMTP(host, port, timeout=10) as c:
                    c.sendmail("a@src.test", ["rcpt@sluice.test"], message("after@full.test"))
                return True
            except smtplib.SMTPDataError:
                return False
        wait_until(accepts_again, 30, interval=1, what="sluice to accept again after space returned")
        wait_until(lambda: "after@full.test" in got(), 30, what="the message sent after recovery")
        status, doc = api_send(sl, key)
        assert status == 202, (status, doc)
        assert "panicked" not in sl.log()
        # A full disk is said at WARN, not once per message.
        assert sl.log().count("the disk is full: delivery outcomes wait") < 50
    finally:
        if sl.running:
            sl.stop()
        if not os.environ.get("SLUICE_KEEP_TMPFS"):
            subprocess.run(["umount", "-l", sl.data], check=False)


@pytest.mark.time_limit(280)
def test_full_disk_is_answered_452_and_sluice_recovers_on_its_own(tmp_path, sink_factory, sluice_factory):
    # Room for the spool's segments and for the record of what they held
    # (every accepted message is recorded `received` and `relayed`, on the
    # same disk): once they drain, a new segment fits again.
    run_full_disk(tmp_path, sink_factory, sluice_factory, tee=False, fs_mib=64, ballast_mib=0)


@pytest.mark.time_limit(280)
def test_full_disk_with_the_store_on_it_recovers_once_space_is_freed(tmp_path, sink_factory, sluice_factory):
    run_full_disk(tmp_path, sink_factory, sluice_factory, tee=True, fs_mib=160, ballast_mib=96)
