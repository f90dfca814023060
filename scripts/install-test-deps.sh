#!/usr/bin/env bash
# Installs what the end-to-end suite (tests/) needs from outside Rust, when it is
# missing. Idempotent: a second run installs nothing. Works as root on a fresh
# Debian machine (or with sudo available).
#
#   - postfix  : its test programs /usr/sbin/smtp-sink and smtp-source, and
#                private instances (own config, queue and ports on loopback,
#                tests/helpers/postfix_lab.py) that bounce mail for known
#                causes; the system postfix service is never configured or
#                left running (nothing of ours listens on port 25).
#   - exim4, opensmtpd, sendmail : Debian's packages unpacked (not installed: they
#                conflict with postfix as the system MTA) under
#                /opt/sluice-test, with their libraries and system users;
#                private instances bounce mail in each MTA's own words
#                (tests/helpers/exim_lab.py, opensmtpd_lab.py,
#                sendmail_lab.py); m4 builds Sendmail's configuration.
#   - swaks    : the SMTP swiss-army knife, driven by a few tests, with its
#                TLS module (libnet-ssleay-perl) for STARTTLS.
#   - isync    : mbsync, the terminal IMAP client that syncs a store account
#                to a Maildir in the IMAP tests.
#   - postgresql : Debian's server binaries, for the tests' private servers
#                (scripts/pg-test-server: initdb into a temporary directory
#                as an unprivileged user); no system cluster is created or
#                started.
#   - rspamd, redis-server : Debian's rspamd, run privately by
#                tests/test_rspamd.py (own configuration, ports and logs
#                under a temporary directory, as Debian's _rspamd user) with
#                a private redis-server for its Bayes statistics; neither
#                system service is left running.
#   - aiosmtpd : the downstream SMTP peer of the suite (tests/peers/sink.py).
#   - pytest   : the runner.
#   - man-db   : `man -l` renders the generated man pages in
#                tests/test_packaging.py.
#   - chromium, chromium-driver, python3-selenium : the dashboard's browser
#                test (tests/test_dashboard.py), headless.
set -euo pipefail

AIOSMTPD_VERSION="1.4.6"
PYTEST_VERSION="9.2.0"
# Independent checks of what the outbound path produces: DKIM signatures
# (dkimpy) and the OpenAPI document (openapi-spec-validator).
DKIMPY_VERSION="1.1.8"
OPENAPI_VALIDATOR_VERSION="0.9.0"
# Verifies webhooks out as a receiver would, with the Standard Webhooks
# reference library.
STANDARDWEBHOOKS_VERSION="1.0.1"
# Fuzzes the HTTP API from its own OpenAPI document (never a 5xx).
SCHEMATHESIS_VERSION="4.32.5"
# Reads a sluice's record on PostgreSQL, as the tests read SQLite's file
# (over the system's libpq, installed with PostgreSQL).
PSYCOPG_VERSION="3.3.9"
# Reads /metrics with the Prometheus text format parser (tests/test_metrics.py).
PROMETHEUS_CLIENT_VERSION="0.26.0"
PYTHON="${PYTHON:-python3}"

