"""The README's five-minute walk-through works as written (issue 21, part 3).

Its shell blocks are read from README.md, in order: ```sh walkthrough-serve
is started in the background (as the reader leaves it running in a first
terminal), every ```sh walkthrough block then runs in bash in the same
directory, each checked for its exit status and what it must say. What the
test changes, and only that: the binary is the debug build (on PATH, instead
of the setup block's release build), and the loopback ports are free ones
(the README's 2525, 2587, 1143 and 8025 rewritten), so it can run beside
another sluice. `sluice serve` without a config file prints where it listens
and the next three commands; those commands are the walk-through's own."""

import os
import re
import subprocess
import time
import urllib.request

import pytest

from helpers.net import free_port
from helpers.procs import database_for_test, sluice_bin, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DEFAULT_PORTS = {"smtp": 2525, "submission": 2587, "imap": 1143, "http": 8025}

# What each ```sh walkthrough block must print (stdout and stderr together),
# in the README's order. A new or removed block fails the count below, so
# this list is updated with the README.
EXPECT = [
    [r'"address":"ann@example\.net","status":"queued"', r"API key for tenant demo"],
    [r"user mailer saved"],
    [r"ann@example\.net \(tenant demo\)", r"queued\s+ann@example\.net", r"bob@example\.net \(tenant demo\)",
     r"queued\s+bob@example\.net"],
    [r"operator admin sees every tenant"],
    [r'sluice_events_total\{type="queued",reason="none"\} 2', r'"status":"ok"'],
]


def blocks(kind):
    """The bodies of the README's ```sh KIND blocks, in order."""
    text = open(README).read()
    return re.findall(r"^```sh " + re.escape(kind) + r"\n(.*?)^```$", text, re.M | re.S)


def with_ports(text, ports):
    for name, default in DEFAULT_PORTS.items():
        text = text.replace(f"127.0.0.1:{default}", f"127.0.0.1:{ports[name]}")
    return text


@pytest.fixture
def demo(tmp_path):
    """The reader's demo directory and environment: the debug binary on
    PATH, HOME in the directory, free ports; SLUICE_DATABASE on PostgreSQL."""
    ports = {name: free_port() for name in DEFAULT_PORTS}
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sluice_bin()) + os.pathsep + env.get("PATH", "")
    env["HOME"] = str(tmp_path)
    env.pop("SLUICE_LOG", None)
    url = database_for_test()
    if url:
        env["SLUICE_DATABASE"] = url
    else:
        env.pop("SLUICE_DATABASE", None)
    return tmp_path, env, ports


def start_serve(cwd, env, ports, command):
    """The serve block started as written, plus the free ports; returns the
    process and a function that reads what it has printed."""
    flags = " ".join(f"--{name} 127.0.0.1:{port}" for name, port in ports.items())
    out = open(os.path.join(cwd, "serve.out"), "w")
    err = open(os.path.join(cwd, "serve.err"), "w")
    proc = subprocess.Popen(["bash", "-c", f"exec {command.strip()} {flags}"], cwd=cwd, env=env,
                            stdout=out, stderr=err, start_new_session=True)

    def printed():
        return open(os.path.join(cwd, "serve.out")).read()

    def ready():
        assert proc.poll() is None, open(os.path.join(cwd, "serve.err")).read()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/readyz", timeout=2) as r:
                return r.status == 200 and "Try next" in printed()
        except OSError:
            return False

    wait_until(ready, 60, what="sluice serve ready")
    return proc, printed


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=45)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def test_the_walkthrough_runs_as_written(demo):
    cwd, env, ports = demo
    serve = blocks("walkthrough-serve")
    steps = blocks("walkthrough")
    assert len(serve) == 1 and serve[0].strip() == "sluice serve", serve
    assert len(steps) == len(EXPECT), f"README has {len(steps)} walkthrough blocks, the test knows {len(EXPECT)}"
    setup = blocks("walkthrough-setup")
    assert len(setup) == 1 and "cargo build --release" in setup[0], setup
    proc, printed = start_serve(cwd, env, ports, serve[0])
    try:
        hints = printed()
        # The first run's block: every listener, then three commands.
        for name, port in ports.items():
            assert f"127.0.0.1:{port}" in hints, (name, hints)
        tried = [line.strip() for line in hints.splitlines() if line.startswith(("  sluice ", "  curl "))]
        assert len(tried) == 3, hints
        walk = with_ports("\n".join(steps), ports).replace("\\\n", " ")
        walk = re.sub(r"[ \t]+", " ", walk)
        for command in tried:
            assert re.sub(r"[ \t]+", " ", command) in walk, \
                f"serve suggests {command!r}, which the README's walk-through does not run"
        for i, (step, expect) in enumerate(zip(steps, EXPECT)):
            script = with_ports(step, ports)
            p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                               capture_output=True, text=True, timeout=120)
            said = p.stdout + p.stderr
            assert p.returncode == 0, f"walkthrough block {i + 1} exited {p.returncode}:\n{script}\n{said}"
            for want in expect:
                assert re.search(want, said), f"block {i + 1} did not say {want!r}:\n{script}\n{said}"
            if i == 0:
                # The second send's tracking needs both messages recorded.
                time.sleep(0.2)
        # The dashboard the README sends the reader to: a login page.
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/", timeout=10) as r:
            page = r.read().decode(errors="replace")
        assert r.status == 200 and re.search(r"(?i)password", page), page[:2000]
    finally:
        stop(proc)


def test_serve_with_a_config_file_says_only_where_it_listens(demo):
    cwd, env, ports = demo
    (cwd / "sluice.toml").write_text("# everything at its default\n")
    flags = [f"--{name}=127.0.0.1:{port}" for name, port in ports.items()]
    proc = subprocess.Popen([sluice_bin(), "serve", "--config", "sluice.toml", *flags], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("sluice listening: "), first
    finally:
        stop(proc)
    rest = proc.stdout.read()
    assert "Try next" not in rest and "sluice apikey" not in rest, rest
