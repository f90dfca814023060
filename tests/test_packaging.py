"""Packaging (issue 21, part 5): the systemd unit is valid as systemd
itself reads it, runs sluice with the hardening it claims, and the
licence the crates declare is the one shipped."""

import os
import re
import subprocess

from helpers.procs import sluice_bin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = os.path.join(ROOT, "packaging", "sluice.service")


def unit_with_binary(tmp_path):
    """The unit, with ExecStart pointing at the binary built here (the
    packaged path /usr/bin/sluice does not exist on a build machine)."""
    text = open(UNIT).read().replace("/usr/bin/sluice", sluice_bin())
    path = tmp_path / "sluice.service"
    path.write_text(text)
    return path


def test_systemd_reads_the_unit_without_a_complaint(tmp_path):
    p = subprocess.run(["systemd-analyze", "verify", str(unit_with_binary(tmp_path))],
                       capture_output=True, text=True, timeout=60)
    complaints = [line for line in (p.stdout + p.stderr).splitlines() if "sluice.service" in line]
    assert p.returncode == 0 and not complaints, p.stdout + p.stderr


def test_the_unit_is_hardened(tmp_path):
    p = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit_with_binary(tmp_path))],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for sluice.service: ([0-9.]+)", p.stdout)
    assert m, p.stdout + p.stderr
    # systemd's scale: 0 (locked down) to 10 (no protection); under 2 is "OK".
    assert float(m.group(1)) < 2.0, p.stdout


def test_the_licence_shipped_is_the_one_declared():
    declared = re.search(r'^license = "([^"]+)"', open(os.path.join(ROOT, "Cargo.toml")).read(), re.M)
    assert declared and declared.group(1) == "Apache-2.0"
    text = open(os.path.join(ROOT, "LICENSE")).read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_version_names_the_commit():
    out = subprocess.run([sluice_bin(), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    m = re.fullmatch(r"sluice (\d+\.\d+\.\d+) \(([0-9a-f]{12}|unknown)\)", out)
    assert m, out
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        # Built from this checkout: the commit it was built from is HEAD
        # (the suite builds before it runs).
        assert m.group(2) == head.stdout.strip(), (out, head.stdout)


def test_the_bash_completion_is_valid_bash_and_knows_the_commands(tmp_path):
    p = subprocess.run([sluice_bin(), "completions", "bash", "--dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    script = tmp_path / "sluice.bash"
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    # Sourced, it completes `sluice tr` to `track`.
    probe = (f"source {script}; COMP_WORDS=(sluice tr); COMP_CWORD=1; COMP_LINE='sluice tr'; "
             "COMP_POINT=${#COMP_LINE}; _sluice sluice tr sluice; printf '%s\\n' \"${COMPREPLY[@]}\"")
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert "track" in done.stdout.split(), done.stdout + done.stderr


def rendered(page, env):
    """`man -l PAGE` as a reader sees it (overstrike bold and underline undone)."""
    out = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, timeout=60, env=env)
    return out.returncode, re.sub(".\x08", "", out.stdout), out.stderr


def test_man_renders_every_page(tmp_path):
    p = subprocess.run([sluice_bin(), "man", "--dir", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    pages = sorted(tmp_path.glob("sluice*.1"))
    assert len(pages) > 40 and (tmp_path / "sluice-serve.1").exists(), pages
    env = dict(os.environ, MANWIDTH="100")
    for page in pages:
        code, text, err = rendered(page, env)
        assert code == 0 and "NAME" in text and "SYNOPSIS" in text, (page, err, text)
        assert "warning" not in err.lower(), (page, err)
    serve = rendered(tmp_path / "sluice-serve.1", env)[1]
    assert "Run the server" in serve and "--accept-domain" in serve, serve[:2000]
    # `sluice man serve` prints the same page.
    one = subprocess.run([sluice_bin(), "man", "serve"], capture_output=True, text=True, timeout=30)
    assert one.returncode == 0 and one.stdout == (tmp_path / "sluice-serve.1").read_text()
