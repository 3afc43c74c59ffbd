#!/usr/bin/env bash
# run_issue2.sh -- footfall's ingest figures and the machine's raw limits, in one run.
#
# Builds Release into $BUILD (default build-bench), writes a topology of $DPUS simulated
# DPUs (ff_load --write-topology) and a CSV of $CSV_EVENTS events, then $RUNS times:
#   (a) a fresh footfalld (own temp data dir, ephemeral ports, --fsync $FSYNC) and
#       `footfall import` of the CSV over TCP: rows/s as the client reports it, and
#       end to end (wall clock of the whole command);
#   (b) a fresh footfalld and an ff_load UDP blast with acks, 64 events per datagram,
#       as fast as the acks allow, for $UDP_SECONDS s: accepted events/s, ack latency,
#       loss, the server's RSS and CPU;
#   (c) raw_limits: loopback sendmmsg -> recvmmsg and mmap append in the same data disk.
# Every measurement gets a fresh server: ff_load's timestamps sweep the day before the
# run, which an earlier run's horizon would make late. Prints each run and the medians.
#
# Environment: BUILD, RUNS (3), DPUS (100000), CSV_EVENTS (1000000), UDP_SECONDS (12),
# WINDOW (64 frames in flight: deeper windows only queue behind the server's syncs),
# FSYNC (always), KEEP=1 keeps the temp dir.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
RUNS=${RUNS:-3}
DPUS=${DPUS:-100000}
CSV_EVENTS=${CSV_EVENTS:-1000000}
UDP_SECONDS=${UDP_SECONDS:-12}
WINDOW=${WINDOW:-64}
FSYNC=${FSYNC:-always}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ff-issue2.XXXXXX")
SERVER_PID=

cleanup() {
    if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

say() { printf '%s\n' "$*" >&2; }

# shellcheck source=bench/bench_lib.sh
. "$ROOT/bench/bench_lib.sh"

start_server() { # $1: a name for this run's data dir and logs
    ff_start "$1" --data-dir "$WORK/$1.data" --udp 127.0.0.1:0 --tcp 127.0.0.1:0 \
        --http 127.0.0.1:0 --topology "$WORK/topo.json" --fsync "$FSYNC" --quiet
}

stop_server() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || say "footfalld exited with status $?"
    SERVER_PID=
}

now() { date +%s.%N; }

say "== building Release in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target footfalld ff_load raw_limits -j2 >/dev/null
HAVE_IMPORT=0
if cmake --build "$BUILD" --target footfall -j2 >/dev/null 2>&1 &&
    "$BUILD/footfall" import --help >/dev/null 2>&1; then HAVE_IMPORT=1; fi

say "== machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
    "$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)," \
    "load $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/ff_load" --write-topology "$WORK/topo.json" --dpus "$DPUS" >&2
"$BUILD/ff_load" --write-csv "$WORK/events.csv" --events "$CSV_EVENTS" --dpus "$DPUS" >&2

IMPORT_RATES=() IMPORT_E2E=() UDP_LINES=() RAW_LINES=()
for run in $(seq "$RUNS"); do
    if [ "$HAVE_IMPORT" = 1 ]; then
        start_server "import$run"
        t0=$(now)
        "$BUILD/footfall" --tcp "$TCP" --http "$HTTP" import "$WORK/events.csv" --no-progress \
            >"$WORK/import$run.out" 2>&1 || say "footfall import exited with status $?"
        t1=$(now)
        rate=$(sed -n 's/^elapsed .*(\([0-9.]*\) rows\/s).*/\1/p' "$WORK/import$run.out")
        e2e=$(awk -v a="$t0" -v b="$t1" -v n="$CSV_EVENTS" 'BEGIN {printf "%.0f", n / (b - a)}')
        IMPORT_RATES+=("${rate:-0}") IMPORT_E2E+=("$e2e")
        say "run $run import: ${rate:-?} rows/s (client), $e2e rows/s end to end"
        sed 's/^/    /' "$WORK/import$run.out" >&2
        stop_server
    else
        say "run $run import: skipped (no \`footfall import\` in $BUILD)"
    fi

    start_server "udp$run"
    line=$("$BUILD/ff_load" --udp "$UDP" --ack --window "$WINDOW" --batch 64 --dpus "$DPUS" \
        --seconds "$UDP_SECONDS" --pid "$SERVER_PID" --quiet | grep '^result ')
    UDP_LINES+=("$line")
    say "run $run udp: $line"
    stop_server

    line=$("$BUILD/raw_limits" --dir "$WORK" --seconds 3 | grep '^raw ')
    RAW_LINES+=("$line")
    say "run $run raw: $line"
done

med_udp() { for l in "${UDP_LINES[@]}"; do echo "$l" | field "$1"; done | median; }
med_raw() { for l in "${RAW_LINES[@]}"; do echo "$l" | field "$1"; done | median; }

echo
echo "== footfall issue 2/4 figures: median of $RUNS runs, $DPUS DPUs, --fsync $FSYNC"
if [ "$HAVE_IMPORT" = 1 ]; then
    echo "import of $CSV_EVENTS CSV rows: $(printf '%s\n' "${IMPORT_RATES[@]}" | median) rows/s" \
        "(client), $(printf '%s\n' "${IMPORT_E2E[@]}" | median) rows/s end to end"
else
    echo "import: not measured (footfall import not built)"
fi
acc=$(med_udp accepted_eps)
echo "UDP with acks, 64 events/datagram, window $WINDOW: $acc events/s accepted;" \
    "ack p50 $(med_udp ack_p50_us) us, p99 $(med_udp ack_p99_us) us, p99.9 $(med_udp ack_p999_us) us;" \
    "lost frames $(med_udp lost_frames); server CPU $(med_udp server_cpu_pct)%," \
    "RSS $(med_udp server_rss_max_kib) KiB (peak VmHWM $(med_udp server_hwm_kib) KiB)"
rawrec=$(med_raw udp_records_s)
echo "raw loopback UDP: $(med_raw udp_dgram_s) datagrams/s = $rawrec records/s;" \
    "mmap append $(med_raw mmap_records_s) records/s ($(med_raw mmap_msync_records_s) with msync);" \
    "8 KiB fdatasync p50 $(med_raw fdatasync_8k_p50_us) us"
awk -v a="$acc" -v r="$rawrec" 'BEGIN {if (r > 0) printf "ratio: UDP accepted / raw recvmmsg records = %.1f%%\n", 100 * a / r}'
awk -v a="$acc" 'BEGIN {printf "ratio vs PEERS.md: %.0fx PostgreSQL record_dpu_event (150 ev/s), %.2fx InfluxDB (360000 ev/s)\n", a / 150, a / 360000}'
