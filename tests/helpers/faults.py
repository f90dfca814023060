"""Load under faults: many clients doing one job each while sluice is
killed with SIGKILL and restarted, or stopped with SIGSTOP."""

import random
import threading
import time


def under_kills(sl, jobs, work, threads=6, pause=(1.0, 2.0), limit=90.0, seed=None, spread=12.0):
    """Runs `work(job)` for every job, spread over `threads` threads, while
    sluice is killed -9 and restarted every `pause` seconds. `work` returns
    what the job got (a 250's queue id, a 202's body) or raises on a refusal
    or a dropped connection, in which case the job is tried again. Jobs are
    paced over `spread` seconds, so the load spans several kills. Returns
    ({job: result}, kills). Ends with one more kill and a restart."""
    results, lock, stop = {}, threading.Lock(), threading.Event()
    shares = [jobs[i::threads] for i in range(threads)]

    t0 = time.monotonic()

    def client(mine):
        i = 0
        while i < len(mine) and not stop.is_set():
            ahead = t0 + i * spread / len(mine) - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            try:
                got = work(mine[i])
            except Exception:  # refused, reset, timed out: not accepted; retry
                time.sleep(0.05)
                continue
            with lock:
                results[mine[i]] = got
            i += 1

    workers = [threading.Thread(target=client, args=(s,), daemon=True) for s in shares]
    for w in workers:
        w.start()
    rnd, kills = random.Random(seed), 0
    while any(w.is_alive() for w in workers) and time.monotonic() - t0 < limit:
        time.sleep(rnd.uniform(*pause))
        sl.kill()
        kills += 1
        sl.start(timeout=30)
    stop.set()
    for w in workers:
        w.join(30)
    sl.kill()
    sl.start(timeout=30)
    return results, kills


def no_stranded(sl, older_than=60):
    """Queued messages older than `older_than` seconds with no attempt."""
    now = time.time()
    return [e for e in sl.queue_entries()
            if e["received_at"] < now - older_than and not e["held"]
            and all(r["attempts"] == 0 for r in e["recipients"])]
