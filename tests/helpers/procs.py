"""The processes of the suite: sluice itself and the aiosmtpd sink peer."""

import json
import os
import re
import signal
import subprocess
import sys
import time

from .net import free_port, wait_port_closed

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
SINK_SCRIPT = os.path.join(TESTS, "peers", "sink.py")

ACCEPT_DOMAIN = "sluice.test"
HOSTNAME = "mx.sluice.test"


def sluice_bin():
    return os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "target", "debug", "sluice")


# SLUICE_TEST_DATABASE=postgres runs every sluice of the suite on
# PostgreSQL: one private server for the run (scripts/pg-test-server,
# stopped when this process ends), a fresh database for each sluice, named
# to it by SLUICE_DATABASE (serve and every CLI command read it).
_PG_DIR = None


def database_for_test(kind=None):
    """The URL of a fresh database for one sluice, or None on SQLite (the
    suite's kind, unless `kind` says which)."""
    global _PG_DIR
    kind = kind or os.environ.get("SLUICE_TEST_DATABASE", "sqlite")
    if kind == "sqlite":
        return None
    assert kind == "postgres", f"SLUICE_TEST_DATABASE is sqlite or postgres, not {kind!r}"
    script = os.path.join(ROOT, "scripts", "pg-test-server")
    if _PG_DIR is None:
        _PG_DIR = f"/tmp/sluice-pg-e2e-{os.getpid()}"
        subprocess.run([script, "start", _PG_DIR, str(os.getpid())], check=True, capture_output=True)
    name = f"s{time.monotonic_ns()}"
    p = subprocess.run([script, "createdb", _PG_DIR, name], check=True, capture_output=True)
    return p.stdout.decode().strip()


def db_rows(data_dir, database, sql, args=()):
    """The rows of `sql` (`?` placeholders) on a sluice's record: its
    PostgreSQL database when `database` names one, else the SQLite file in
    `data_dir`. Bytes come back as bytes on both."""
    if database:
        import psycopg
        with psycopg.connect(database) as con:
            cur = con.execute(sql.replace("?", "%s"), args)
            if cur.description is None:  # a statement without rows (UPDATE, DELETE)
                return []
            return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in cur.fetchall()]
    import sqlite3
    con = sqlite3.connect(os.path.join(data_dir, "sluice.db"), timeout=10)
    try:
        rows = con.execute(sql, args).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


