"""Tee routing (issue 4, first half): inbound mail for a domain with a
quarantine account goes to the downstream unchanged AND, classified, into the
account's store as exact bytes. Corpus samples from the project's fixtures."""

import hashlib
import os
import time

from helpers.mail import send_raw
from helpers.procs import wait_until

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "crates", "decide", "tests", "fixtures")


def fixture(rel):
    with open(os.path.join(FIXTURES, rel), "rb") as f:
        data = f.read()
    # SMTP carries CRLF lines; keep the bytes otherwise as they are.
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def stored(sl):
    return sl.rows("SELECT f.name, m.uid, m.verdict, m.reason, m.flags, m.blob FROM messages m "
                   "JOIN folders f ON f.id = m.folder_id ORDER BY m.id")


def blob(sl, h):
    """The stored bytes named `h` (a message's sha256), or None."""
    rows = sl.rows("SELECT bytes FROM blobs WHERE hash = ?", h)
    return bytes(rows[0][0]) if rows else None


def on_disk(data_dir, needle):
    """The database's files (the main file, its WAL and shared memory) that
    hold `needle`: what a swept message must not be found in."""
    found = []
    for name in sorted(os.listdir(data_dir)):
        if name.startswith("sluice.db"):
            with open(os.path.join(data_dir, name), "rb") as f:
                data = f.read()
            if needle in data:
                found.append(f"{name} ({len(data)} bytes, at {data.index(needle)})")
    return found


def test_bounce_and_autoreply_are_relayed_and_filed(sink, sluice_factory, tmp_path):
    sl = sluice_factory(relay=sink.addr)
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    sl.cli("account", "add", "acme", "--password-file", str(pw), "--domain", "sluice.test", "--data", sl.data)
    # The running server hears of the new account within a second (the
    # database's change counter, or NOTIFY on PostgreSQL): no restart.
    time.sleep(1.5)

    bounce = fixture("bounces/lhost-postfix-05.eml")
    auto = fixture("autoreplies/sisimai-rfc3834-01.eml")
    send_raw(sl.smtp, bounce, mail_from="", rcpts=("bounces@sluice.test",))
    send_raw(sl.smtp, auto, mail_from="", rcpts=("bounces@sluice.test",))

    # The originals reach the downstream, each with only our trace header added.
    msgs = sink.wait_for(2, timeout=20)
    bodies = [m.content.split(b"\r\n", 1)[1] for m in msgs]
    assert any(b.endswith(bounce) for b in bodies)
    assert any(b.endswith(auto) for b in bodies)

    rows = wait_until(lambda: len(stored(sl)) == 2 and stored(sl), 20, what="two stored copies")
    by_folder = {r[0]: r for r in rows}
    assert set(by_folder) == {"Bounces/Hard", "AutoReplies"}, rows
    folder, uid, verdict, reason, flags, h = by_folder["Bounces/Hard"]
    assert (uid, verdict, reason) == (1, "bounce", "userunknown")
    assert "$Reason_userunknown" in flags.split()
    # The copy is exactly the bytes received (no trace header), stored once.
    assert blob(sl, h) == bounce
    assert h == hashlib.sha256(bounce).hexdigest()
    assert by_folder["AutoReplies"][2] == "autoreply"
    # Nothing is left in the queue: both routes finished.
    sl.wait_queue_empty(10)


def test_mail_is_teed_even_while_the_downstream_is_down(sink_factory, sluice_factory, tmp_path):
    sink = sink_factory()
    sl = sluice_factory(relay=sink.addr, config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    pw = tmp_path / "pw"
    pw.write_text("pw\n")
    sl.cli("account", "add", "acme", "--password-file", str(pw), "--domain", "sluice.test", "--data", sl.data)
    sl.stop()
    sl.start()
    msg = fixture("bounces/lhost-postfix-05.eml")
    send_raw(sl.smtp, msg, mail_from="", rcpts=("bounces@sluice.test",))
    # The copy is filed although the relay cannot deliver...
    wait_until(lambda: len(stored(sl)) == 1, 20, what="the stored copy")

    def routes():
        entries = sl.queue_entries()
        assert len(entries) == 1, entries
        return {r["route"]: r["status"] for r in entries[0]["recipients"]}

    # (The spool notes the copy's outcome a moment after the store commits it.)
    done = wait_until(lambda: routes()["quarantine:acme"] == "delivered" and routes(), 10, what="the copy done")
    assert done["relay"] in ("deferred", "scheduled"), done
    # The backlog is the relay's only: the copy is not behind.
    summary = sl.queue("summary")["summary"]
    assert [(b["route"], b["messages"]) for b in summary] == [("relay", 1)], summary
    # ...and the original still goes out when the downstream returns.
    sink.start()
    sink.wait_for(1, timeout=20)
    sl.wait_queue_empty(15)
