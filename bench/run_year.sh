#!/usr/bin/env bash
# run_year.sh -- issue 4's "1-day / 15-minute counts query over a year of history under
# 1 ms server side". Run by hand (not in CI); installs wrk with apt-get when missing.
#
#   1. bench/query_time --build writes $DAYS days of history for $DPUS DPUs and $SPACES
#      spaces, $PER_DPU_DAY events per DPU and day, through the engine API with an
#      injected clock (so it settles, seals and merges as a live server would), into
#      $DATA (default: a temp dir under /work/tmp-bench or /tmp);
#   2. $RUNS runs of query_time on it: the engine's ff_engine_counts (96 buckets), count
#      at T and current count, and the same through the HTTP API's handler, in process,
#      each on a random space and day, wall clock and (counts) this thread's CPU time,
#      which the waits for a CPU on a shared machine do not inflate; p50/p99 per run,
#      then the medians;
#   3. footfalld --data-dir $DATA (time to ready), then $RUNS runs of wrk -t1 -c1 and
#      -t1 -c4 on GET /v1/spaces/S/counts?start=D&end=D+1d&interval=15m, S and D random
#      per request: requests/s, latency, server CPU per request (bench/wrk_lib.sh).
#
# Usage: bench/run_year.sh [--help]
# Env: BUILD (build-bench), DPUS (2000), SPACES (1000), DAYS (365), PER_DPU_DAY (100),
#      QUERIES (2000 per run), RUNS (3), SECONDS_RUN (10), DATA (reuse a built dir: no
#      build), KEEP=1 keeps the data dir.
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
DPUS=${DPUS:-2000}
SPACES=${SPACES:-1000}
DAYS=${DAYS:-365}
PER_DPU_DAY=${PER_DPU_DAY:-100}
QUERIES=${QUERIES:-2000}
RUNS=${RUNS:-3}
SECONDS_RUN=${SECONDS_RUN:-10}
TMPB=/work/tmp-bench
[ -d "$TMPB" ] || TMPB=${TMPDIR:-/tmp}
WORK=$(mktemp -d "$TMPB/ff-year.XXXXXX")
BUILT=0
if [ -z "${DATA:-}" ]; then DATA=$WORK/data; BUILT=1; fi
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" || true; fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK (data: $DATA)" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
say() { printf 'run_year.sh: %s\n' "$*" >&2; }
# shellcheck source=bench/wrk_lib.sh
. "$ROOT/bench/wrk_lib.sh"

command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >&2
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target footfalld query_time -j2 >/dev/null

say "start $(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$BUILT" = 1 ]; then
    "$BUILD/query_time" --data-dir "$DATA" --build --dpus "$DPUS" --spaces "$SPACES" \
        --days "$DAYS" --per-dpu-day "$PER_DPU_DAY" | tee "$WORK/build.out"
    say "built: $(du -sh "$DATA" | cut -f1) on disk, $(ls "$DATA/segments" | wc -l) segment files," \
        "load $(cut -d' ' -f1-3 /proc/loadavg)"
fi

QLINES=()
for r in $(seq "$RUNS"); do
    line=$("$BUILD/query_time" --data-dir "$DATA" --queries "$QUERIES" --seed "$r" | grep '^result ')
    QLINES+=("$line")
    say "in-process run $r (load $(cut -d' ' -f1 /proc/loadavg)): $line"
done
qmed() { for l in "${QLINES[@]}"; do echo "$l" | field "$1"; done | median; }
qall() { for l in "${QLINES[@]}"; do echo "$l" | field "$1"; done | paste -sd/; }
FIRST_DAY=$(echo "${QLINES[0]}" | field first_day_s)
NDAYS=$(echo "${QLINES[0]}" | field days)
NSPACES=$(echo "${QLINES[0]}" | field spaces)

t0=$(date +%s.%N)
ff_start srv --data-dir "$DATA" --udp off --tcp off --http 127.0.0.1:0 --quiet || exit 1
READY_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
say "footfalld ready in $READY_S s; RSS $(awk '/VmRSS/ {print $2, $3}' "/proc/$SERVER_PID/status")"
d=$(date -u -d "@$FIRST_DAY" +%FT%TZ)
d1=$(date -u -d "@$((FIRST_DAY + 86400))" +%FT%TZ)
curl -sf -o "$WORK/one.json" -w 'one counts query with curl: %{time_total} s total, %{size_download} bytes\n' \
    "http://$HTTP/v1/spaces/1/counts?start=$d&end=$d1&interval=15m" >&2

export FF_KIND=counts_day FF_SPACES=$NSPACES FF_FIRST_DAY=$FIRST_DAY FF_DAYS=$NDAYS
declare -A W
for r in $(seq "$RUNS"); do
    for c in 1 4; do
        line=$(wrk_once "$SERVER_PID" "http://$HTTP" 1 "$c" "$SECONDS_RUN")
        say "wrk round $r -c$c (load $(cut -d' ' -f1 /proc/loadavg)): $line"
        W[$c]+="$line"$'\n'
    done
done

echo "== 1-day / 15-minute counts over a year: $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$BUILT" = 1 ] && grep '^result ' "$WORK/build.out"
echo "history: $NSPACES spaces, $NDAYS whole days, $(du -sh "$DATA" | cut -f1) on disk; footfalld ready in $READY_S s"
echo "in process, median of $RUNS runs of $QUERIES queries each (p50 / p99 / max us; runs of p99 in brackets):"
for k in engine_counts_1d15m engine_counts_1d15m_cpu handler_counts_1d15m handler_counts_1d15m_cpu engine_count_at handler_count_at engine_count_now handler_count_now; do
    printf '  %-22s %10s %10s %10s   [%s]\n' "$k" "$(qmed "${k}_p50_us")" "$(qmed "${k}_p99_us")" \
        "$(qmed "${k}_max_us")" "$(qall "${k}_p99_us")"
done
echo "  open (recovery) of the data dir: $(qall open_s) s"
for c in 1 4; do
    m() { printf '%s' "${W[$c]}" | while read -r l; do [ -n "$l" ] && echo "$l" | field "$1"; done | median; }
    all() { printf '%s' "${W[$c]}" | while read -r l; do [ -n "$l" ] && echo "$l" | field "$1"; done | paste -sd/; }
    echo "result http_counts_1d15m conns=$c rps=$(m rps) p50_us=$(m p50_us) p90_us=$(m p90_us)" \
        "p99_us=$(m p99_us) server_cpu_us_per_req=$(m server_cpu_us_per_req) non2xx=$(all non2xx)" \
        "runs_p99_us=$(all p99_us)"
done
