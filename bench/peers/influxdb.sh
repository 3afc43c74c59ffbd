#!/usr/bin/env bash
# influxdb.sh -- InfluxDB 1.6 (Debian package `influxdb`) as the raw-points peer: the same
# generated events as line protocol over HTTP in batches of $BATCH, one client, points/s.
# influxd runs on loopback with its own temp config and data dir, and is stopped at the end.
# Env: BUILD (build-bench), DPUS (200), EVENTS (1000000), BATCH (5000), PORT (18086).
# Prints `result peer=influxdb ... events_per_s=...` on stdout.
# Usage: bench/peers/influxdb.sh [--help]
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-bench}
DPUS=${DPUS:-200}
EVENTS=${EVENTS:-1000000}
BATCH=${BATCH:-5000}
PORT=${PORT:-18086}
say() { echo "influxdb.sh: $*" >&2; }

if ! command -v influxd >/dev/null; then
    cand=$(apt-cache policy influxdb 2>/dev/null | sed -n 's/^ *Candidate: //p')
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
        say "Debian package influxdb is not installable here (candidate: ${cand:-none}); skipped"
        exit 0
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y influxdb >&2 ||
        { say "apt-get install influxdb failed; skipped"; exit 0; }
fi

WORK=$(mktemp -d /tmp/ffinflux.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

cat >"$WORK/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$((PORT + 2))"
[meta]
  dir = "$WORK/meta"
[data]
  dir = "$WORK/data"
  wal-dir = "$WORK/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:$PORT"
  auth-enabled = false
  log-enabled = false
  max-body-size = 0
[monitor]
  store-enabled = false
CONF
influxd -config "$WORK/influxdb.conf" >"$WORK/influxd.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/ping" >/dev/null && break; sleep 0.1; done
curl -sf -XPOST "http://127.0.0.1:$PORT/query" --data-urlencode "q=CREATE DATABASE ff" >/dev/null

[ -x "$BUILD/ff_load" ] || cmake --build "$BUILD" --target ff_load -j2 >/dev/null
if [ -n "${CSV:-}" ]; then cp "$CSV" "$WORK/events.csv"   # compare.sh's generated CSV
else "$BUILD/ff_load" --write-csv "$WORK/events.csv" --events "$EVENTS" --dpus "$DPUS" >&2; fi

python3 - "$WORK/events.csv" "$PORT" "$BATCH" <<'PY'
import sys, time, datetime, urllib.request
path, port, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# Convert the CSV to line protocol first (not timed): the peer's cost is the write path.
lines = []
with open(path) as f:
    next(f)
    for row in f:
        ts, d, dpu, seq = row.rstrip("\n").split(",")
        t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        ns = int(t.timestamp()) * 1000000000 + t.microsecond * 1000
        lines.append("dpuevent,dpu=%s direction=%si,seq=%si %d" % (dpu, d, seq, ns))
bodies = ["\n".join(lines[i:i + batch]).encode() for i in range(0, len(lines), batch)]
url = "http://127.0.0.1:%d/write?db=ff&precision=ns" % port
t0 = time.monotonic()
for b in bodies:
    r = urllib.request.urlopen(urllib.request.Request(url, data=b, method="POST"))
    if r.status != 204:
        sys.exit("write failed: %d" % r.status)
dt = time.monotonic() - t0
print("influxdb.sh: %d points in %d batches in %.2f s" % (len(lines), len(bodies), dt), file=sys.stderr)
print("result peer=influxdb events=%d batch=%d events_per_s=%.0f" % (len(lines), batch, len(lines) / dt))
PY
n=$(curl -sf -G "http://127.0.0.1:$PORT/query" --data-urlencode "db=ff" \
    --data-urlencode "q=SELECT count(direction) FROM dpuevent" | sed -n 's/.*\[\[[^,]*,\([0-9]*\)\]\].*/\1/p')
say "points stored: ${n:-?} of $EVENTS (same DPU and timestamp overwrite)"
