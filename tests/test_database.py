"""Where the record is kept (issue 18): `--database URL` / `SLUICE_DATABASE`,
and `sluice db migrate|check` against the suite's database (SQLite in the
data directory, or PostgreSQL when the suite runs on it)."""

import os
import subprocess
import time

from helpers.mail import send_raw
from helpers.procs import database_for_test, sluice_bin, wait_until


def run(*args, env=None):
    return subprocess.run([sluice_bin(), *args], capture_output=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_migrate_and_check_name_the_database_and_its_schema(tmp_path):
    database = database_for_test()
    env = {"SLUICE_DATABASE": database} if database else {}
    data = str(tmp_path / "data")
    p = run("db", "migrate", "--data", data, env=env)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "schema version" in out and "up to date" in out, out
    p = run("db", "check", "--data", data, env=env)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "reachable, schema version" in out, out
    assert ("postgres://" in out) == bool(database), out
    # Retention: nothing recorded before 2000; a month that is none is refused.
    p = run("db", "forget", "--before", "2000-01", "--data", data, env=env)
    assert p.returncode == 0 and b"forgot 0 event(s) from before 2000-01" in p.stdout, p
    p = run("db", "forget", "--before", "2000-13", "--data", data, env=env)
    assert p.returncode != 0 and b"is not a month" in p.stderr, p


def test_a_bad_or_unreachable_database_is_a_clear_error_without_its_password(tmp_path):
    p = run("db", "check", "--data", str(tmp_path), "--database", "mysql://root:hunter2@db/x")
    err = p.stderr.decode()
    assert p.returncode != 0 and "sqlite://PATH or postgres://" in err, err
    assert "hunter2" not in err
    # Nothing listens on port 1: refused at once, said without the password.
    p = run("db", "check", "--data", str(tmp_path), "--database", "postgres://sluice:hunter2@127.0.0.1:1/x")
    err = p.stderr.decode()
    assert p.returncode != 0 and "postgres://sluice:***@127.0.0.1:1/x" in err, err
    assert "hunter2" not in err
    # A serve that cannot reach its database says so and exits.
    p = run("serve", "--data", str(tmp_path), "--smtp", "127.0.0.1:0", "--submission", "127.0.0.1:0",
            "--imap", "127.0.0.1:0", "--http", "127.0.0.1:0",
            "--database", "postgres://sluice:hunter2@127.0.0.1:1/x")
    err = p.stderr.decode()
    assert p.returncode != 0 and "opening the database" in err and "hunter2" not in err, err


def test_a_running_server_forgets_the_months_past_retention(sink, sluice_factory):
    """`[database] event_retention_months`: a server forgets older months
    by itself (PostgreSQL drops their partitions), this month's stay."""
    sl = sluice_factory(relay=sink.addr, config={"database": {"event_retention_months": 1}})
    send_raw(sl.smtp, b"Subject: old\r\n\r\nold news\r\n", rcpts=("old@sluice.test",))
    sink.wait_for(1)
    wait_until(lambda: sl.rows("SELECT COUNT(*) FROM events")[0][0] >= 2, 20, what="the old message's events")
    sl.stop()
    # Its events move four months back, as if recorded then.
    sl.rows("UPDATE events SET at = at - ?", 120 * 86_400_000)
    sl.start()
    send_raw(sl.smtp, b"Subject: new\r\n\r\nnews\r\n", rcpts=("new@sluice.test",))
    sink.wait_for(2)
    sl.log_when(lambda text: "events past retention forgotten" in text, timeout=20,
                what="the upkeep forgetting the old month")
    ages = wait_until(lambda: sl.rows("SELECT MIN(at) FROM events")[0], 20, what="this month's events")
    assert ages[0] > int(time.time() * 1000) - 40 * 86_400_000, ages
    left = sl.rows("SELECT COUNT(*) FROM events WHERE at < ?", int(time.time() * 1000) - 100 * 86_400_000)
    assert left == [(0,)], left
