#!/usr/bin/env bash
# compare.sh -- footfall against its peers, in one run, on one generated data set:
#   footfall: a fresh footfalld (temp data dir, loopback, --fsync $FSYNC, the generator's
#             topology) and `footfall import` of the CSV: rows/s as the client reports it;
#   postgres.sh: record_dpu_event one call per event (first CALL_EVENTS rows, SECONDS_RUN s
#             at most) and a plain COPY of the whole CSV;
#   influxdb.sh: the whole CSV as line protocol, batches of 5,000.
# Then footfall's ratio against each. Env: BUILD (build-bench), DPUS (200), EVENTS (1000000),
# FSYNC (always), SECONDS_RUN (20).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export BUILD=${BUILD:-build-bench} DPUS=${DPUS:-200} SECONDS_RUN=${SECONDS_RUN:-20}
EVENTS=${EVENTS:-1000000}
FSYNC=${FSYNC:-always}
say() { echo "compare.sh: $*" >&2; }
WORK=$(mktemp -d /tmp/ffcompare.XXXXXX); chmod 755 "$WORK"
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

cmake --build "$BUILD" --target footfalld footfall ff_load -j2 >/dev/null
"$BUILD/ff_load" --write-topology "$WORK/topo.json" --dpus "$DPUS" >&2
"$BUILD/ff_load" --write-csv "$WORK/events.csv" --events "$EVENTS" --dpus "$DPUS" >&2
chmod 644 "$WORK"/*

# --- footfall -------------------------------------------------------------------------
"$BUILD/footfalld" --data-dir "$WORK/ff.data" --udp 127.0.0.1:0 --tcp 127.0.0.1:0 \
    --http 127.0.0.1:0 --topology "$WORK/topo.json" --fsync "$FSYNC" --quiet \
    >"$WORK/ff.ready" 2>"$WORK/ff.err" &
SERVER_PID=$!
for _ in $(seq 600); do
    grep -q ready "$WORK/ff.ready" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/ff.err" >&2; exit 1; }
    sleep 0.1
done
TCP=$(grep -o 'tcp=[^ ]*' "$WORK/ff.ready" | cut -d= -f2)
HTTP=$(grep -o 'http=[^ ]*' "$WORK/ff.ready" | cut -d= -f2)
"$BUILD/footfall" --tcp "$TCP" --http "$HTTP" import "$WORK/events.csv" --no-progress \
    >"$WORK/import.out" 2>&1 || say "footfall import exited with status $?"
sed 's/^/    /' "$WORK/import.out" >&2
FF=$(sed -n 's/^elapsed .*(\([0-9.]*\) rows\/s).*/\1/p' "$WORK/import.out")
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=
echo "result peer=footfall_import events=$EVENTS events_per_s=${FF:-0} fsync=$FSYNC"

# --- peers ----------------------------------------------------------------------------
PG=$(TOPO="$WORK/topo.json" COPY_CSV="$WORK/events.csv" COPY_EVENTS="$EVENTS" \
     bash "$ROOT/bench/peers/postgres.sh" >"$WORK/pg.out"; cat "$WORK/pg.out" >&2; grep '^result ' "$WORK/pg.out")
IX=$(CSV="$WORK/events.csv" EVENTS="$EVENTS" bash "$ROOT/bench/peers/influxdb.sh" >"$WORK/ix.out"
     cat "$WORK/ix.out" >&2; grep '^result ' "$WORK/ix.out" || true)

rate() { grep "peer=$1 " | tr ' ' '\n' | sed -n 's/^events_per_s=//p' | head -1; }
ratio() { awk -v a="${FF:-0}" -v b="$2" -v n="$1" 'BEGIN {
    if (b > 0) printf "ratio footfall_import/%s = %.1fx (%s vs %s events/s)\n", n, a / b, a, b
    else printf "ratio footfall_import/%s: not measured\n", n }'; }
echo "== footfall vs peers, same run, $EVENTS events of $DPUS DPUs, $(date -u +%FT%TZ), $(nproc) cores"
ratio postgres_record_dpu_event "$(echo "$PG" | rate postgres_record_dpu_event)"
ratio postgres_copy "$(echo "$PG" | rate postgres_copy)"
ratio influxdb "$(echo "$IX" | rate influxdb)"
