"""A private Sendmail on loopback, for bounces in Sendmail's own words
(issue 16, item 3). Debian's sendmail-bin conflicts with Postfix's package,
so scripts/install-test-deps.sh unpacks sendmail-bin and sendmail-cf into
SENDMAIL_ROOT: the instance's sendmail.cf is built with m4 from Sendmail's
own cf macros, with its queue, pid and status files under a temporary
directory, and the daemon runs from there (-C, -bD, -q1s).

Each route sends one domain to a fixed host and port: a mailer of its own
(`A=TCP $h PORT`, the smtp mailer's definition with a port) named in the
mailertable. Undeliverable mail is returned after `give_up` and warned
about after `warn`.
"""

import os
import subprocess

from helpers.mta_lab import Foreground

SENDMAIL_ROOT = os.environ.get("SLUICE_SENDMAIL_ROOT", "/opt/sluice-test/sendmail")
SENDMAIL = os.path.join(SENDMAIL_ROOT, "usr/libexec/sendmail/sendmail")
MAKEMAP = os.path.join(SENDMAIL_ROOT, "usr/libexec/sendmail/makemap")
CF_DIR = os.path.join(SENDMAIL_ROOT, "usr/share/sendmail/cf")


def mailer(name, port):
    """The esmtp mailer of Sendmail's cf/mailer/smtp.m4, to a fixed port."""
    return (f"M{name}, P=[IPC], F=mDFMuXa8k, S=EnvFromSMTP/HdrFromSMTP, R=EnvToSMTP, E=\\r\\n, L=990,\n"
            f"\tT=DNS/RFC822/SMTP, A=TCP $h {port}\n")


class Sendmail(Foreground):
    """One sendmail daemon: `routes` is a list of (domains, host, port);
    `mx_domains` are relayed by their MX records, in the DNS that `mounts`
    (shell commands run first in its own mount namespace) point it at;
    `tls_domains` must be sent over a verified STARTTLS (the access map's
    TLS_Rcpt, cf/README)."""

    def __init__(self, root, name, port, routes, give_up="20s", warn="4s", mx_domains="", mounts=None,
                 tls_domains=""):
        self.dir = os.path.join(root, name)
        self.name = name
        self.port = port
        self.mounts = mounts
        os.makedirs(os.path.join(self.dir, "queue"), mode=0o700, exist_ok=True)
        mailers = "".join(mailer(f"lab{i}", p) for i, (_, _, p) in enumerate(routes))
        table = "".join(
            f"{domain} lab{i}:[{host}]\n" for i, (domains, host, _) in enumerate(routes) for domain in domains.split()
        )
        # Host names from /etc/hosts first (Sendmail qualifies its own name
        # there), then the lab's DNS, which also gives the MX records; with
        # no lab DNS, /etc/hosts only (a resolver the machine cannot reach
        # would stall Sendmail's start for minutes).
        with open(os.path.join(self.dir, "service.switch"), "w") as f:
            f.write(f"hosts files{' dns' if mounts else ''}\naliases files\n")
        domains = " ".join([d for ds, _, _ in routes for d in ds.split()] + mx_domains.split())
        mc = f"""\
divert(-1)
divert(0)dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `{name}.lab.test')dnl
define(`QUEUE_DIR', `{self.dir}/queue')dnl
define(`confPID_FILE', `{self.dir}/sendmail.pid')dnl
define(`STATUS_FILE', `{self.dir}/statistics')dnl
define(`ALIAS_FILE', `')dnl
define(`confHOST_STATUS_DIRECTORY', `')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confSERVICE_SWITCH_FILE', `{self.dir}/service.switch')dnl
define(`confTO_QUEUERETURN', `{give_up}')dnl
define(`confTO_QUEUEWARN', `{warn}')dnl
define(`confMIN_QUEUE_AGE', `0s')dnl
define(`confTO_CONNECT', `5s')dnl
define(`confTO_ICONNECT', `5s')dnl
define(`confTO_INITIAL', `3s')dnl
define(`confDELIVERY_MODE', `background')dnl
define(`confMAX_QUEUE_CHILDREN', `4')dnl
define(`confPRIVACY_FLAGS', `goaway')dnl
define(`confLOG_LEVEL', `14')dnl
DAEMON_OPTIONS(`Port={port}, Addr=127.0.0.1, Name=MTA')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`mailertable', `hash -o {self.dir}/mailertable')dnl
FEATURE(`access_db', `hash -T<TMPF> -o {self.dir}/access')dnl
RELAY_DOMAIN(`{domains}')dnl
MAILER(`smtp')dnl
MAILER_DEFINITIONS
{mailers}"""
        with open(os.path.join(self.dir, "lab.mc"), "w") as f:
            f.write(mc)
        self.conf = os.path.join(self.dir, "sendmail.cf")
        with open(self.conf, "w") as out:
            subprocess.run(["m4", f"-D_CF_DIR_={CF_DIR}/", os.path.join(CF_DIR, "m4/cf.m4"),
                            os.path.join(self.dir, "lab.mc")], stdout=out, check=True)
        with open(os.path.join(self.dir, "mailertable"), "w") as f:
            f.write(table)
        access = "".join(f"TLS_Rcpt:{domain}\tVERIFY\n" for domain in tls_domains.split())
        for name, text in (("mailertable", table), ("access", access)):
            subprocess.run([MAKEMAP, "-C", self.conf, "hash", os.path.join(self.dir, name)],
                           input=text.encode(), check=True)
        self.out = os.path.join(self.dir, "sendmail.out")

    def start(self):
        # Sendmail sleeps a minute at start when it cannot qualify its host
        # name ("vm" here): it runs in mount and UTS namespaces of its own,
        # named mtas.lab.test, with an /etc/hosts that says so.
        hosts = os.path.join(self.dir, "hosts")
        with open("/etc/hosts") as f, open(hosts, "w") as out:
            out.write(f.read() + f"\n127.0.0.1 {self.name}.lab.test {self.name}\n")
        # -bD: a daemon in the foreground; -q1s: a queue run every second.
        script = (f"{self.mounts + ' && ' if self.mounts else ''}"
                  f"mount --bind {hosts} /etc/hosts && hostname {self.name}.lab.test"
                  f" && exec {SENDMAIL} -C {self.conf} -bD -q1s")
        self.run(["unshare", "-m", "-u", "sh", "-c", script])


def available():
    return os.access(SENDMAIL, os.X_OK) and os.access(MAKEMAP, os.X_OK)
