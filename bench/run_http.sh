#!/usr/bin/env bash
# run_http.sh -- HTTP query throughput and latency of footfalld (issue 4: count at T and
# current count, >= 50,000 requests/s with p99 < 1 ms over keep-alive), measured with wrk.
# Run by hand (not in CI); installs wrk with apt-get when it is missing.
#
# Builds Release into $BUILD, writes the ff_load topology of $DPUS DPUs ($DPUS / 2 spaces)
# and a CSV of $EVENTS events over the last day, starts one footfalld (temp data dir,
# loopback, --fsync always), imports the CSV, then $RUNS rounds of, in turn:
#   count_now: GET /v1/spaces/S/count         S random per request
#   count_at:  GET /v1/spaces/S/count?at=T    T random in the CSV's time span
# each for $SECONDS_RUN s, with wrk -t$THREADS -c$CONNS --latency (keep-alive). Prints
# every run and the medians: requests/s, latency p50/p75/p90/p99, and the server's CPU
# time per request (utime + stime of footfalld over the run / requests): the server-side
# cost, which the client's share of the two cores does not inflate.
#
# The client shares the machine's cores with the server (and with whatever else runs):
# wrk's own CPU is taken from footfalld's, and latency includes wrk's scheduling.
#
# Usage: bench/run_http.sh [--help]
# Env: BUILD (build-bench), RUNS (3), DPUS (100000), EVENTS (1000000), SECONDS_RUN (10),
#      THREADS (1), CONNS (8), PERF=1 (after the runs, one more count_at run under
#      `perf record -g` of footfalld, and its flat profile; needs perf: apt-get install
#      linux-perf), KEEP=1 keeps the temp dir.
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
RUNS=${RUNS:-3}
DPUS=${DPUS:-100000}
EVENTS=${EVENTS:-1000000}
SECONDS_RUN=${SECONDS_RUN:-10}
THREADS=${THREADS:-1}
CONNS=${CONNS:-8}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ff-http.XXXXXX")
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" || true; fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
say() { printf 'run_http.sh: %s\n' "$*" >&2; }
# shellcheck source=bench/wrk_lib.sh
. "$ROOT/bench/wrk_lib.sh"

command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >&2
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target footfalld footfall ff_load -j2 >/dev/null

say "start $(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/ff_load" --write-topology "$WORK/topo.json" --dpus "$DPUS" >&2
"$BUILD/ff_load" --write-csv "$WORK/events.csv" --events "$EVENTS" --dpus "$DPUS" >&2
SPACES=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['spaces']))" "$WORK/topo.json")
T0=$(date -d "$(sed -n 2p "$WORK/events.csv" | cut -d, -f1)" +%s)
T1=$(date -d "$(tail -n 1 "$WORK/events.csv" | cut -d, -f1)" +%s)

ff_start srv --data-dir "$WORK/data" --udp off --tcp 127.0.0.1:0 --http 127.0.0.1:0 \
    --topology "$WORK/topo.json" --fsync always --quiet || exit 1
"$BUILD/footfall" --tcp "$TCP" --http "$HTTP" import "$WORK/events.csv" --no-progress >&2
say "imported $EVENTS events, $SPACES spaces; RSS $(awk '/VmRSS/ {print $2, $3}' "/proc/$SERVER_PID/status")"
curl -sf "http://$HTTP/v1/spaces/1/count" >&2 && echo >&2

export FF_SPACES=$SPACES FF_T0=$T0 FF_T1=$T1
declare -A LINES
for r in $(seq "$RUNS"); do
    for kind in count_now count_at; do
        line=$(FF_KIND=$kind wrk_once "$SERVER_PID" "http://$HTTP" "$THREADS" "$CONNS" "$SECONDS_RUN")
        say "round $r $kind (load $(cut -d' ' -f1 /proc/loadavg)): $line"
        LINES[$kind]+="$line"$'\n'
    done
done

echo "== footfalld HTTP, $(date -u +%FT%TZ): median of $RUNS runs of wrk -t$THREADS -c$CONNS" \
    "-d${SECONDS_RUN}s --latency (keep-alive), $SPACES spaces, $EVENTS events, load $(cut -d' ' -f1-3 /proc/loadavg)"
for kind in count_now count_at; do
    m() { printf '%s' "${LINES[$kind]}" | while read -r l; do [ -n "$l" ] && echo "$l" | field "$1"; done | median; }
    all() { printf '%s' "${LINES[$kind]}" | while read -r l; do [ -n "$l" ] && echo "$l" | field "$1"; done | paste -sd/; }
    echo "result kind=$kind rps=$(m rps) p50_us=$(m p50_us) p75_us=$(m p75_us) p90_us=$(m p90_us)" \
        "p99_us=$(m p99_us) server_cpu_pct=$(m server_cpu_pct) server_cpu_us_per_req=$(m server_cpu_us_per_req)" \
        "non2xx=$(all non2xx) runs_rps=$(all rps) runs_p99_us=$(all p99_us)"
done

if [ "${PERF:-0}" = 1 ]; then
    command -v perf >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y linux-perf >&2
    perf record -F 999 -g -o "$WORK/perf.data" -p "$SERVER_PID" -- sleep "$SECONDS_RUN" >/dev/null 2>&1 &
    PERF_PID=$!
    FF_KIND=count_at wrk_once "$SERVER_PID" "http://$HTTP" "$THREADS" "$CONNS" "$SECONDS_RUN" >&2
    wait "$PERF_PID" || true
    echo "== perf: flat profile of footfalld during a count_at run (self time, top 25)"
    perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -25
fi