say() { echo "install-test-deps: $*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        say "not root and no sudo: cannot install system packages" >&2
    fi
fi

# ---- Debian packages -------------------------------------------------------
need_apt=()
[ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ] || need_apt+=(postfix)
command -v swaks >/dev/null 2>&1 || need_apt+=(swaks)
# swaks' STARTTLS needs Net::SSLeay, only a Recommends of the swaks package
# (and --no-install-recommends skips it): without it swaks says "TLS not
# available" and the submission tests fail.
perl -MNet::SSLeay -e1 >/dev/null 2>&1 || need_apt+=(libnet-ssleay-perl)
command -v mbsync >/dev/null 2>&1 || need_apt+=(isync)
# The real-MTA labs' DNS server (NXDOMAIN and SERVFAIL by construction).
[ -x /usr/sbin/dnsmasq ] || need_apt+=(dnsmasq-base)
# The systemd unit's own checks (`systemd-analyze verify|security`).
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# The man pages `sluice man` writes, rendered as a reader sees them
# (`man -l`, tests/test_packaging.py); man-db brings groff's nroff.
command -v man >/dev/null 2>&1 || need_apt+=(man-db)
# filter mode's optional second opinion (tests/test_rspamd.py), and the
# redis its learning needs.
command -v rspamd >/dev/null 2>&1 || need_apt+=(rspamd)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# Test keys and signatures for provider webhooks (SNS certificates, SendGrid's
# ECDSA), made as the providers make them, with the openssl command.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The web dashboard's browser test (tests/test_dashboard.py): headless
# Chromium from Debian, its WebDriver, and Selenium to drive it.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
"$PYTHON" -c 'import selenium' >/dev/null 2>&1 || need_apt+=(python3-selenium)
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    need_apt+=(python3-pip)
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need_apt+=(postgresql)
    # postgresql-common creates (and starts) a "main" cluster on install
    # unless told not to; the tests run their own.
    $SUDO mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/sluice-tests.conf >/dev/null
fi

if [ "${#need_apt[@]}" -gt 0 ]; then
    say "installing Debian packages: ${need_apt[*]}"
    # Postfix must not ask questions nor start its service: "No configuration"
    # leaves it unconfigured, and a temporary policy-rc.d forbids starting any
    # service during the install (only if no policy is in place already).
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections 2>/dev/null || true
    echo "postfix postfix/mailname string localhost" | $SUDO debconf-set-selections 2>/dev/null || true
    policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    cleanup_policy() {
        if [ "$policy_added" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
    }
    trap cleanup_policy EXIT
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_apt[@]}"
    cleanup_policy
    trap - EXIT
else
    say "Debian packages already present: postfix (smtp-sink, smtp-source), swaks"
fi

# ---- Exim and OpenSMTPD, unpacked beside Postfix ---------------------------
# Both conflict with postfix as the system MTA: their packages are unpacked
# (dpkg -x), never installed, and run privately by the tests.
unpack_debs() {  # ROOT PACKAGE...
    local root="$1" dl
    shift
    say "unpacking Debian's $* into $root"
    dl="$(mktemp -d)"
    chmod 755 "$dl"   # apt's _apt user downloads into it
    (cd "$dl" && $SUDO apt-get download "$@") || {
        $SUDO apt-get update && (cd "$dl" && $SUDO apt-get download "$@")
    }
    $SUDO mkdir -p "$root"
    for deb in "$dl"/*.deb; do $SUDO dpkg -x "$deb" "$root"; done
    rm -rf "$dl"
}
need_libs() {  # BINARY PACKAGE...: install the packages if BINARY lacks a library
    local bin="$1"
    shift
    # Not `grep -q`: it exits at the first match, ldd then dies of
    # SIGPIPE, and under pipefail the test reads as "nothing missing".
    if ldd "$bin" | grep "not found" >/dev/null; then
        say "installing the libraries of $bin: $*"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
    fi
}
system_user() {  # NAME HOME
    id "$1" >/dev/null 2>&1 || $SUDO useradd --system --no-create-home --home-dir "$2" --shell /usr/sbin/nologin "$1"
}

EXIM_ROOT="${SLUICE_EXIM_ROOT:-/opt/sluice-test/exim4}"
[ -x "$EXIM_ROOT/usr/sbin/exim4" ] || unpack_debs "$EXIM_ROOT" exim4-daemon-light exim4-base
# (exim4-daemon-light's Depends beyond what Postfix brought; libidn12 is the
# one a minimal Debian lacks.)
need_libs "$EXIM_ROOT/usr/sbin/exim4" libidn12 libgnutls-dane0 libnsl2 libdb5.3
system_user Debian-exim /nonexistent

# OpenSMTPD's paths are compiled in: the tests bind-mount private ones over
# these mount points inside a mount namespace of their own (unshare -m).
OPENSMTPD_ROOT="${SLUICE_OPENSMTPD_ROOT:-/opt/sluice-test/opensmtpd}"
[ -x "$OPENSMTPD_ROOT/usr/sbin/smtpd" ] || unpack_debs "$OPENSMTPD_ROOT" opensmtpd
need_libs "$OPENSMTPD_ROOT/usr/sbin/smtpd" libevent-2.1-7 libssl3 libpam0g libdb5.3 zlib1g
system_user opensmtpd /var/lib/opensmtpd/empty
system_user opensmtpq /var/lib/opensmtpd/empty
$SUDO mkdir -p /var/spool/smtpd /var/lib/opensmtpd/empty /usr/libexec/opensmtpd

# Sendmail: the daemon and makemap (sendmail-bin) and the cf macros its
# sendmail.cf is built from with m4 (sendmail-cf).
SENDMAIL_ROOT="${SLUICE_SENDMAIL_ROOT:-/opt/sluice-test/sendmail}"
[ -x "$SENDMAIL_ROOT/usr/libexec/sendmail/sendmail" ] || unpack_debs "$SENDMAIL_ROOT" sendmail-bin sendmail-cf
need_libs "$SENDMAIL_ROOT/usr/libexec/sendmail/sendmail" libwrap0 libldap-2.5-0 liblockfile1 libsasl2-2 libnsl2 libdb5.3
command -v m4 >/dev/null 2>&1 || $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends m4

# Whatever happened before us: the system postfix service must not be running
# (we only use its test programs, and it would sit on port 25).
if command -v postfix >/dev/null 2>&1 && $SUDO postfix status >/dev/null 2>&1; then
    say "stopping the system postfix service (only its test binaries are used)"
    $SUDO postfix stop >/dev/null 2>&1 || $SUDO service postfix stop >/dev/null 2>&1 || true
fi

# ---- Python packages -------------------------------------------------------
have_py() {
    "$PYTHON" - "$@" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    if version(name) != want:
        sys.exit(1)
EOF
}

py_need=()
have_py "aiosmtpd==$AIOSMTPD_VERSION" || py_need+=("aiosmtpd==$AIOSMTPD_VERSION")
have_py "pytest==$PYTEST_VERSION" || py_need+=("pytest==$PYTEST_VERSION")
have_py "dkimpy==$DKIMPY_VERSION" || py_need+=("dkimpy==$DKIMPY_VERSION")
have_py "standardwebhooks==$STANDARDWEBHOOKS_VERSION" || py_need+=("standardwebhooks==$STANDARDWEBHOOKS_VERSION")
have_py "openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION" || py_need+=("openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION")
have_py "schemathesis==$SCHEMATHESIS_VERSION" || py_need+=("schemathesis==$SCHEMATHESIS_VERSION")
have_py "psycopg==$PSYCOPG_VERSION" || py_need+=("psycopg==$PSYCOPG_VERSION")
have_py "prometheus-client==$PROMETHEUS_CLIENT_VERSION" || py_need+=("prometheus-client==$PROMETHEUS_CLIENT_VERSION")

if [ "${#py_need[@]}" -gt 0 ]; then
    say "installing Python packages: ${py_need[*]}"
    # A Debian system Python is "externally managed" (PEP 668); this is a
    # throw-away test machine, so install next to it anyway.
    if ! $SUDO "$PYTHON" -m pip install --disable-pip-version-check "${py_need[@]}"; then
        $SUDO "$PYTHON" -m pip install --disable-pip-version-check --break-system-packages "${py_need[@]}"
    fi
else
    say "Python packages already present: aiosmtpd==$AIOSMTPD_VERSION pytest==$PYTEST_VERSION dkimpy==$DKIMPY_VERSION openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION schemathesis==$SCHEMATHESIS_VERSION"
fi

say "done"
