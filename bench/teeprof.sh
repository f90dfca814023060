#!/usr/bin/env bash
# One quick run for profiling the tee: smtp-source sends N 4 KiB messages
# over 16 connections to a release sluice relaying to smtp-sink, with the
# tee on (a store account for the domain) or off. Prints the accept rate,
# the server's CPU during the run and after the copies drain, and CPU ticks
# (1/100 s) and context switches per thread kind, from /proc.
#
#   bench/teeprof.sh on|off [N]      (env: BIN, DRAIN seconds after an
#                                     off run, PERF=1 to record a perf
#                                     profile of the run, PERF=burst
#                                     of the burst only)
#
# With the tee on (and sqlite3 installed) it also waits for the copies left
# over when the burst ends and says how long filing them took.
#
# Not a benchmark (one run, no peer): for comparing a change's per-thread
# cost. bench/tee_throughput.sh gives the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?on or off}; N=${2:-10000}
BIN=${BIN:-$PWD/target/release/sluice}
[ -x "$BIN" ] || cargo build --release -p sluice
command -v smtp-source >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y postfix >/dev/null
D=/tmp/teeprof-$MODE
pkill -f "smtp-sink -u root -c 127.0.0.1:25626" 2>/dev/null || true
pkill -f "serve --data /tmp/teeprof" 2>/dev/null || true
sleep 0.5
rm -rf "$D"; mkdir -p "$D"
smtp-sink -u root -c 127.0.0.1:25626 1000 > "$D/sink.log" 2>&1 &
SINK=$!
if [ "$MODE" = on ]; then
  echo bench > "$D/pw"
  "$BIN" account add bench --password-file "$D/pw" --domain example.test --data "$D" >/dev/null
fi
"$BIN" serve --data "$D" --smtp 127.0.0.1:25625 --submission 127.0.0.1:25632 --imap 127.0.0.1:25633 \
  --http 127.0.0.1:25634 --relay 127.0.0.1:25626 --accept-domain example.test --hostname bench.sluice.test \
  > "$D/sluice.log" 2>&1 &
S=$!
# The server and the sink go with the script, however it ends (a reader
# that stops early, `| head`, kills it with SIGPIPE).
trap 'kill "$S" "$SINK" 2>/dev/null || true' EXIT
sleep 1.5
# CPU ticks and context switches per thread kind, now.
threads() {
  for t in /proc/$S/task/*; do
    echo "$(cat "$t/comm" | tr ' ' _) $(awk '{print $14+$15}' "$t/stat") $(awk '/^voluntary/{print $2}' "$t/status") $(awk '/^nonvoluntary/{print $2}' "$t/status")"
  done | awk -v at="$1" '{cpu[$1]+=$2; v[$1]+=$3; iv[$1]+=$4; n[$1]++}
    END {for (k in cpu) print at, k, n[k], "cpu_ticks", cpu[k], "vcs", v[k], "ivcs", iv[k]}' | sort
}
ticks() { awk '{print $14+$15}' "/proc/$S/stat"; }
if [ -n "${PERF:-}" ]; then perf record -F 999 --call-graph=dwarf -p "$S" -o "$D/perf.data" 2>/dev/null & P=$!; fi
t0=$(date +%s.%N); c0=$(ticks)
smtp-source -c -l 4096 -m "$N" -s 16 -f a@example.org -t b@example.test 127.0.0.1:25625 >/dev/null 2>&1
t1=$(date +%s.%N); c1=$(ticks)
burst=$(threads burst)
if [ "${PERF:-}" = burst ]; then kill -INT "$P"; wait "$P" 2>/dev/null || true; fi
echo "$MODE accept $(echo "$N / ($t1 - $t0)" | bc -l | cut -c1-7)/s  sluice cpu $(echo "($c1-$c0)/100" | bc -l | cut -c1-5)s"
if [ "$MODE" = on ] && command -v sqlite3 >/dev/null; then
  # How long the copies left over from the burst take to be filed.
  filed() { sqlite3 "$D/sluice.db" 'select count(*) from messages' 2>/dev/null || echo 0; }
  at_end=$(filed); t2=$t1
  while [ "$(filed)" -lt "$N" ] && [ "$(echo "$(date +%s.%N) - $t1 < 120" | bc)" = 1 ]; do sleep 0.1; done
  t2=$(date +%s.%N)
  echo "copies filed: $at_end of $N when the burst ended, $(filed) after $(echo "$t2 - $t1" | bc -l | cut -c1-5)s more"
else
  sleep "${DRAIN:-2}"
fi
if [ "${PERF:-}" = 1 ]; then kill -INT "$P"; wait "$P" 2>/dev/null || true; fi
c2=$(ticks); echo "cpu incl. drain $(echo "($c2-$c0)/100" | bc -l | cut -c1-5)s"
echo "$burst"
threads end
kill "$S" "$SINK"; wait "$S" 2>/dev/null || true