def wait_until(predicate, timeout, interval=0.1, what="condition"):
    """Polls `predicate` until it returns something truthy; returns it. Raises
    AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def to_toml(cfg):
    """A tiny TOML writer for {section: {key: value}} with str/int/bool/list."""
    if isinstance(cfg, str):
        return cfg

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        raise TypeError(f"no TOML for {v!r}")

    out = []
    for section, keys in cfg.items():
        out.append(f"[{section}]")
        for k, v in keys.items():
            key = k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)
            out.append(f"{key} = {val(v)}")
        out.append("")
    return "\n".join(out)


class SluiceError(AssertionError):
    pass


class Sluice:
    """One `sluice serve` process with its own data directory. Ports are
    chosen by sluice on the first start (port 0) and kept for restarts."""

    LISTENING = re.compile(
        r"sluice listening: smtp=(\S+):(\d+) submission=(\S+):(\d+) imap=(\S+) data=(\S+) relay=(.*) tls-cert=(\S+)"
    )

    def __init__(self, workdir, config=None, relay=None, accept_domains=(ACCEPT_DOMAIN,),
                 hostname=HOSTNAME, extra_args=(), log_format=None, env=None):
        self.workdir = workdir
        self.data = os.path.join(workdir, "data")
        os.makedirs(self.data, exist_ok=True)
        self.config_path = None
        if config is not None:
            self.config_path = os.path.join(workdir, "sluice.toml")
            with open(self.config_path, "w") as f:
                f.write(to_toml(config))
        self.relay = relay
        self.accept_domains = list(accept_domains)
        self.hostname = hostname
        self.extra_args = list(extra_args)
        self.log_format = log_format
        self.env = dict(env or {})
        database = database_for_test()
        if database:
            self.env.setdefault("SLUICE_DATABASE", database)
        self.smtp_port = free_port()
        self.submission_port = free_port()
        self.imap_port = free_port()
        self.http_port = free_port()
        self.proc = None
        self.starts = 0
        self.tls_cert = None
        self.stdout_path = None
        self.stderr_path = None
        self.exit_codes = []

    # -- lifecycle ---------------------------------------------------------
    def command(self):
        cmd = [sluice_bin(), "serve", "--data", self.data,
               "--smtp", f"127.0.0.1:{self.smtp_port}",
               "--submission", f"127.0.0.1:{self.submission_port}",
               "--imap", f"127.0.0.1:{self.imap_port}",
               "--http", f"127.0.0.1:{self.http_port}",
               "--hostname", self.hostname]
        if self.config_path:
            cmd += ["--config", self.config_path]
        if self.relay:
            cmd += ["--relay", self.relay]
        for d in self.accept_domains:
            cmd += ["--accept-domain", d]
        if self.log_format:
            cmd += ["--log-format", self.log_format]
        return cmd + self.extra_args

    def start(self, timeout=30.0):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.stdout_path = os.path.join(self.workdir, f"stdout.{self.starts}.log")
        self.stderr_path = os.path.join(self.workdir, f"stderr.{self.starts}.log")
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        if self.env:
            env.update(self.env)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while True:
            with open(self.stdout_path, "r", errors="replace") as f:
                m = self.LISTENING.search(f.read())
            if m:
                assert int(m.group(2)) == self.smtp_port, m.group(0)
                assert int(m.group(4)) == self.submission_port, m.group(0)
                self.tls_cert = m.group(8)
                return self
            rc = self.proc.poll()
            if rc is not None:
                raise SluiceError(f"sluice exited with {rc} before listening:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise SluiceError(f"sluice did not print its listening line in {timeout}s:\n{self.tail()}")
            time.sleep(0.02)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=45.0):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise SluiceError(f"sluice did not stop within {timeout}s of SIGTERM:\n{self.tail()}")
        rc = self.proc.returncode
        self.exit_codes.append(rc)
        return rc

    def kill(self):
        """kill -9 and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
            self.exit_codes.append(self.proc.returncode)

    def restart(self, timeout=30.0):
        if self.running:
            rc = self.stop()
            assert rc == 0, f"sluice exit code {rc}:\n{self.tail()}"
        return self.start(timeout)

    # -- looking at it ---------------------------------------------------------
    def log(self, all_runs=True):
        """stderr of every run so far (or only of the current one)."""
        paths = ([os.path.join(self.workdir, f"stderr.{i}.log") for i in range(1, self.starts + 1)]
                 if all_runs else [self.stderr_path])
        text = []
        for p in paths:
            if p and os.path.exists(p):
                with open(p, "r", errors="replace") as f:
                    text.append(f.read())
        return "".join(text)

    def log_when(self, predicate, timeout=10, what="log lines"):
        """The log once `predicate(log)` holds: the server writes its log
        from a buffer every few milliseconds, so a line can trail the
        event it reports."""
        return wait_until(lambda: (lambda text: text if predicate(text) else None)(self.log()),
                          timeout, interval=0.02, what=what)

    def tail(self, n=40):
        lines = self.log(all_runs=False).splitlines()
        return "\n".join(lines[-n:])

    @property
    def smtp(self):
        return ("127.0.0.1", self.smtp_port)

    @property
    def http(self):
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def imap(self):
        return ("127.0.0.1", self.imap_port)

    @property
    def submission(self):
        return ("127.0.0.1", self.submission_port)

    # -- the record ------------------------------------------------------
    @property
    def database(self):
        """The PostgreSQL URL this sluice keeps its record in, or None."""
        return self.env.get("SLUICE_DATABASE")

    def rows(self, sql, *args):
        """Rows of a query on this sluice's record (`?` placeholders)."""
        return db_rows(self.data, self.database, sql, args)

    # -- CLI -------------------------------------------------------------
    def cli(self, *args, timeout=60, check=True, input=None):
        cmd = [sluice_bin(), *args]
        p = subprocess.run(cmd, capture_output=True, timeout=timeout, input=input, env={**os.environ, **self.env})
        if check and p.returncode != 0:
            raise SluiceError(f"{cmd} exited {p.returncode}\nstdout: {p.stdout!r}\nstderr: {p.stderr!r}")
        return p

    def queue(self, *args, check=True):
        """`sluice queue ARGS --data DIR --json`, parsed."""
        p = self.cli("queue", *args, "--data", self.data, "--json", check=False)
        try:
            doc = json.loads(p.stdout)
        except ValueError:
            raise SluiceError(f"queue {args}: not JSON (exit {p.returncode}): "
                              f"stdout={p.stdout!r} stderr={p.stderr!r}")
        if check and (p.returncode != 0 or "error" in doc):
            raise SluiceError(f"queue {args} failed (exit {p.returncode}): {doc} {p.stderr!r}")
        return doc

    def queue_entries(self):
        return self.queue("list")["entries"]

    def wait_queue_empty(self, timeout=30.0):
        return wait_until(lambda: self.queue_entries() == [] or None, timeout, interval=0.25,
                          what="an empty queue") and True

    def add_account(self, name, domain, password="s3cret"):
        """A store account taking the copies of `domain` (before `start`, or
        a running server takes it within its refresh interval)."""
        pw = os.path.join(self.workdir, f"pw-account-{name}")
        with open(pw, "w") as f:
            f.write(password + "\n")
        self.cli("account", "add", name, "--password-file", pw, "--domain", domain, "--data", self.data)

    def add_user(self, name, password):
        pw = os.path.join(self.workdir, f"pw-{name}")
        with open(pw, "w") as f:
            f.write(password + "\n")
        return self.cli("user", "add", name, "--password-file", pw, "--data", self.data)


