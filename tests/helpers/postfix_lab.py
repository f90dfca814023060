"""Private Postfix instances on loopback, for bounces whose cause is known by
construction (issue 16, item 3): a sending Postfix ("A") hands mail to a
receiving Postfix ("B") that refuses it in Postfix's own words, or to a
closed port; A's (or B's) DSNs go to a capture sink.

Each instance has its own config, queue and data directories under a
temporary directory and listens on its own 127.0.0.1 port; it runs as the
system's `postfix` user (installed by scripts/install-test-deps.sh), never
touching the system instance's queue or ports.
"""

import contextlib
import os
import pwd
import shutil
import subprocess
import textwrap

from helpers.net import free_port
from helpers.lab_dns import LabDNS
from helpers.mta_lab import Silent, lab_dir, listening
from helpers.procs import wait_until

# Only the services a relay-and-bounce flow needs; no chroot (the instance's
# paths live outside /var/spool/postfix).
MASTER_CF = """\
{port}    inet  n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
local     unix  - n n - - local
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


class Postfix:
    """One private Postfix instance: `main` is extra main.cf text, `files`
    maps file names (in its config directory) to their contents, and
    `listeners` adds (port, "-o name=value ...") smtpd services; `mounts`
    (shell commands) run first in a mount namespace of the instance's own."""

    def __init__(self, root, name, port, main, files=None, listeners=(), mounts=None):
        self.dir = os.path.join(root, name)
        self.conf = os.path.join(self.dir, "conf")
        self.port = port
        self.mounts = mounts
        for sub in ("conf", "queue", "data", "mail"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        for sub in ("data", "mail"):
            shutil.chown(os.path.join(self.dir, sub), "postfix", "postfix")
        for fname, text in (files or {}).items():
            with open(os.path.join(self.conf, fname), "w") as f:
                f.write(text)
        base = f"""\
            compatibility_level = 3.6
            queue_directory = {self.dir}/queue
            data_directory = {self.dir}/data
            maillog_file = {self.dir}/maillog
            maillog_file_prefixes = {self.dir}
            mail_owner = postfix
            setgid_group = postdrop
            inet_interfaces = 127.0.0.1
            inet_protocols = ipv4
            myhostname = {name}.lab.test
            mydomain = lab.test
            myorigin = $myhostname
            mydestination =
            alias_maps =
            alias_database =
            local_recipient_maps =
            smtp_dns_support_level = disabled
            smtpd_banner = $myhostname ESMTP Postfix
            biff = no
            notify_classes =
            queue_run_delay = 1s
            minimal_backoff_time = 1s
            maximal_backoff_time = 2s
            """
        main = textwrap.dedent(main)
        overridden = {line.split("=", 1)[0].strip() for line in main.splitlines() if "=" in line}
        base = [line for line in textwrap.dedent(base).splitlines() if line.split("=", 1)[0].strip() not in overridden]
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write("\n".join(base) + "\n" + main)
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=f"127.0.0.1:{port}"))
            # More smtpd listeners, each with its own -o overrides.
            for extra_port, opts in listeners:
                f.write(f"127.0.0.1:{extra_port} inet n - n - - smtpd {opts}\n")

    def postfix(self, *args):
        return subprocess.run(["postfix", "-c", self.conf, *args], capture_output=True, text=True, timeout=60)

    def start(self):
        if self.mounts:
            # The master daemon (and every process it starts) stays in the
            # mount namespace it was started in.
            p = subprocess.run(["unshare", "-m", "sh", "-c", f"{self.mounts} && postfix -c {self.conf} start"],
                               capture_output=True, text=True, timeout=60)
        else:
            p = self.postfix("start")
        if p.returncode != 0:
            raise RuntimeError(f"postfix {self.dir} did not start: {p.stdout}{p.stderr}\n{self.log()}")
        wait_until(lambda: listening(self.port) or None, 20, what=f"postfix {self.dir} listening")

    def stop(self):
        self.postfix("stop")

    def log(self):
        try:
            with open(os.path.join(self.dir, "maillog")) as f:
                return f.read()
        except OSError:
            return ""


