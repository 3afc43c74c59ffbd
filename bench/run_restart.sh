#!/usr/bin/env bash
# run_restart.sh -- issue 4's "restart after 100 million events: answering queries within
# 2 s". Run by hand (not in CI).
#
#   1. A fresh footfalld (data dir under /work/tmp-bench or /tmp, --fsync $FSYNC, the
#      ff_load topology of $DPUS DPUs) takes $EVENTS events from ff_load over UDP with
#      acks (64 events per datagram, window $WINDOW, as fast as it goes; the timestamps
#      sweep the day before the run, so most of it settles and is sealed).
#   2. The expected answers are read: the current count of spaces 1..$PROBE_SPACES and
#      the count of space 1 at a settled time T.
#   3. $RUNS times each, alternately: stop it with SIGTERM (clean) or SIGKILL (kill -9),
#      then start footfalld again on the same dir and poll every 2 ms until /healthz is
#      200 and every probed count equals what it was: the time from exec to that first
#      correct answer (and to the ready line, and the stop time for SIGTERM).
# Prints every run and the medians.
#
# Usage: bench/run_restart.sh [--help]
# Env: BUILD (build-bench), EVENTS (100000000), DPUS (100000), WINDOW (256), FSYNC (always),
#      RUNS (3), PROBE_SPACES (20), PORT (18480: the HTTP port, fixed so the probe can poll
#      before the ready line), DATA (reuse a data dir: skips step 1), KEEP=1 keeps it.
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
EVENTS=${EVENTS:-100000000}
DPUS=${DPUS:-100000}
WINDOW=${WINDOW:-256}
FSYNC=${FSYNC:-always}
RUNS=${RUNS:-3}
PROBE_SPACES=${PROBE_SPACES:-20}
PORT=${PORT:-18480}
TMPB=/work/tmp-bench
[ -d "$TMPB" ] || TMPB=${TMPDIR:-/tmp}
WORK=$(mktemp -d "$TMPB/ff-restart.XXXXXX")
FILL=0
if [ -z "${DATA:-}" ]; then DATA=$WORK/data; FILL=1; fi
SERVER_PID=
cleanup() { # the restarted servers are not this shell's children: wait for the pid to go
    if [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null; then
        for _ in $(seq 600); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK (data: $DATA)" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
say() { printf 'run_restart.sh: %s\n' "$*" >&2; }
# shellcheck source=bench/bench_lib.sh
. "$ROOT/bench/bench_lib.sh"

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target footfalld ff_load -j2 >/dev/null
ARGS=(--data-dir "$DATA" --udp 127.0.0.1:0 --tcp 127.0.0.1:0 --http "127.0.0.1:$PORT" --fsync "$FSYNC" --quiet)

say "start $(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$FILL" = 1 ]; then
    "$BUILD/ff_load" --write-topology "$WORK/topo.json" --dpus "$DPUS" >&2
    ff_start fill "${ARGS[@]}" --topology "$WORK/topo.json" || exit 1
    t0=$(date +%s)
    "$BUILD/ff_load" --udp "$UDP" --ack --window "$WINDOW" --batch 64 --dpus "$DPUS" \
        --events "$EVENTS" --pid "$SERVER_PID" --quiet | tee "$WORK/fill.out" | grep '^result ' >&2 || true
    say "filled in $(($(date +%s) - t0)) s; $(curl -sf "http://127.0.0.1:$PORT/healthz")"
else
    ff_start srv "${ARGS[@]}" || exit 1
fi
curl -sf "http://127.0.0.1:$PORT/metrics" | grep -E '^footfall_(events_accepted_total|log_bytes|segments)' >&2 || true
say "data dir: $(du -sh "$DATA" | cut -f1), $(ls "$DATA/segments" 2>/dev/null | wc -l) segment files"

# The probe: python, so that polling every 2 ms does not fork a curl per poll.
cat >"$WORK/probe.py" <<'PY'
"""probe.py MODE PORT NSPACES -- stop the running footfalld (pid in argv[4]) with MODE
(term|kill), start it again with the argv after '--', and time the first correct answer."""
import json, os, signal, subprocess, sys, time, urllib.request
mode, port, nsp, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cmd = sys.argv[sys.argv.index("--") + 1:]
base = "http://127.0.0.1:%d" % port
def get(path, timeout=1.0):
    with urllib.request.urlopen(base + path, timeout=timeout) as r:
        return r.status, r.read()
def answers():
    out = {}
    for s in range(1, nsp + 1):
        out[s] = json.loads(get("/v1/spaces/%d/count" % s)[1])["occupancy"]
    return out
expected = answers()
at = json.loads(get("/healthz")[1])["horizon"]
exp_at = json.loads(get("/v1/spaces/1/count?at=" + at)[1])["occupancy"]
t = time.monotonic()
os.kill(pid, signal.SIGTERM if mode == "term" else signal.SIGKILL)
while True:  # the old process is not our child: wait for its port to close
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.001)
stop_s = time.monotonic() - t
t0 = time.monotonic()
log = open(os.environ.get("PROBE_LOG", "/dev/null"), "a")
p = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
health_s = correct_s = None
polls = 0
while correct_s is None:
    if p.poll() is not None:
        sys.exit("footfalld exited with %d" % p.returncode)
    polls += 1
    try:
        st, _ = get("/healthz", timeout=0.5)
        if health_s is None and st == 200:
            health_s = time.monotonic() - t0
        if answers() == expected and \
           json.loads(get("/v1/spaces/1/count?at=" + at)[1])["occupancy"] == exp_at:
            correct_s = time.monotonic() - t0
    except Exception:
        time.sleep(0.002)
