#!/usr/bin/env bash
# compare.sh -- footfall against its peers and the machine's raw limits, in one run, on one
# generated data set (ff_load --write-topology / --write-csv: DPUS DPUs, EVENTS events).
# Run by hand (not in CI): it installs and starts PostgreSQL 15 and InfluxDB 1.6 (Debian
# packages, through apt-get) when they are missing.
#
# ROUNDS times, in this order:
#   raw_limits: loopback sendmmsg -> recvmmsg (64 records per datagram) and mmap append of
#             16-byte records, in the same temp dir;
#   footfall import: a fresh footfalld (temp data dir, loopback, --fsync $FSYNC, the
#             generator's topology), `footfall import` of the CSV, rows/s as the client
#             reports it;
#   footfall UDP: a fresh footfalld, ff_load --udp --ack (64 events per datagram, window
#             64) for UDP_SECONDS s: accepted events/s;
#   postgres.sh: record_dpu_event one call per event on an empty database (SECONDS_RUN s),
#             then a plain COPY of the whole CSV;
#   postgres.sh PRELOAD=$PRELOAD: record_dpu_event after PRELOAD events are stored;
#   influxdb.sh: the whole CSV as line protocol, batches of 5,000.
# Then the median of each figure over the rounds, and footfall's ratios (import and UDP)
# against each peer and against the raw limits, all from the medians of this run.
#
# Usage: bench/peers/compare.sh [--help]
# Env: BUILD (build-bench), ROUNDS (3), DPUS (200), EVENTS (1000000), FSYNC (always),
#      SECONDS_RUN (20), PRELOAD (180000), UDP_SECONDS (10), RAW_SECONDS (3), KEEP=1 keeps
#      the temp dir. The PostgreSQL cluster is left running if it was running before.
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/../.."
ROOT=$PWD
export BUILD=${BUILD:-build-bench} DPUS=${DPUS:-200} SECONDS_RUN=${SECONDS_RUN:-20}
ROUNDS=${ROUNDS:-3}
EVENTS=${EVENTS:-1000000}
FSYNC=${FSYNC:-always}
PRELOAD=${PRELOAD:-180000}
UDP_SECONDS=${UDP_SECONDS:-10}
RAW_SECONDS=${RAW_SECONDS:-3}
say() { echo "compare.sh: $*" >&2; }
WORK=$(mktemp -d /tmp/ffcompare.XXXXXX)
chmod 755 "$WORK"
SERVER_PID=
PG_WAS_UP=0
pg_lsclusters 2>/dev/null | grep -q ' online' && PG_WAS_UP=1
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    if [ "$PG_WAS_UP" = 0 ] && command -v pg_ctlcluster >/dev/null; then
        pg_ctlcluster 15 main stop 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# shellcheck source=bench/bench_lib.sh
. "$ROOT/bench/bench_lib.sh"

start_server() { # $1: a name for this server's data dir and logs
    ff_start "$1" --data-dir "$WORK/$1.data" --udp 127.0.0.1:0 --tcp 127.0.0.1:0 \
        --http 127.0.0.1:0 --topology "$WORK/topo.json" --fsync "$FSYNC" --quiet || exit 1
}
stop_server() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || say "footfalld exited with status $?"
    SERVER_PID=
    rm -rf "$WORK"/*.data
}

cmake --build "$BUILD" --target footfalld footfall ff_load raw_limits -j2 >/dev/null
"$BUILD/ff_load" --write-topology "$WORK/topo.json" --dpus "$DPUS" >&2
"$BUILD/ff_load" --write-csv "$WORK/events.csv" --events "$EVENTS" --dpus "$DPUS" >&2
chmod 644 "$WORK"/*
LOG=$WORK/results.txt # every `result`/`raw` line of every round, prefixed with the round
: >"$LOG"

say "start $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    say "== round $r of $ROUNDS, load $(cut -d' ' -f1-3 /proc/loadavg)"
    line=$("$BUILD/raw_limits" --dir "$WORK" --seconds "$RAW_SECONDS" | grep '^raw ')
    say "raw limits: $line"
    echo "$r $line" >>"$LOG"

    start_server "import$r"
    "$BUILD/footfall" --tcp "$TCP" --http "$HTTP" import "$WORK/events.csv" --no-progress \
        >"$WORK/import.out" 2>&1 || say "footfall import exited with status $?"
    sed 's/^/    /' "$WORK/import.out" >&2
    stop_server
    ff=$(sed -n 's/^elapsed .*(\([0-9.]*\) rows\/s).*/\1/p' "$WORK/import.out")
    echo "$r result peer=footfall_import events=$EVENTS events_per_s=${ff:-0}" | tee -a "$LOG" >&2

    start_server "udp$r"
    line=$("$BUILD/ff_load" --udp "$UDP" --ack --window 64 --batch 64 --dpus "$DPUS" \
        --seconds "$UDP_SECONDS" --pid "$SERVER_PID" --quiet | grep '^result ') || true
    stop_server
    echo "$r result peer=footfall_udp events_per_s=$(echo "$line" | field accepted_eps)" \
        "lost_frames=$(echo "$line" | field lost_frames) ack_p99_us=$(echo "$line" | field ack_p99_us)" |
        tee -a "$LOG" >&2

    TOPO="$WORK/topo.json" COPY_CSV="$WORK/events.csv" COPY_EVENTS="$EVENTS" PRELOAD=0 \
        bash "$ROOT/bench/peers/postgres.sh" >"$WORK/pg.out" || say "postgres.sh failed"
    TOPO="$WORK/topo.json" COPY_CSV="$WORK/events.csv" PRELOAD="$PRELOAD" SKIP_COPY=1 \
        bash "$ROOT/bench/peers/postgres.sh" >>"$WORK/pg.out" || say "postgres.sh PRELOAD failed"
    CSV="$WORK/events.csv" EVENTS="$EVENTS" bash "$ROOT/bench/peers/influxdb.sh" >"$WORK/ix.out" ||
        say "influxdb.sh failed"
    grep -h '^result ' "$WORK/pg.out" "$WORK/ix.out" | sed "s/^/$r /" | tee -a "$LOG" >&2
