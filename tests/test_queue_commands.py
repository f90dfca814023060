"""`sluice queue list|show|flush|hold|release|delete`, against a running
server (control socket) and a stopped one (the spool opened directly)."""

import json
import re
import time

from helpers.mail import send_raw, simple_message, token
from helpers.procs import wait_until

SLOW_RETRY = {"queue": {"retry_initial_secs": 60, "retry_max_secs": 60}}


def deferred_all(sl, n):
    def ok():
        e = sl.queue_entries()
        return len(e) == n and all(r["status"] == "deferred" for x in e for r in x["recipients"]) and e
    return wait_until(ok, 20, what=f"{n} deferred messages")


def test_queue_commands_on_a_running_server(sink_factory, sluice_factory):
    sink = sink_factory()  # down for now
    sl = sluice_factory(relay=sink.addr, config=SLOW_RETRY)
    toks = [token() for _ in range(3)]
    ids = [send_raw(sl.smtp, simple_message(t), rcpts=[f"r{i}@sluice.test", f"s{i}@sluice.test"])
           for i, t in enumerate(toks)]
    entries = deferred_all(sl, 3)
    assert sorted(e["id"] for e in entries) == sorted(ids)

    # list: every field, with sane values
    e0 = next(e for e in entries if e["id"] == ids[0])
    assert set(e0) >= {"id", "from", "received_at", "size", "held", "next_attempt", "expires_at",
                       "peer", "recipients"}, e0
    assert e0["from"] == "sender@src.test"
    assert e0["size"] == len(simple_message(toks[0]))
    assert e0["held"] is False
    assert e0["peer"].startswith("127.0.0.1")
    assert abs(e0["received_at"] - time.time()) < 120
    assert e0["expires_at"] > e0["received_at"]
    assert e0["next_attempt"] > time.time() + 30, "retry_initial_secs=60 puts the next attempt a minute out"
    assert [r["address"] for r in e0["recipients"]] == ["r0@sluice.test", "s0@sluice.test"]
    for r in e0["recipients"]:
        assert set(r) >= {"address", "status", "attempts", "last_reply"}
        assert r["attempts"] == 1

    # summary: the relay's backlog, from the oldest message on
    summary = sl.queue("summary")["summary"]
    assert [(b["route"], b["messages"], b["recipients"], b["held"]) for b in summary] == [("relay", 3, 6, 0)], summary
    assert summary[0]["oldest_received_at"] == min(e["received_at"] for e in entries)

    # show
    shown = sl.queue("show", ids[0])["entry"]
    assert shown["id"] == ids[0] and shown["recipients"] == e0["recipients"]
    bad = sl.queue("show", "0" * 32, check=False)
    assert "error" in bad, bad

    # hold one, delete one
    assert "done" in sl.queue("hold", ids[1])
    assert sl.queue("show", ids[1])["entry"]["held"] is True
    assert "done" in sl.queue("delete", ids[2])
    assert sorted(e["id"] for e in sl.queue_entries()) == sorted(ids[:2])
    summary = sl.queue("summary")["summary"]
    assert [(b["route"], b["messages"], b["recipients"], b["held"]) for b in summary] == [("relay", 2, 4, 1)], summary
    text = sl.cli("queue", "summary", "--data", sl.data).stdout.decode()
    assert text.splitlines()[0].split() == ["route", "messages", "recipients", "held", "oldest"], text
    assert text.splitlines()[1].split()[:4] == ["relay", "2", "4", "1"] and " ago)" in text, text

    # flush with the downstream back: only the unheld message goes
    sink.start()
    assert "done" in sl.queue("flush")
    msgs = sink.wait_for(1, timeout=15)
    time.sleep(1.5)
    msgs = sink.messages()
    assert len(msgs) == 1 and toks[0].encode() in msgs[0].content, msgs
    wait_until(lambda: [e["id"] for e in sl.queue_entries()] == [ids[1]], 10,
               what="only the held message left")

    # release: it goes now, without waiting for its retry time
    assert "done" in sl.queue("release", ids[1])
    msgs = sink.wait_for(2, timeout=15)
    assert any(toks[1].encode() in m.content for m in msgs)
    sl.wait_queue_empty(10)
    assert sl.queue("summary") == {"summary": []}
    assert sl.cli("queue", "summary", "--data", sl.data).stdout.decode().strip() == "nothing pending"
    time.sleep(0.5)
    assert not any(toks[2].encode() in m.content for m in sink.messages()), "deleted mail never goes"
    assert len(sink.messages()) == 2


