"""Faults around sluice (issue 15, item 7): a downstream that drops the
connection after the message was sent, one that stalls (the timeout fires
and the message is retried), and sluice itself stopped with SIGSTOP for
20 s under load. Nothing accepted is lost, nothing is stranded, and a
refusal that was not a refusal never becomes a DSN."""

import signal
import smtplib
import threading
import time

import pytest

from helpers.faults import no_stranded
from helpers.procs import wait_until

FAST_RETRY = {"retry_initial_secs": 1, "retry_max_secs": 2}


def msg(mid):
    return (f"From: a@src.test\r\nTo: r@sluice.test\r\nSubject: {mid}\r\nMessage-ID: <{mid}>\r\n\r\n"
            f"body of {mid}\r\n").encode()


def subjects(sink):
    return {m.header("Subject") for m in sink.messages()}


def test_a_downstream_that_drops_the_connection_after_data_gets_it_again(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config={"queue": FAST_RETRY})
    sink.control(drop_data=True)
    with smtplib.SMTP(*sl.smtp, timeout=10) as c:
        c.sendmail("a@src.test", ["r@sluice.test"], msg("dropped"))
    e = wait_until(lambda: [e for e in sl.queue_entries() if e["recipients"][0]["attempts"] >= 2] or None,
                   20, what="two attempts cut off")
    assert e[0]["recipients"][0]["status"] == "deferred", e
    assert e[0]["recipients"][0]["last_reply"].startswith("4"), e
    sink.control()
    wait_until(lambda: "dropped" in subjects(sink), 20, what="the message once the downstream answers")
    sl.wait_queue_empty(10)
    assert "DSN queued" not in sl.log()


def test_a_stalled_downstream_times_out_and_the_message_is_retried(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config={"queue": FAST_RETRY, "relay": {"command_timeout_secs": 2}})
    sink.control(mail_delay=30)
    t0 = time.monotonic()
    with smtplib.SMTP(*sl.smtp, timeout=10) as c:
        c.sendmail("a@src.test", ["r@sluice.test"], msg("stalled"))
    e = wait_until(lambda: [e for e in sl.queue_entries() if e["recipients"][0]["attempts"] >= 1] or None,
                   20, what="an attempt that timed out")
    assert "timeout" in e[0]["recipients"][0]["last_reply"], e
    assert time.monotonic() - t0 < 15, "the command timeout fired"
    sink.control()
    wait_until(lambda: "stalled" in subjects(sink), 30, what="the message once the downstream answers")
    sl.wait_queue_empty(10)


@pytest.mark.time_limit(200)
def test_sigstop_for_20s_under_load_loses_and_strands_nothing(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config={"queue": FAST_RETRY,
                                                 "smtp": {"max_connections_per_ip": 1000}})
    mids = [f"stop{i}@load.test" for i in range(800)]
    accepted, lock = set(), threading.Lock()

    def client(mine):
        conn = None
        for i, mid in enumerate(mine):
            time.sleep(0.02)
            for _ in range(5):
                try:
                    if conn is None:
                        conn = smtplib.SMTP(*sl.smtp, timeout=40)
                    conn.sendmail("a@src.test", ["r@sluice.test"], msg(mid))
                    with lock:
                        accepted.add(mid)
                    break
                except (smtplib.SMTPException, OSError):
                    conn = None
                    time.sleep(0.1)
        if conn:
            conn.quit()

    threads = [threading.Thread(target=client, args=(mids[i::8],), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    sl.proc.send_signal(signal.SIGSTOP)
    time.sleep(20)
    sl.proc.send_signal(signal.SIGCONT)
    for t in threads:
        t.join(120)
    assert len(accepted) >= len(mids) * 0.9, f"only {len(accepted)} of {len(mids)} accepted"
    wait_until(lambda: accepted <= subjects(sink), 60, interval=1, what="every accepted message at the sink")
    sl.wait_queue_empty(30)
    assert not no_stranded(sl)
    assert sl.running
