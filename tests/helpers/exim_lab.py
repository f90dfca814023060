"""A private Exim instance on loopback, for bounces in Exim's own words
(issue 16, item 3). Debian's Exim packages conflict with Postfix's (both
provide the system MTA), so scripts/install-test-deps.sh unpacks
exim4-daemon-light into EXIM_ROOT without installing it: the binary runs
from there with its own configuration, spool and log under a temporary
directory, as the `Debian-exim` user the script creates.

Each route sends one domain to a fixed host and port (Exim's manualroute
router, ``host::port``; one message a connection, since Exim would otherwise
pass other mail waiting for 127.0.0.1 down an open connection whatever its
port); `local` names a domain delivered by Exim itself to
files with a small quota. Retries are seconds apart and give up after
`give_up` seconds, so that delay warnings and final bounces come quickly. A
route to a host that cannot be found declines, and with no router left the
address is unrouteable, as Exim's dnslookup router leaves a domain without
DNS records.
"""

import os
import shutil

from helpers.mta_lab import Foreground

EXIM_ROOT = os.environ.get("SLUICE_EXIM_ROOT", "/opt/sluice-test/exim4")
EXIM = os.path.join(EXIM_ROOT, "usr/sbin/exim4")
USER = "Debian-exim"


def route(name, domain, host, port, transport="remote_smtp"):
    return f"""\
r_{name}:
  driver = manualroute
  domains = {domain}
  transport = {transport}
  route_list = * {host}::{port} byname
  host_find_failed = decline
  self = send
  no_more
"""


class Exim(Foreground):
    """One Exim daemon: `routes` is a list of (domain, host, port,
    tls_required); `mx_domains` are routed by their MX records (Exim's
    dnslookup router), in the DNS that `mounts` (shell commands run first in
    a mount namespace of the daemon's own) point it at."""

    def __init__(self, root, name, port, routes, local=None, give_up=15, delay_warning="4s:1h", mx_domains=None,
                 mounts=None):
        self.dir = os.path.join(root, name)
        self.port = port
        self.mounts = mounts
        for sub in ("spool", "log", "mail"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
            shutil.chown(os.path.join(self.dir, sub), USER, USER)
        os.chmod(self.dir, 0o755)
        routers = "".join(
            route(f"{i}", domain, host, p, "tls_smtp" if tls else "remote_smtp")
            for i, (domain, host, p, tls) in enumerate(routes)
        )
        if mx_domains:
            routers += f"""\
r_mx:
  driver = dnslookup
  domains = {mx_domains}
  transport = remote_smtp
  no_more
"""
        if local:
            routers += f"""\
r_local:
  driver = accept
  domains = {local}
  transport = to_file
"""
        self.conf = os.path.join(self.dir, "exim.conf")
        with open(self.conf, "w") as f:
            f.write(f"""\
exim_path = {EXIM}
keep_environment =
spool_directory = {self.dir}/spool
log_file_path = {self.dir}/log/%slog
exim_user = {USER}
exim_group = {USER}
never_users =
trusted_users = root
primary_hostname = {name}.lab.test
qualify_domain = lab.test
daemon_smtp_ports = {port}
local_interfaces = 127.0.0.1
host_lookup =
rfc1413_hosts =
dns_retrans = 1s
dns_retry = 1
tls_advertise_hosts =
acl_smtp_rcpt = acl_rcpt
delay_warning = {delay_warning}
delay_warning_condition = true
queue_run_max = 2
timeout_frozen_after = 1m
ignore_bounce_errors_after = 0s

begin acl
acl_rcpt:
  accept hosts = 127.0.0.1

begin routers
{routers}
begin transports
remote_smtp:
  driver = smtp
  allow_localhost
  connection_max_messages = 1
  command_timeout = 3s
tls_smtp:
  driver = smtp
  allow_localhost
  connection_max_messages = 1
  command_timeout = 3s
  hosts_require_tls = *
to_file:
  driver = appendfile
  file = {self.dir}/mail/mailbox
  user = {USER}
  quota = 2K

begin retry
* * F,{give_up}s,2s
""")
        self.out = os.path.join(self.dir, "exim.out")

    def start(self):
        daemon = [EXIM, "-C", self.conf, "-bdf", "-q1s"]
        if self.mounts:
            daemon = ["unshare", "-m", "sh", "-c", f"{self.mounts} && exec {' '.join(daemon)}"]
        self.run(daemon)

    def log(self):
        out = []
        for name in ("mainlog", "paniclog", "rejectlog"):
            try:
                with open(os.path.join(self.dir, "log", name)) as f:
                    # (Every process re-executed with our -C config gives up
                    # root and says so: noise.)
                    lines = [line for line in f if "lost privilege for using -C" not in line]
                out.append(f"--- {name}\n{''.join(lines)}")
            except OSError:
                pass
        return "\n".join(out)