def test_queue_commands_on_a_stopped_server(sluice_factory):
    sl = sluice_factory()  # no relay: mail is only spooled
    toks = [token() for _ in range(2)]
    ids = [send_raw(sl.smtp, simple_message(t)) for t in toks]
    assert sl.stop() == 0

    entries = sl.queue_entries()
    assert sorted(e["id"] for e in entries) == sorted(ids)
    assert all(e["recipients"][0]["status"] == "scheduled" for e in entries), entries
    assert sl.queue("show", ids[0])["entry"]["id"] == ids[0]
    summary = sl.queue("summary")["summary"]
    assert [(b["route"], b["messages"], b["recipients"]) for b in summary] == [("relay", 2, 2)], summary

    # Changes made while stopped persist.
    assert "done" in sl.queue("hold", ids[0])
    assert "done" in sl.queue("delete", ids[1])
    flush = sl.queue("flush")
    assert "done" in flush, flush

    sl.start()
    entries = sl.queue_entries()
    assert [e["id"] for e in entries] == [ids[0]]
    assert entries[0]["held"] is True
    # And the text output works too.
    p = sl.cli("queue", "list", "--data", sl.data)
    assert ids[0] in p.stdout.decode() and "HELD" in p.stdout.decode()
    # Times as RFC 3339 UTC (the spool keeps seconds), not +00:00.
    assert re.search(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b", p.stdout.decode()), p.stdout
    assert "+00:00" not in p.stdout.decode()
    shown = sl.cli("queue", "show", ids[0], "--data", sl.data).stdout.decode()
    assert re.search(r"^received: +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ from ", shown, re.M), shown


def test_queue_list_on_an_empty_spool(sluice_factory):
    sl = sluice_factory()
    assert sl.queue("list") == {"entries": []}
    assert sl.stop() == 0
    assert sl.queue("list") == {"entries": []}


def test_queue_on_a_missing_data_dir_is_an_error(sluice_factory, tmp_path):
    sl = sluice_factory(start=False)
    p = sl.cli("queue", "list", "--data", str(tmp_path / "nowhere"), "--json", check=False)
    assert p.returncode != 0
    assert b"nowhere" in p.stdout + p.stderr


def test_messages_survive_a_restart_and_are_delivered(sink_factory, sluice_factory):
    sink = sink_factory()
    sl = sluice_factory(relay=sink.addr, config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    toks = [token() for _ in range(5)]
    for t in toks:
        send_raw(sl.smtp, simple_message(t))
    assert sl.stop() == 0
    assert len(sl.queue_entries()) == 5, "the stopped server's spool keeps them"
    sink.start()
    sl.start()
    msgs = sink.wait_for(5, timeout=20)
    assert sorted(t for t in toks for m in msgs if t.encode() in m.content) == sorted(toks)
    sl.wait_queue_empty(10)
    json.dumps(sl.queue("list"))


def test_deleted_message_stays_deleted_on_a_stopped_spool(sluice_factory):
    """Every `sluice queue` on a stopped server opens the spool anew. A message
    deleted once must never come back, however often the spool is opened."""
    sl = sluice_factory()
    keep = send_raw(sl.smtp, simple_message(token()))
    gone = send_raw(sl.smtp, simple_message(token()))
    assert sl.stop() == 0
    assert "done" in sl.queue("delete", gone)
    for i in range(3):
        ids = [e["id"] for e in sl.queue_entries()]
        assert ids == [keep], f"open #{i + 1} after the delete: {ids} (deleted {gone})"


def test_delivered_or_deleted_message_stays_gone_across_restarts(sluice_factory):
    """The same through a running server: a message deleted (by command)
    after a restart must not be resurrected by later restarts."""
    sl = sluice_factory()
    keep = send_raw(sl.smtp, simple_message(token()))
    gone = send_raw(sl.smtp, simple_message(token()))
    sl.restart()
    assert "done" in sl.queue("delete", gone)
    assert [e["id"] for e in sl.queue_entries()] == [keep]
    for i in range(3):
        sl.restart()
        ids = [e["id"] for e in sl.queue_entries()]
        assert ids == [keep], f"restart #{i + 1} after the delete: {ids} (deleted {gone})"


def test_delivered_message_is_not_delivered_again_after_restarts(sink_factory, sluice_factory):
    """A delivered message whose 'done' record lands in a later segment than
    its content (here: delivered after a restart, while a held message keeps
    the older segment alive) must stay delivered across later restarts."""
    sink = sink_factory()  # down at first
    sl = sluice_factory(relay=sink.addr, config=SLOW_RETRY)
    held_tok, tok = token(), token()
    held = send_raw(sl.smtp, simple_message(held_tok))
    send_raw(sl.smtp, simple_message(tok))
    deferred_all(sl, 2)
    assert "done" in sl.queue("hold", held)
    sl.restart()
    sink.start()
    assert "done" in sl.queue("flush")
    sink.wait_for(1, timeout=20, match=lambda m: tok.encode() in m.content)
    wait_until(lambda: [e["id"] for e in sl.queue_entries()] == [held], 10, what="only the held message left")
    for i in range(3):
        sl.restart()
        time.sleep(1.5)  # recovered messages are attempted at once
        copies = [m for m in sink.messages() if tok.encode() in m.content]
        assert len(copies) == 1, f"delivered again after restart #{i + 1}: {len(copies)} copies"
        assert [e["id"] for e in sl.queue_entries()] == [held]
