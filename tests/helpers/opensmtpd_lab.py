"""A private OpenSMTPD on loopback, for bounces in OpenSMTPD's own words
(issue 16, item 3). Like Exim, Debian's package conflicts with Postfix's,
so scripts/install-test-deps.sh unpacks it into OPENSMTPD_ROOT and creates
its users (opensmtpd, opensmtpq). OpenSMTPD's spool and control socket
paths are compiled in (/var/spool/smtpd, /run/smtpd.sock): the instance runs
in a mount namespace of its own (`unshare -m`) where a temporary spool and
run directory (and its delivery agents, /usr/libexec/opensmtpd) are
bind-mounted over them, so it never shares them with
anything else.

Each route relays one domain to a fixed host and port; `tls` routes demand
STARTTLS (``smtp+tls://``). The reports' senders' domains are delivered to
a Maildir of the instance (`Mailbox`) rather than relayed to the capture
sink: OpenSMTPD throttles and backs off per destination IP, and every
destination here is 127.0.0.1, so its failures would hold the reports back. Messages expire after `ttl` and a delay warning
goes out after `warn`; `kick()` asks the scheduler to retry everything now
(OpenSMTPD's own backoff is minutes).
"""

import os
import shutil
import subprocess

from helpers.mta_lab import Foreground

OPENSMTPD_ROOT = os.environ.get("SLUICE_OPENSMTPD_ROOT", "/opt/sluice-test/opensmtpd")
SMTPD = os.path.join(OPENSMTPD_ROOT, "usr/sbin/smtpd")
SMTPCTL = os.path.join(OPENSMTPD_ROOT, "usr/sbin/smtpctl")
LIBEXEC = os.path.join(OPENSMTPD_ROOT, "usr/libexec/opensmtpd")
USER = "opensmtpd"


class OpenSMTPD(Foreground):
    """One smtpd: `routes` is a list of (domains, host, port, tls_required);
    `mx_domains` are relayed by their MX records, in the DNS that `mounts`
    (shell commands run first in its mount namespace) point it at."""

    def __init__(self, root, name, port, routes, mailbox_domains="", ttl="15s", warn="4s", mx_domains="",
                 mounts=None):
        self.dir = os.path.join(root, name)
        self.port = port
        self.mounts = mounts
        for sub in ("spool", "run", "Maildir"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        os.chmod(os.path.join(self.dir, "spool"), 0o711)
        shutil.chown(os.path.join(self.dir, "Maildir"), USER, USER)
        lines = [
            f"queue ttl {ttl}",
            f"bounce warn-interval {warn}",
            f"listen on 127.0.0.1 port {port} hostname {name}.lab.test",
            # Mail for these domains (the reports' senders) is kept here,
            # every address delivered as one system user (a catch-all
            # virtual table: "@" maps any address).
            f'table keep {{ "@" = "{USER}" }}',
            f'action "mailbox" maildir "{self.dir}/Maildir" virtual <keep>',
        ]
        for domain in mailbox_domains.split():
            lines.append(f'match from local for domain "{domain}" action "mailbox"')
        for i, (domains, host, p, tls) in enumerate(routes):
            scheme = "smtp+tls" if tls else "smtp"
            lines.append(f'action "r{i}" relay host {scheme}://{host}:{p} helo {name}.lab.test')
            for domain in domains.split():
                lines.append(f'match from local for domain "{domain}" action "r{i}"')
        lines.append(f'action "mx" relay helo {name}.lab.test')
        for domain in mx_domains.split():
            lines.append(f'match from local for domain "{domain}" action "mx"')
        self.conf = os.path.join(self.dir, "smtpd.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.out = os.path.join(self.dir, "smtpd.log")

    def start(self):
        script = (
            f"{self.mounts + ' && ' if self.mounts else ''}"
            f"mount --bind {self.dir}/spool /var/spool/smtpd && mount --bind {self.dir}/run /run"
            f" && mount --bind {LIBEXEC} /usr/libexec/opensmtpd"
            f" && exec {SMTPD} -d -v -f {self.conf}"
        )
        self.run(["unshare", "-m", "sh", "-c", script])

    def kick(self):
        """`smtpctl schedule all` inside the instance's mount namespace."""
        if self.running():
            subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", SMTPCTL, "schedule", "all"],
                           capture_output=True, timeout=10)


class Mailbox:
    """The reports delivered to the instance's Maildir, as the capture sink
    shows its messages (`mail_from` from Return-Path, `content`)."""

    class Message:
        def __init__(self, content):
            self.content = content
            head = content.split(b"\n\n", 1)[0]
            rp = next((line for line in head.splitlines() if line.lower().startswith(b"return-path:")), b"")
            # (Only reports come to the senders' domains; without a
            # Return-Path, take it as the null sender.)
            self.mail_from = rp.split(b":", 1)[1].strip().strip(b"<>").decode() if rp else ""

    def __init__(self, mta):
        self.dir = os.path.join(mta.dir, "Maildir")

    def messages(self):
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.dir, sub)
            for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
                with open(os.path.join(d, name), "rb") as f:
                    out.append(self.Message(f.read()))
        return out


def available():
    return os.access(SMTPD, os.X_OK) and shutil.which("unshare") and shutil.which("nsenter")
