#!/usr/bin/env bash
# Accept-and-relay throughput with the tee off and on, in one run, using the
# shared harness (smtp-source -> sluice -> smtp-sink, 4 KiB messages, fsync
# on). `sluice-tee` has a store account for the benchmark domain, so every
# message is also classified and filed; `sluice` relays only. Peers alternate
# within each repeat so machine drift hits both alike. Prints medians.
#
#   bench/tee_throughput.sh [REPEATS]     (env: N, CONCS, RCPTS, HARNESS, BIN)
#
# BIN=path measures that binary instead of building this tree's (to compare
# two builds, run the script once per binary, alternating).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HARNESS=${HARNESS:-$ROOT/../shared/bench/smtp_bench.sh}
[ -x "$HARNESS" ] || { echo "harness not found: $HARNESS (set HARNESS=)"; exit 1; }
command -v smtp-source >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y postfix >/dev/null
REPEATS=${1:-3}
export N=${N:-5000} N1=${N1:-2000} CONCS=${CONCS:-"1 16"} RCPTS=${RCPTS:-"1"}
export RUN_ROOT=${RUN_ROOT:-/tmp/sluice-tee-bench-run}
OUT=${OUT:-$ROOT/bench/results/tee-throughput-$(date -u +%Y%m%dT%H%M%SZ).tsv}
mkdir -p "$(dirname "$OUT")"
if [ -z "${BIN:-}" ]; then
  cargo build --release -p sluice
  BIN=$ROOT/target/release/sluice
fi
SERVE="exec $BIN serve --data \$SUT_DIR --smtp 127.0.0.1:\$SUT_PORT --submission 127.0.0.1:\$((SUT_PORT+7)) \
  --imap 127.0.0.1:\$((SUT_PORT+8)) --http 127.0.0.1:\$((SUT_PORT+9)) --relay 127.0.0.1:\$SINK_PORT --accept-domain example.test --hostname bench.sluice.test"
TEE="echo bench > \$SUT_DIR/pw && $BIN account add bench --password-file \$SUT_DIR/pw --domain example.test \
  --data \$SUT_DIR >/dev/null && $SERVE"

for r in $(seq 1 "$REPEATS"); do
  if [ $((r % 2)) -eq 1 ]; then order="off on"; else order="on off"; fi
  for mode in $order; do
    if [ "$mode" = on ]; then
      OUT=$OUT REPEATS=1 SUT_CMD="$TEE" "$HARNESS" ext:sluice-tee
    else
      OUT=$OUT REPEATS=1 SUT_CMD="$SERVE" "$HARNESS" ext:sluice
    fi
  done
done
echo
echo "## medians ($REPEATS repeats) from $OUT"
"$HARNESS" summarize "$OUT"
