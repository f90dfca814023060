"""Fixtures of the end-to-end suite: a real `sluice serve` (target/debug/sluice,
or $SLUICE_BIN) with its own data directory and loopback ports, and real SMTP
peers (an aiosmtpd sink in its own process; Postfix's smtp-sink; swaks).

Every wait has a timeout, so a hang fails a test instead of blocking CI."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers.procs import Sink, Sluice, sluice_bin  # noqa: E402


def pytest_sessionstart(session):
    path = sluice_bin()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.exit(
            f"sluice binary not found or not executable at {path!r}: build it first "
            "(cargo build -p sluice) or point SLUICE_BIN at it",
            returncode=3,
        )


@pytest.fixture
def sink(tmp_path):
    """A running aiosmtpd sink (stopped at teardown)."""
    s = Sink(str(tmp_path / "sink")).start()
    yield s
    s.stop()


@pytest.fixture
def sink_factory(tmp_path):
    """Makes sinks that are *not* started yet (for 'downstream down' tests)."""
    made = []

    def make(name="sink", extra_args=()):
        s = Sink(str(tmp_path / name), extra_args=extra_args)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def sluice_factory(tmp_path):
    """Makes and starts sluice servers; at teardown each one still running is
    stopped with SIGTERM and must exit 0."""
    made = []

    def make(start=True, name=None, **kw):
        workdir = tmp_path / (name or f"sluice{len(made)}")
        workdir.mkdir()
        s = Sluice(str(workdir), **kw)
        made.append(s)
        if start:
            s.start()
        return s

    yield make
    problems = []
    for s in made:
        if s.running:
            rc = s.stop()
            if rc != 0:
                problems.append(f"sluice in {s.workdir} exited {rc} on SIGTERM:\n{s.tail()}")
        # Whatever happened, no sluice may have panicked.
        if "panicked at" in s.log():
            problems.append(f"sluice in {s.workdir} panicked:\n{s.log()[-3000:]}")
    if problems:
        pytest.fail("\n\n".join(problems))


@pytest.fixture
def relay_pair(sink, sluice_factory):
    """A sluice relaying to a running sink: (sluice, sink)."""
    s = sluice_factory(relay=sink.addr, config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    return s, sink


# ---- a hard per-test time limit (no plugin needed) -------------------------
DEFAULT_TEST_TIMEOUT = 150


def pytest_configure(config):
    config.addinivalue_line("markers", "time_limit(seconds): hard limit for one test (default 150 s)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    import signal

    marker = item.get_closest_marker("time_limit")
    limit = int(marker.args[0]) if marker else DEFAULT_TEST_TIMEOUT

    def expired(signum, frame):
        raise TimeoutError(f"test exceeded its time limit of {limit}s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
