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


def test_accounts_and_users_are_listed_refused_when_unknown_and_removed(tmp_path):
    data = str(tmp_path / "data")
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    run("account", "add", "shop", "--password-file", str(pw), "--domain", "b.example", "--domain", "a.example",
        "--data", data)
    run("account", "add", "ann@isp.example", "--password-file", str(pw), "--data", data)
    run("account", "tenant", "shop", "acme", "--data", data)
    listed = run("account", "list", "--data", data).stdout.decode().splitlines()
    # (On PostgreSQL the module's tests share one database: others' accounts may be listed too.)
    mine = [line for line in listed if line.split("\t")[0] in ("ann@isp.example", "shop")]
    assert mine == ["ann@isp.example\ttenant=default\tdomains=",
                    "shop\ttenant=acme\tdomains=a.example,b.example"], listed

    # Retention on what does not exist is an error, not a success.
    p = run("account", "retention", "nobody", "7", "--data", data, check=False)
    assert p.returncode != 0 and b"no account nobody" in p.stderr, p.stderr
    p = run("account", "retention", "shop", "7", "--folder", "Spma", "--data", data, check=False)
    assert p.returncode != 0 and b'no folder "Spma"' in p.stderr, p.stderr
    assert b"shop/Spam: copies kept 7" in run("account", "retention", "shop", "7", "--folder", "Spam",
                                              "--data", data).stdout

    out = run("account", "remove", "ann@isp.example", "--data", data).stdout
    assert b"account ann@isp.example removed with 0 message(s)" in out, out
    assert "ann@isp.example" not in run("account", "list", "--data", data).stdout.decode()
    p = run("account", "remove", "ann@isp.example", "--data", data, check=False)
    assert p.returncode == 1 and b"no account ann@isp.example" in p.stderr, p.stderr

    run("user", "add", "app", "--password-file", str(pw), "--data", data)
    assert b"app" in run("user", "list", "--data", data).stdout.split()
    assert b"user app removed" in run("user", "remove", "app", "--data", data).stdout
    assert b"app" not in run("user", "list", "--data", data).stdout.split()
    p = run("user", "remove", "app", "--data", data, check=False)
    assert p.returncode == 1 and b"no user app" in p.stderr


def test_apikey_revoke_takes_any_start_of_eight_or_more(tmp_path):
    data = str(tmp_path / "data")
    keys = [run("apikey", "create", "--tenant", "acme", "--data", data).stdout.decode().split()[-1]
            for _ in range(2)]
    assert all(k.startswith("sk_") and len(k) == 67 for k in keys), keys
    assert b"revoked 1 key(s)" in run("apikey", "revoke", keys[0][:12], "--tenant", "acme", "--data", data).stdout
    assert b"revoked 1 key(s)" in run("apikey", "revoke", keys[1][:30], "--tenant", "acme", "--data", data).stdout
    p = run("apikey", "revoke", keys[1][:7], "--tenant", "acme", "--data", data, check=False)
    assert p.returncode != 0
