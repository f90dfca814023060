"""Where the record is kept (issue 18): `--database URL` / `SLUICE_DATABASE`,
and `sluice db migrate|check` against the suite's database (SQLite in the
data directory, or PostgreSQL when the suite runs on it)."""

import os
import subprocess

from helpers.procs import database_for_test, sluice_bin


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
