"""No loss on crash: sluice is kill -9'd every 1-2 s while clients send; every
message that got a 250 must reach the downstream (duplicates are allowed but
must stay rare)."""

import os
import random
import re
import smtplib
import threading
import time

import pytest

from helpers.procs import SluiceError, wait_until

TOTAL = int(os.environ.get("SLUICE_CRASH_MESSAGES", "3000"))
THREADS = 6
# Sending is paced so that the run spans many crashes (sluice alone takes
# 3000 messages in a few seconds): about 25 s of sending, ~15 kill -9s.
RATE = float(os.environ.get("SLUICE_CRASH_RATE", "120"))  # messages/s, all clients
SEND_PHASE_LIMIT = 110.0  # seconds of sending (with kills) at most
DRAIN_LIMIT = 90.0

MID = re.compile(rb"(?im)^Message-ID:\s*<([^>]+)>")


def message(mid):
    return (f"From: crash@src.test\r\nTo: rcpt@sluice.test\r\nSubject: crash test {mid}\r\n"
            f"Message-ID: <{mid}>\r\n\r\nbody of {mid}\r\n" + "filler line\r\n" * 20).encode()


class SinkIndex:
    """Incrementally reads the sink's messages: Message-ID -> count."""

    def __init__(self, sink):
        self.dir = os.path.join(sink.dir, "messages")
        self.seen = set()
        self.counts = {}

    def refresh(self):
        if not os.path.isdir(self.dir):
            return self.counts
        for name in os.listdir(self.dir):
            if not name.endswith(".json") or name in self.seen:
                continue
            self.seen.add(name)
            with open(os.path.join(self.dir, name[:-5] + ".eml"), "rb") as f:
                m = MID.search(f.read())
            if m:
                mid = m.group(1).decode()
                self.counts[mid] = self.counts.get(mid, 0) + 1
        return self.counts


@pytest.mark.time_limit(300)
def test_no_accepted_message_is_lost_when_killed(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config={
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 2, "fsync": True},
        "smtp": {"max_connections_per_ip": 1000, "command_timeout_secs": 30},
    })
    host, port = sl.smtp
    run = f"{random.getrandbits(32):08x}"
    ids = [f"{run}.{i}@crash.test" for i in range(TOTAL)]
    shares = [ids[i::THREADS] for i in range(THREADS)]
    accepted = set()
    attempts = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def client(mine):
        conn = None
        i = 0
        start = time.monotonic()
        per_thread = RATE / THREADS
        while i < len(mine) and not stop.is_set():
            mid = mine[i]
            ahead = start + i / per_thread - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            try:
                if conn is None:
                    conn = smtplib.SMTP(host, port, timeout=10)
                    conn.ehlo("crash-client.test")
                with lock:
                    attempts[0] += 1
                conn.sendmail("crash@src.test", ["rcpt@sluice.test"], message(mid))
                with lock:
                    accepted.add(mid)
                i += 1
            except (smtplib.SMTPException, OSError):
                # Connection refused/reset, 421, timeout...: not accepted; retry
                # the same message on a new connection.
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
                conn = None
                time.sleep(0.05)
        if conn is not None:
            try:
                conn.quit()
            except Exception:
                pass

    threads = [threading.Thread(target=client, args=(s,), daemon=True) for s in shares]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    kills = 0
    rnd = random.Random(run)
    while any(t.is_alive() for t in threads) and time.monotonic() - t0 < SEND_PHASE_LIMIT:
        time.sleep(rnd.uniform(1.0, 2.0))
        if not any(t.is_alive() for t in threads):
            break
        sl.kill()
        kills += 1
        try:
            sl.start(timeout=30)
        except SluiceError as e:
            stop.set()
            raise AssertionError(f"sluice did not come back after kill #{kills}: {e}")
    stop.set()
    for t in threads:
        t.join(20)
    send_secs = time.monotonic() - t0

    # One more crash and restart, then everything must drain.
    sl.kill()
    sl.start(timeout=30)
    index = SinkIndex(sink)

    def all_arrived():
        counts = index.refresh()
        return all(mid in counts for mid in accepted)
    try:
        wait_until(all_arrived, DRAIN_LIMIT, interval=1.0, what="every accepted message at the sink")
        sl.wait_queue_empty(30)
    finally:
        counts = index.refresh()
        missing = sorted(mid for mid in accepted if mid not in counts)
        delivered = sum(counts.values())
        unique = len(counts)
        duplicates = delivered - unique
        unaccepted_arrivals = sum(1 for mid in counts if mid not in accepted)
        print(f"\ncrash test: {TOTAL} messages, {THREADS} clients, {kills} kill -9s in {send_secs:.1f}s; "
              f"{attempts[0]} attempts, {len(accepted)} accepted (250), {delivered} deliveries, "
              f"{unique} unique, {duplicates} duplicates, {unaccepted_arrivals} delivered without a 250, "
              f"{len(missing)} LOST")
    assert not missing, f"{len(missing)} accepted messages never arrived, e.g. {missing[:5]}"
    assert kills >= 5, f"only {kills} crashes happened: the test proved little"
    assert len(accepted) >= min(TOTAL, 1000), f"only {len(accepted)} of {TOTAL} accepted in {send_secs:.0f}s"
    assert duplicates <= 0.02 * len(accepted), \
        f"{duplicates} duplicate deliveries for {len(accepted)} accepted messages (> 2%)"
    # Spot-check that what arrived is the message that was sent.
    sample = sink.messages()[:1]
    for m in sample:
        mid = MID.search(m.content).group(1).decode()
        assert m.content.endswith(message(mid)), m