def receiver(root, sink_port):
    """The receiving Postfix ("B") that refuses mail in Postfix's words,
    started. Its virtual domains: dest.test (nobody@ unknown, full@ at its
    quota, ok@), tls.test, blocked.test, storage.test; local.test is local(8)
    with no users; other.test is not its to relay; senders at refused.test
    are refused; a Subject with FORBIDDEN is content refused; mail over
    40,000 bytes is too big; sender.test goes to the capture sink. Besides its
    main port, two listeners: "blocking" refuses every client, "full" has
    less free disk than any message needs. Returns (b, ports)."""
    pw = pwd.getpwnam("postfix")
    ports = {"main": free_port(), "blocking": free_port(), "full": free_port()}
    b = Postfix(root, "mtab", ports["main"], main=f"""\
        mydestination = local.test
        virtual_mailbox_domains = dest.test, tls.test, blocked.test, storage.test
        blocking_client_restrictions = check_client_access cidr:{root}/mtab/conf/clients
        virtual_mailbox_maps = texthash:{root}/mtab/conf/mailboxes
        virtual_mailbox_base = {root}/mtab/mail
        virtual_uid_maps = static:{pw.pw_uid}
        virtual_gid_maps = static:{pw.pw_gid}
        virtual_mailbox_limit = 60000
        message_size_limit = 40000
        mynetworks = 192.0.2.0/24
        smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
        smtpd_sender_restrictions = check_sender_access texthash:{root}/mtab/conf/senders
        header_checks = regexp:{root}/mtab/conf/header_checks
        transport_maps = texthash:{root}/mtab/conf/transport
        """, files={
        "mailboxes": "full@dest.test full\nok@dest.test ok\nx@tls.test tls\n"
                     "ok@blocked.test ok\nok@storage.test ok\n",
        "clients": "127.0.0.0/8 REJECT\n",
        "senders": "refused.test REJECT\n",
        "header_checks": "/^Subject: .*FORBIDDEN/ REJECT\n",
        "transport": f"sender.test smtp:[127.0.0.1]:{sink_port}\n",
    }, listeners=[
        # This client is refused; this one has less free disk than it needs.
        (ports["blocking"], "-o smtpd_client_restrictions=$blocking_client_restrictions"),
        (ports["full"], "-o queue_minfree=1000000000000000"),
    ])
    # A mailbox already at its limit.
    full = os.path.join(b.dir, "mail", "full")
    with open(full, "wb") as f:
        f.write(b"From x@y.test Thu Jan  1 00:00:00 2026\n" + b"x" * 59_990 + b"\n\n")
    os.chown(full, pw.pw_uid, pw.pw_gid)
    b.start()
    return b, ports


@contextlib.contextmanager
def receiving_lab(prefix, sink_port, make, base=None, silent_host="127.0.0.1"):
    """A lab: its DNS server (lab_dns) and a listener that never greets
    (`ports["silent"]`), B started, then the MTA under test that
    `make(root, ports)` builds, started; yields (mta, b) and stops all at
    the end. An MTA that looks names up runs with `lab_dns.resolver_mount(root)`.
    The silent listener is on `silent_host` (for an MTA that keeps its retry
    state per IP address, an address of its own)."""
    with lab_dir(prefix, base) as (root, mtas):
        dns = LabDNS(root, mx=LAB_MX, hosts={"localhost": "127.0.0.1"})
        mtas.append(dns)
        dns.start()
        silent = Silent(silent_host)
        mtas.append(silent)
        b, ports = receiver(root, sink_port)
        ports["silent"] = silent.port
        mtas.append(b)
        mta = make(root, ports)
        mtas.append(mta)
        mta.start()
        yield mta, b


# The lab's MX records (every other name under .test is NXDOMAIN): a
# domain whose MX host does not exist, and a null MX (RFC 7505: the domain
# accepts no mail).
LAB_MX = {"lostmx.test": "mx.lostmx.test", "nullmx.test": "."}

def unreachable(hostunknown, nullmx, broken, silent):
    """The causes every lab's DNS server and silent listener make, with the
    status each MTA writes for them: a host that does not exist (.invalid),
    nx.test NXDOMAIN, lostmx.test's MX host NXDOMAIN, nullmx.test's null MX,
    broken.test's name servers never answering, and a greeting that never
    comes. cause: (sender, recipient, message kind, reason, status, hard,
    verdict)."""
    return {
        "destination host does not exist": ("s@sender.test", "x@gone.test", "small", "hostunknown", hostunknown,
                                            True, "bounce"),
        "domain does not exist": ("s@sender.test", "x@nx.test", "small", "hostunknown", hostunknown, True, "bounce"),
        "MX host does not exist": ("s@sender.test", "x@lostmx.test", "small", "hostunknown", hostunknown, True,
                                   "bounce"),
        "domain accepts no mail (null MX)": ("s@sender.test", "x@nullmx.test", "small", "notaccept", nullmx, True,
                                             "bounce"),
        "name servers not answering until expiry": ("s@sender.test", "x@broken.test", "small", "expired", broken,
                                                    False, "bounce"),
        "no greeting until expiry": ("s@sender.test", "x@silent.test", "small", "expired", silent, False, "bounce"),
    }


# What B refuses at SMTP time, whoever relays to it; each lab's table starts
# from these. cause: (sender, recipient, message kind, reason, status, hard,
# verdict).
B_REFUSALS = {
    "unknown user": ("s@sender.test", "nobody@dest.test", "small", "userunknown", "5.1.1", True, "bounce"),
    "message too big": ("s@sender.test", "ok@dest.test", "big", "mesgtoobig", "5.3.4", False, "bounce"),
    "relay denied": ("s@sender.test", "x@other.test", "small", "norelaying", "5.7.1", False, "bounce"),
    "sender rejected": ("s@refused.test", "ok@dest.test", "small", "rejected", "5.7.1", False, "bounce"),
    # Postfix's built-in content inspection (header_checks REJECT, default
    # text "message content rejected") is documented for stopping spam and
    # worms (BUILTIN_FILTER_README); Sisimai reads the wording the same way.
    "content refused by header_checks": ("s@sender.test", "ok@dest.test", "forbidden", "spamdetected", "5.7.1",
                                         False, "bounce"),
    "sending host blocked": ("s@sender.test", "ok@blocked.test", "small", "blocked", "5.7.1", False, "bounce"),
}