done
say "end $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"

# the median over the rounds of key $2 in the lines of peer $1 (or of the raw lines)
med() {
    if [ "$1" = raw ]; then grep ' raw ' "$LOG"; else grep " peer=$1 " "$LOG"; fi |
        while read -r l; do echo "$l" | field "$2"; done | median
}
runs() { # the same, every round, separated by " / "
    if [ "$1" = raw ]; then grep ' raw ' "$LOG"; else grep " peer=$1 " "$LOG"; fi |
        while read -r l; do echo "$l" | field "$2"; done | paste -sd/ | sed 's|/| / |g'
}

IMP=$(med footfall_import events_per_s)
UDPR=$(med footfall_udp events_per_s)
echo
echo "== footfall vs peers, same run: $ROUNDS rounds (medians; each round in brackets), $EVENTS events" \
    "of $DPUS DPUs, --fsync $FSYNC, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-44s %14s   [%s]\n' "footfall import (rows/s)" "$IMP" "$(runs footfall_import events_per_s)"
printf '%-44s %14s   [%s]\n' "footfall UDP with acks (events/s)" "$UDPR" "$(runs footfall_udp events_per_s)"
for p in postgres_record_dpu_event postgres_record_dpu_event_preloaded postgres_copy influxdb; do
    printf '%-44s %14s   [%s]\n' "$p (events/s)" "$(med "$p" events_per_s)" "$(runs "$p" events_per_s)"
done
printf '%-44s %14s   [%s]\n' "raw recvmmsg (records/s)" "$(med raw udp_records_s)" "$(runs raw udp_records_s)"
printf '%-44s %14s   [%s]\n' "raw mmap append (records/s)" "$(med raw mmap_records_s)" "$(runs raw mmap_records_s)"
printf '%-44s %14s   [%s]\n' "raw mmap append + msync (records/s)" "$(med raw mmap_msync_records_s)" "$(runs raw mmap_msync_records_s)"
printf '%-44s %14s   [%s]\n' "raw 8 KiB fdatasync p50 (us)" "$(med raw fdatasync_8k_p50_us)" "$(runs raw fdatasync_8k_p50_us)"
ratio() { # $1 label, $2 footfall figure, $3 peer figure, $4 unit
    awk -v l="$1" -v a="$2" -v b="$3" -v u="${4:-x}" 'BEGIN {
        if (b > 0) { if (u == "%") printf "ratio %-52s %10.1f %%\n", l, 100 * a / b
                     else printf "ratio %-52s %10.1fx\n", l, a / b }
        else printf "ratio %-52s not measured\n", l }'
}
for p in postgres_record_dpu_event postgres_record_dpu_event_preloaded postgres_copy influxdb; do
    ratio "footfall import / $p" "$IMP" "$(med "$p" events_per_s)"
    ratio "footfall UDP / $p" "$UDPR" "$(med "$p" events_per_s)"
done
ratio "footfall UDP / raw recvmmsg records" "$UDPR" "$(med raw udp_records_s)" %
ratio "footfall import / raw mmap append" "$IMP" "$(med raw mmap_records_s)" %
ratio "footfall import / raw mmap append + msync" "$IMP" "$(med raw mmap_msync_records_s)" %
if [ "${KEEP:-0}" = 1 ]; then cp "$LOG" /tmp/ffcompare.results.txt; fi
