#!/usr/bin/env bash
# Side-by-side classifier evaluation, sluice vs Sisimai, on a labelled folder
# (issue 16, item 1; the tune/validate split is item 2).
#
#   bench/classify_peers.sh DIR [--split tune|validate|all] [--misses] [--check-eval]
#   e.g. bench/classify_peers.sh /work/shared/corpus/bounces/sisimai --check-eval
#
# Installs Debian's libsisimai-perl when Sisimai is missing, picks the sluice
# binary (SLUICE, else target/release/sluice, else target/debug/sluice; it
# never builds one) and runs bench/classify_peers.py, which prints markdown.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"

say() { echo "classify_peers: $*" >&2; }

if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
fi

if ! perl -MSisimai -e 1 2>/dev/null; then
    say "installing libsisimai-perl (Sisimai, the peer classifier)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get install -y --no-install-recommends libsisimai-perl >/dev/null ||
        { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends libsisimai-perl >/dev/null; }
fi

if [ -z "${SLUICE:-}" ]; then
    for candidate in "$ROOT/target/release/sluice" "$ROOT/target/debug/sluice"; do
        if [ -x "$candidate" ]; then SLUICE="$candidate"; break; fi
    done
fi
if [ -z "${SLUICE:-}" ] || [ ! -x "$SLUICE" ]; then
    say "no sluice binary: build one first (cargo build --release -p sluice), or set SLUICE=/path/to/sluice"
    exit 1
fi
SLUICE="$(realpath "$SLUICE")"
export SLUICE

exec python3 "$HERE/classify_peers.py" "$@"
