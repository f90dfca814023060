#!/usr/bin/env bash
# Accept-and-relay benchmark of sluice beside Postfix and the loopback limit
# (smtp-source -> smtp-sink direct), in one run, using the shared harness
# ../shared/bench/smtp_bench.sh (4 KiB messages, fsync on). Prints the median
# table, sluice's peak RSS per run, and the memory of 5,000 idle connections.
#
#   bench/smtp.sh [REPEATS]        (env: N, N1, CONCS, RCPTS, HARNESS)
#   BEFORE=/path/to/old/sluice bench/smtp.sh [REPEATS]
#       also runs an older build as ext:before in the same run, for a
#       before/after comparison with the same Postfix figures beside it.
#
# Every target is on 127.0.0.1; every run is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HARNESS=${HARNESS:-$ROOT/../shared/bench/smtp_bench.sh}
[ -x "$HARNESS" ] || { echo "harness not found: $HARNESS (set HARNESS=)"; exit 1; }
command -v smtp-source >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y postfix >/dev/null
REPEATS=${1:-3}
export N=${N:-5000} N1=${N1:-1000} CONCS=${CONCS:-"1 16 64"} RCPTS=${RCPTS:-"1 10"}
export RUN_ROOT=${RUN_ROOT:-/tmp/sluice-bench-run}
OUT=${OUT:-$ROOT/bench/results/smtp-$(date -u +%Y%m%dT%H%M%SZ).tsv}
mkdir -p "$(dirname "$OUT")"

cargo build --release -p sluice
BIN=$ROOT/target/release/sluice
sut_cmd() { echo "exec $1 serve --data \$SUT_DIR --smtp 127.0.0.1:\$SUT_PORT --submission 127.0.0.1:\$((SUT_PORT+7)) --imap 127.0.0.1:\$((SUT_PORT+8)) --http 127.0.0.1:\$((SUT_PORT+9)) \
  --relay 127.0.0.1:\$SINK_PORT --accept-domain example.test --hostname bench.sluice.test"; }

# Alternate peers within each repeat so drift on the shared machine hits all alike.
for r in $(seq 1 "$REPEATS"); do
  if [ -n "${BEFORE:-}" ]; then
    SUT_CMD=$(sut_cmd "$BEFORE") OUT=$OUT REPEATS=1 "$HARNESS" ext:before
  fi
  SUT_CMD=$(sut_cmd "$BIN") OUT=$OUT REPEATS=1 "$HARNESS" ext:sluice postfix sink-direct
done
echo
echo "## medians ($REPEATS repeats) from $OUT"
"$HARNESS" summarize "$OUT"

echo
echo "## sluice peak RSS per run (VmHWM at exit)"
grep -ho 'peak_rss_kb=[0-9]*' "$RUN_ROOT"/ext_sluice-*/sut.log 2>/dev/null | sort -t= -k2 -n | tail -1 \
  | sed 's/^/max over runs: /' || echo "not found"

echo
echo "## memory with 5,000 idle connections"
python3 "$ROOT/bench/idle_conns.py" "$BIN" 5000
