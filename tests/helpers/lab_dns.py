"""A real DNS server for the real-MTA labs (issue 16, item 3): dnsmasq from
Debian (dnsmasq-base, installed by scripts/install-test-deps.sh), answering
on ADDRESS:53 for the lab's names only, so that an MTA that looks a domain
up meets the failures a resolver meets, by construction:

- every name under .test and .invalid that the lab does not define is
  NXDOMAIN (dnsmasq's `--local`: only locally known names), as for a
  domain that does not exist;
- names under BROKEN are forwarded to an address where nothing answers, so
  a look-up times out (the resolver's "try again"), as for a domain whose
  name servers are down;
- `mx` records and `hosts` (A records) are what the lab defines.

An MTA uses it through RESOLV_CONF bind-mounted over /etc/resolv.conf in a
mount namespace of its own (`resolver_mount`); nothing outside the lab
changes.
"""

import os

from helpers.mta_lab import Foreground

DNSMASQ = "/usr/sbin/dnsmasq"
ADDRESS = "127.53.0.1"
# Nothing listens here: the upstream of BROKEN.
SILENT_UPSTREAM = "127.53.0.2"
BROKEN = "broken.test"


def resolv_conf(root):
    return os.path.join(root, "resolv.conf")


def resolver_mount(root):
    """The shell command, run in the MTA's own mount namespace, that points
    its resolver at the lab's DNS server."""
    return f"mount --bind {resolv_conf(root)} /etc/resolv.conf"


class LabDNS(Foreground):
    """dnsmasq in the foreground: `mx` maps a domain to its MX host, `hosts`
    a name to its IPv4 address."""

    host = ADDRESS

    def __init__(self, root, mx=None, hosts=None):
        if not os.access(DNSMASQ, os.X_OK):
            raise RuntimeError(f"no dnsmasq at {DNSMASQ}: scripts/install-test-deps.sh installs dnsmasq-base")
        self.dir = os.path.join(root, "dns")
        os.makedirs(self.dir, exist_ok=True)
        self.port = 53
        self.out = os.path.join(self.dir, "dnsmasq.log")
        self.args = [
            DNSMASQ, "--keep-in-foreground", "--log-facility=-", "--log-queries", "--conf-file=/dev/null",
            "--port=53", f"--listen-address={ADDRESS}", "--bind-interfaces", "--no-resolv", "--no-hosts",
            "--local=/test/", "--local=/invalid/", f"--server=/{BROKEN}/{SILENT_UPSTREAM}",
            # dnsmasq drops root once its socket is bound.
            "--user=nobody",
        ]
        # (A null MX, ".", has preference 0: RFC 7505.)
        self.args += [f"--mx-host={domain},{target},{0 if target == '.' else 10}" for domain, target in (mx or {}).items()]
        self.args += [f"--host-record={name},{addr}" for name, addr in (hosts or {}).items()]
        # One try a second, twice: a look-up of BROKEN gives up in seconds.
        with open(resolv_conf(root), "w") as f:
            f.write(f"nameserver {ADDRESS}\noptions timeout:1 attempts:2\n")

    def start(self):
        self.run(self.args)

