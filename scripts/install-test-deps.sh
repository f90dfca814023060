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
#   - exim4    : Debian's exim4-daemon-light, unpacked (not installed: it
#                conflicts with postfix as the system MTA) into
#                /opt/sluice-test/exim4, with its library (libidn12) and the
#                Debian-exim user; private instances bounce mail in Exim's
#                own words (tests/helpers/exim_lab.py).
#   - swaks    : the SMTP swiss-army knife, driven by a few tests, with its
#                TLS module (libnet-ssleay-perl) for STARTTLS.
#   - isync    : mbsync, the terminal IMAP client that syncs a store account
#                to a Maildir in the IMAP tests.
#   - aiosmtpd : the downstream SMTP peer of the suite (tests/peers/sink.py).
#   - pytest   : the runner.
set -euo pipefail

AIOSMTPD_VERSION="1.4.6"
PYTEST_VERSION="9.2.0"
# Independent checks of what the outbound path produces: DKIM signatures
# (dkimpy) and the OpenAPI document (openapi-spec-validator).
DKIMPY_VERSION="1.1.8"
OPENAPI_VALIDATOR_VERSION="0.9.0"
# Fuzzes the HTTP API from its own OpenAPI document (never a 5xx).
SCHEMATHESIS_VERSION="4.32.5"
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
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    need_apt+=(python3-pip)
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

# ---- Exim, unpacked beside Postfix -------------------------------------------
EXIM_ROOT="${SLUICE_EXIM_ROOT:-/opt/sluice-test/exim4}"
if [ ! -x "$EXIM_ROOT/usr/sbin/exim4" ]; then
    say "unpacking Debian's exim4-daemon-light into $EXIM_ROOT"
    dl="$(mktemp -d)"
    chmod 755 "$dl"   # apt's _apt user downloads into it
    (cd "$dl" && $SUDO apt-get download exim4-daemon-light exim4-base) || {
        $SUDO apt-get update && (cd "$dl" && $SUDO apt-get download exim4-daemon-light exim4-base)
    }
    $SUDO mkdir -p "$EXIM_ROOT"
    for deb in "$dl"/*.deb; do $SUDO dpkg -x "$deb" "$EXIM_ROOT"; done
    rm -rf "$dl"
fi
# Its shared libraries (exim4-daemon-light's Depends besides what Postfix
# already brought): libidn12 is the one a minimal Debian lacks.
if ldd "$EXIM_ROOT/usr/sbin/exim4" | grep -q "not found"; then
    say "installing exim4's libraries: libidn12 libgnutls-dane0 libnsl2 libdb5.3"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libidn12 libgnutls-dane0 libnsl2 libdb5.3
fi
if ! id Debian-exim >/dev/null 2>&1; then
    $SUDO useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin Debian-exim
fi

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
have_py "openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION" || py_need+=("openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION")
have_py "schemathesis==$SCHEMATHESIS_VERSION" || py_need+=("schemathesis==$SCHEMATHESIS_VERSION")

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
