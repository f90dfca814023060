"""The quarantine store's commands (issue 4 groundwork): accounts and the
retention sweep with a clock override, against a real database (SQLite, or
PostgreSQL when the suite runs on it)."""

import os
import subprocess

from helpers.procs import db_rows, sluice_bin, database_for_test

DATABASE = database_for_test()


def run(*args, check=True):
    env = {**os.environ, **({"SLUICE_DATABASE": DATABASE} if DATABASE else {})}
    p = subprocess.run([sluice_bin(), *args], capture_output=True, timeout=60, env=env)
    if check:
        assert p.returncode == 0, p.stderr.decode()
    return p


def test_account_add_and_sweep(tmp_path):
    data = str(tmp_path / "data")
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    out = run("account", "add", "acme", "--password-file", str(pw), "--domain", "Bounces.Example.COM",
              "--data", data)
    assert b"account acme saved" in out.stdout
    rows = db_rows(data, DATABASE, "SELECT d.domain, a.name, a.password_hash FROM account_domains d "
                   "JOIN accounts a ON a.id = d.account_id")
    assert len(rows) == 1
    domain, name, hashed = rows[0]
    assert (domain, name) == ("bounces.example.com", "acme")
    assert hashed.startswith("$argon2id$") and "s3cret" not in hashed

    out = run("quarantine", "sweep", "--as-of", "2030-01-01T00:00:00Z", "--data", data)
    assert b"swept 0 message(s)" in out.stdout


def test_sweep_rejects_a_bad_clock(tmp_path):
    p = run("quarantine", "sweep", "--as-of", "next tuesday", "--data", str(tmp_path), check=False)
    assert p.returncode != 0
    assert b"RFC 3339" in p.stderr