print("result mode=%s stop_s=%.3f healthz_s=%.3f first_correct_s=%.3f polls=%d new_pid=%d" %
      (mode, stop_s if mode == "term" else 0, health_s, correct_s, polls, p.pid))
sys.stdout.flush()
os._exit(0)  # leave the new server running; the caller owns it now
PY

LINES=()
for r in $(seq "$RUNS"); do
    for mode in term kill; do
        line=$(PROBE_LOG="$WORK/restart.log" python3 "$WORK/probe.py" "$mode" "$PORT" "$PROBE_SPACES" "$SERVER_PID" -- \
            "$BUILD/footfalld" "${ARGS[@]}" | grep '^result ')
        SERVER_PID=$(echo "$line" | field new_pid)
        LINES+=("$line")
        say "run $r (load $(cut -d' ' -f1 /proc/loadavg)): $line"
    done
done

echo "== restart after $EVENTS events ($(du -sh "$DATA" | cut -f1) data dir), $(date -u +%FT%TZ)," \
    "load $(cut -d' ' -f1-3 /proc/loadavg): median of $RUNS runs (each run in brackets)"
if [ "$FILL" = 1 ]; then
    f=$(grep '^result ' "$WORK/fill.out" || true)
    echo "fill: $(echo "$f" | field accepted) events accepted at $(echo "$f" | field accepted_eps)/s," \
        "lost frames $(echo "$f" | field lost_frames), server RSS at the end $(echo "$f" | field server_rss_kib) KiB," \
        "max sampled $(echo "$f" | field server_rss_max_kib) KiB, VmHWM $(echo "$f" | field server_hwm_kib) KiB ($DPUS DPUs)"
fi
for mode in term kill; do
    m() { for l in "${LINES[@]}"; do echo "$l" | grep -q "mode=$mode " && echo "$l" | field "$1"; done | median; }
    all() { for l in "${LINES[@]}"; do echo "$l" | grep -q "mode=$mode " && echo "$l" | field "$1"; done | paste -sd/; }
    echo "result restart mode=$mode first_correct_s=$(m first_correct_s) healthz_s=$(m healthz_s)" \
        "stop_s=$(m stop_s) runs_first_correct_s=$(all first_correct_s)"
done
