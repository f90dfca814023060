"""`sluice init`, `sluice config check` and `sluice config print` on the real
binary: the generated file checks, loads back to the defaults when
uncommented, and starts a server; a bad key fails naming it and its line;
`print` says where each value came from (default, file, flag, env)."""

import json
import os
import re
import subprocess

from helpers.procs import Sluice, sluice_bin


def run(*args, env=None, cwd=None):
    full_env = {k: v for k, v in os.environ.items() if k not in ("SLUICE_DATABASE", "SLUICE_LOG")}
    full_env.update(env or {})
    return subprocess.run([sluice_bin(), *args], capture_output=True, text=True, timeout=60,
                          env=full_env, cwd=cwd)


def uncomment(text):
    """Every `#key = value` default line made live (`# ` comments stay)."""
    return "\n".join(l[1:] if re.match(r"#[^ #!]", l) else l for l in text.splitlines()) + "\n"


def test_init_writes_every_section_and_refuses_to_overwrite(tmp_path):
    p = run("init", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    path = tmp_path / "sluice.toml"
    text = path.read_text()
    for section in ["[server]", "[smtp]", "[tls]", "[relay]", "[queue]", "[imap]", "[quarantine]",
                    "[http]", "[outbound]", "[database]", "[tracking]", "[webhooks]", "[spam]",
                    "[policy]", "# [[accounts]]", "# [domains.NAME]", "# [provider_webhooks.NAME]",
                    "# [tracking.streams.NAME]"]:
        assert f"\n{section}\n" in text, section
    assert '\n#listen = "127.0.0.1:2525"\n' in text
    assert "\n# url: not set\n" in text
    assert "sluice config check" in p.stdout
    # Not overwritten without --force.
    path.write_text("# mine\n")
    p = run("init", str(path))
    assert p.returncode != 0 and "--force" in p.stderr, p.stderr
    assert path.read_text() == "# mine\n"
    p = run("init", str(path), "--force")
    assert p.returncode == 0, p.stderr
    assert path.read_text() == text


def test_generated_file_checks_and_uncommented_equals_the_defaults(tmp_path):
    path = tmp_path / "sluice.toml"
    assert run("init", str(path)).returncode == 0
    p = run("config", "check", "--config", str(path))
    assert p.returncode == 0, p.stderr
    assert "ok" in p.stdout
    defaults = json.loads(run("config", "print", "--json").stdout)
    live = tmp_path / "live.toml"
    live.write_text(uncomment(path.read_text()))
    assert run("config", "check", "--config", str(live)).returncode == 0
    printed = json.loads(run("config", "print", "--json", "--config", str(live)).stdout)
    assert {k: v["value"] for k, v in printed.items()} == {k: v["value"] for k, v in defaults.items()}
    # Every key uncommented comes from the file now.
    assert printed["smtp.listen"]["source"] == "file"
    assert printed["queue.retry_initial_secs"]["source"] == "file"
    assert printed["database.url"] == {"value": None, "source": "default"}


def test_unknown_keys_and_bad_values_fail_naming_key_and_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[smtp]\nlisten = "127.0.0.1:2525"\nlistn = 1\n')
    p = run("config", "check", "--config", str(bad))
    assert p.returncode != 0
    assert "listn" in p.stderr and "line 3" in p.stderr, p.stderr
    bad.write_text('[server]\nhostname = "mx.test"\n\n[smtp]\nmax_recipients = 0\n')
    p = run("config", "check", "--config", str(bad))
    assert p.returncode != 0
    assert "smtp.max_recipients" in p.stderr and f"{bad}:5" in p.stderr, p.stderr
    bad.write_text('[smtp]\nlisten = "localhost:25"\n')
    p = run("config", "check", "--config", str(bad))
    assert p.returncode != 0 and "listen" in p.stderr, p.stderr


def test_print_shows_the_source_of_each_value(tmp_path):
    cfg = tmp_path / "sluice.toml"
    cfg.write_text('[server]\nhostname = "file.test"\naccept_domains = ["a.test"]\n\n'
                   '[smtp]\nmax_recipients = 50\n\n[spam]\nrspamd_url = "http://:hunter2@127.0.0.1:11334"\n')
    p = run("config", "print", "--config", str(cfg), "--smtp", "127.0.0.1:2626",
            "--accept-domain", "b.test", "--filter-domain", "f.test",
            env={"SLUICE_DATABASE": "postgres://me:topsecret@db.test/sluice"})
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for line in ['hostname = "file.test"  # file',
                 'listen = "127.0.0.1:2626"  # flag',
                 'submission = "127.0.0.1:2587"  # default',
                 'max_recipients = 50  # file',
                 'accept_domains = ["a.test", "b.test"]  # file+flag',
                 'url = "postgres://me:****@db.test/sluice"  # env',
                 'rspamd_url = "http://:****@127.0.0.1:11334"  # file',
                 '[domains."f.test"]  # flag']:
        assert line in out, f"{line!r} not in\n{out}"
    assert "hunter2" not in out and "topsecret" not in out
    # --database on the command line is a flag, and wins over the environment.
    p = run("config", "print", "--json", "--database", "sqlite:///tmp/x.db", "--log-level", "debug",
            env={"SLUICE_DATABASE": "sqlite:///tmp/y.db", "SLUICE_LOG": "warn"})
    doc = json.loads(p.stdout)
    assert doc["database.url"] == {"value": "sqlite:///tmp/x.db", "source": "flag"}
    assert doc["server.log_level"] == {"value": "debug", "source": "flag"}
    doc = json.loads(run("config", "print", "--json", env={"SLUICE_LOG": "warn"}).stdout)
    assert doc["server.log_level"] == {"value": "warn", "source": "env"}


def test_serve_starts_on_the_generated_file(tmp_path):
    workdir = tmp_path / "srv"
    workdir.mkdir()
    path = workdir / "sluice.toml"
    assert run("init", str(path)).returncode == 0
    s = Sluice(str(workdir))
    # The generated file, every default made live, the listeners moved to
    # free ports in the file itself.
    text = uncomment(path.read_text())
    ports = {"smtp": [("listen", s.smtp_port), ("submission", s.submission_port)],
             "imap": [("listen", s.imap_port)], "http": [("listen", s.http_port)]}
    for section, keys in ports.items():
        head = text.index(f"\n[{section}]\n")
        end = text.index("\n\n", head + 1)
        body = text[head:end]
        for key, port in keys:
            body = re.sub(rf'\n{key} = "127\.0\.0\.1:\d+"', f'\n{key} = "127.0.0.1:{port}"', body)
        text = text[:head] + body + text[end:]
    path.write_text(text)
    assert run("config", "check", "--config", str(path)).returncode == 0
    s.config_path = str(path)
    s.start()
    try:
        assert s.running
    finally:
        assert s.stop() == 0, s.tail()
