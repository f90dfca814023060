#!/usr/bin/env bash
# Filter mode beside tee mode, accept-and-relay throughput in one run, with
# the shared harness (smtp-source -> sluice -> smtp-sink, fsync on).
# `sluice-tee`: a store account takes the benchmark domain's copies (each
# message relayed, and classified and filed off the relay's path).
# `sluice-filter`: the domain is in filter mode (`--filter-domain`), with a
# Bayes model trained on the spam corpus's training half: every message is
# scanned at the end of DATA, its recipient's policy read from the record,
# a filtered event recorded, and the message delivered. Peers
# alternate within each repeat. Prints medians. Target: filter within 30%
# of tee.
#
#   bench/filter_throughput.sh [REPEATS]     (env: N, CONCS, RCPTS, HARNESS, BIN, CORPUS)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HARNESS=${HARNESS:-$ROOT/../shared/bench/smtp_bench.sh}
CORPUS=${CORPUS:-$ROOT/../shared/corpus/spam}
[ -x "$HARNESS" ] || { echo "harness not found: $HARNESS (set HARNESS=)"; exit 1; }
command -v smtp-source >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y postfix >/dev/null
REPEATS=${1:-3}
export N=${N:-5000} N1=${N1:-2000} CONCS=${CONCS:-"1 16"} RCPTS=${RCPTS:-"1"}
export RUN_ROOT=${RUN_ROOT:-/tmp/sluice-filter-bench-run}
OUT=${OUT:-$ROOT/bench/results/filter-throughput-$(date -u +%Y%m%dT%H%M%SZ).tsv}
mkdir -p "$(dirname "$OUT")"
if [ -z "${BIN:-}" ]; then
  cargo build --release -p sluice
  BIN=$ROOT/target/release/sluice
fi
# The model: trained once on the training half (bench/spam_accuracy.py's
# split), copied into each run's data directory.
MODEL=$(mktemp -d)/spam-model.bin
TRAIN=$(mktemp -d)
mkdir -p "$TRAIN/ham" "$TRAIN/spam"
python3 - "$CORPUS" "$TRAIN" <<'PY'
import hashlib, os, sys
corpus, out = sys.argv[1:]
for kind in ("ham", "spam"):
    for name in sorted(os.listdir(os.path.join(corpus, kind))):
        if hashlib.sha256(f"{kind}/{name}".encode()).digest()[0] % 2 == 0:
            os.symlink(os.path.join(corpus, kind, name), os.path.join(out, kind, name))
PY
"$BIN" spam train --ham "$TRAIN/ham" --spam "$TRAIN/spam" --model "$MODEL" >/dev/null
SERVE="exec $BIN serve --data \$SUT_DIR --smtp 127.0.0.1:\$SUT_PORT --submission 127.0.0.1:\$((SUT_PORT+7)) \
  --imap 127.0.0.1:\$((SUT_PORT+8)) --http 127.0.0.1:\$((SUT_PORT+9)) --relay 127.0.0.1:\$SINK_PORT --hostname bench.sluice.test"
TEE="echo bench > \$SUT_DIR/pw && $BIN account add bench --password-file \$SUT_DIR/pw --domain example.test \
  --data \$SUT_DIR >/dev/null && $SERVE --accept-domain example.test"
# smtp-source's mail (a 4 KiB body of one repeated line) scores as spam
# with a trained model: the policy delivers whatever the score, so both
# peers relay every message and the harness can count them at the sink;
# the scan, the policy read and the filtered event are all still done.
# Sender authentication is on (as by default): SPF, DKIM and DMARC of
# smtp-source's sender@src.bench.test, asked of a local dnsmasq that
# publishes an SPF and a DMARC record for 5 minutes (dnsmasq gives its own
# records a TTL of 0 unless told), then answered from sluice's cache. The
# dnsmasq is authoritative for test., as a real zone's servers are: a name
# that does not exist (DMARC's look-ups up the tree, _dmarc.bench.test and
# _dmarc.test) is NXDOMAIN with the zone's SOA, which resolvers cache (RFC
# 2308) for its 5 minutes. Without it dnsmasq answered REFUSED, which no
# resolver caches, and every message asked DNS twice more.
DNS_PORT=${DNS_PORT:-5399}
command -v dnsmasq >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y dnsmasq-base >/dev/null
dnsmasq --keep-in-foreground --no-resolv --no-hosts --port="$DNS_PORT" --listen-address=127.0.0.1 \
  --bind-interfaces --pid-file= --user=root --local-ttl=300 \
  --auth-zone=test --auth-server=ns.bench.test,127.0.0.1 --auth-ttl=300 \
  --auth-soa=1,hostmaster.bench.test,1200,180,1209600 \
  --txt-record=src.bench.test,"v=spf1 ip4:127.0.0.1 -all" \
  --txt-record=_dmarc.src.bench.test,"v=DMARC1; p=none" &
DNS_PID=$!
trap 'kill $DNS_PID 2>/dev/null || true' EXIT
FILTER="cp $MODEL \$SUT_DIR/spam-model.bin && printf '[policy]\\nspam_action = \"deliver\"\\nunsure_action = \"deliver\"\\n[spam]\\ndns = [\"127.0.0.1:$DNS_PORT\"]\\n' > \$SUT_DIR/filter.toml && $SERVE --config \$SUT_DIR/filter.toml --filter-domain example.test"

for r in $(seq 1 "$REPEATS"); do
  if [ $((r % 2)) -eq 1 ]; then order="tee filter"; else order="filter tee"; fi
  for mode in $order; do
    if [ "$mode" = tee ]; then
      OUT=$OUT REPEATS=1 SUT_CMD="$TEE" "$HARNESS" ext:sluice-tee
    else
      OUT=$OUT REPEATS=1 SUT_CMD="$FILTER" "$HARNESS" ext:sluice-filter
    fi
  done
done
echo
echo "## medians ($REPEATS repeats) from $OUT"
"$HARNESS" summarize "$OUT"