class SinkMessage:
    def __init__(self, stem, content, meta):
        self.stem = stem
        self.content = content
        self.meta = meta

    @property
    def mail_from(self):
        """The reverse path without brackets; '' for the null sender."""
        m = self.meta["mail_from"] or ""
        return "" if m == "<>" else m

    @property
    def rcpts(self):
        return self.meta["rcpt_tos"]

    def header(self, name):
        """First value of header `name` in the content (unfolded), or None."""
        head = self.content.split(b"\r\n\r\n", 1)[0]
        m = re.search(rb"(?im)^" + re.escape(name.encode()) + rb":[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head)
        return m.group(1).replace(b"\r\n", b"").decode("utf-8", "replace").strip() if m else None

    def __repr__(self):
        return f"SinkMessage({self.stem}, from={self.mail_from!r}, to={self.rcpts!r}, {len(self.content)} bytes)"


class Sink:
    """The aiosmtpd peer (tests/peers/sink.py) in its own process."""

    def __init__(self, workdir, port=None, extra_args=()):
        self.dir = workdir
        os.makedirs(self.dir, exist_ok=True)
        self.extra_args = list(extra_args)
        self.port = port or free_port()
        self.proc = None
        self.starts = 0

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=20.0):
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        log = open(os.path.join(self.dir, f"sink.{self.starts}.log"), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, SINK_SCRIPT, "--port", str(self.port), "--dir", self.dir, *self.extra_args],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        # The first line is the readiness signal; a dead process gives EOF.
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            self.proc.kill()
            raise AssertionError("sink did not start")
        line = self.proc.stdout.readline().decode()
        sel.close()
        if not line.startswith("sink listening"):
            self.proc.wait(5)
            raise AssertionError(f"sink failed to start: {line!r} {self.errors()}")
        return self

    def errors(self):
        p = os.path.join(self.dir, f"sink.{self.starts}.log")
        with open(p, errors="replace") as f:
            return f.read()[-3000:]

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        wait_port_closed("127.0.0.1", self.port, 5)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def control(self, **cfg):
        """Sets DIR/control.json (replacing it whole)."""
        path = os.path.join(self.dir, "control.json")
        with open(path + ".tmp", "w") as f:
            json.dump(cfg, f)
        os.rename(path + ".tmp", path)

    def messages(self):
        mdir = os.path.join(self.dir, "messages")
        if not os.path.isdir(mdir):
            return []
        out = []
        for name in sorted(os.listdir(mdir)):
            if not name.endswith(".json"):
                continue
            stem = name[:-5]
            with open(os.path.join(mdir, name)) as f:
                meta = json.load(f)
            with open(os.path.join(mdir, stem + ".eml"), "rb") as f:
                content = f.read()
            out.append(SinkMessage(stem, content, meta))
        return out

    def count(self):
        mdir = os.path.join(self.dir, "messages")
        if not os.path.isdir(mdir):
            return 0
        return sum(1 for n in os.listdir(mdir) if n.endswith(".json"))

    def wait_for(self, n=1, timeout=30.0, match=None):
        """Waits until at least `n` messages (satisfying `match`, if given)
        have arrived; returns them."""
        def got():
            msgs = [m for m in self.messages() if match is None or match(m)]
            return msgs if len(msgs) >= n else None
        return wait_until(got, timeout, interval=0.1, what=f"{n} message(s) at the sink")

    def connections(self):
        try:
            with open(os.path.join(self.dir, "connections.log")) as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0
