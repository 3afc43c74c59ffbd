#!/usr/bin/env bash
# postgres.sh -- the original project's per-event algorithm (PEERS.md) on PostgreSQL 15,
# fed footfall's generated events one call per event, then PostgreSQL's best case: a
# plain COPY of the raw CSV into dpuevent with no occupancy work.
#
# With PRELOAD=N (PEERS.md: "17-32 events/s once 180,000 events are stored") the first N
# events of the CSV are bulk-loaded first, as if record_dpu_event had stored them: the
# dpuevent rows, and one spaceoccupancy row per event and space with its running
# occupancy, SETTLED except those within 300 s of the newest (PENDING). The timed calls
# then take the events that follow them in the CSV.
#
# Env: BUILD (build-bench), DPUS (200), SECONDS_RUN (20), CALL_EVENTS (20000, upper bound
# of the per-call run), COPY_EVENTS (1000000), PRELOAD (0), SKIP_COPY (0: 1 skips the
# COPY run), WORK (temp dir), KEEP_CLUSTER (1).
# Prints `result peer=... events_per_s=...` lines on stdout: peer=postgres_record_dpu_event
# (PRELOAD=0) or postgres_record_dpu_event_preloaded (PRELOAD>0), and postgres_copy.
# Usage: bench/peers/postgres.sh [--help]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-bench}
DPUS=${DPUS:-200}
SECONDS_RUN=${SECONDS_RUN:-20}
CALL_EVENTS=${CALL_EVENTS:-20000}
COPY_EVENTS=${COPY_EVENTS:-1000000}
PRELOAD=${PRELOAD:-0}
SKIP_COPY=${SKIP_COPY:-0}
case "${1:-}" in -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
DB=ff_peer_$$
WORK=${WORK:-$(mktemp -d /tmp/ffpeer.XXXXXX)}
chmod 755 "$WORK"
say() { echo "postgres.sh: $*" >&2; }

if ! command -v pg_ctlcluster >/dev/null; then
    apt-get install -y postgresql >&2
fi
pg_ctlcluster 15 main start 2>/dev/null || true
psqlu() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "$@"; }   # unix socket

[ -x "$BUILD/ff_load" ] || cmake --build "$BUILD" --target ff_load -j2 >/dev/null
# TOPO and COPY_CSV (set by compare.sh) reuse the caller's generated files
if [ -n "${TOPO:-}" ]; then cp "$TOPO" "$WORK/topo.json"
else "$BUILD/ff_load" --write-topology "$WORK/topo.json" --dpus "$DPUS" >&2; fi
if [ -n "${COPY_CSV:-}" ]; then
    cp "$COPY_CSV" "$WORK/copy.csv"
else
    "$BUILD/ff_load" --write-csv "$WORK/copy.csv" --events "$((COPY_EVENTS > PRELOAD + CALL_EVENTS ? COPY_EVENTS : PRELOAD + CALL_EVENTS))" --dpus "$DPUS" >&2
fi
# the header, then rows PRELOAD+1 .. PRELOAD+CALL_EVENTS; the first PRELOAD rows apart
awk -v a="$PRELOAD" -v n="$CALL_EVENTS" 'NR == 1 || (NR > a + 1 && NR <= a + 1 + n)' \
    "$WORK/copy.csv" >"$WORK/call.csv"
head -n $((PRELOAD + 1)) "$WORK/copy.csv" >"$WORK/preload.csv"
chmod 644 "$WORK"/*

cleanup() { psqlu -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
            [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT

psqlu -d postgres -c "CREATE DATABASE $DB" >/dev/null

# --- schema (PEERS.md): every FK indexed, timestamp indexed, no index on status -------
cp "$(dirname "$0")/schema.sql" "$WORK/schema.sql"
cat >>"$WORK/schema.sql" <<'SQL'

-- The 5 steps of PEERS.md, in the caller's transaction (one call = one transaction).
CREATE FUNCTION record_dpu_event(p_dpu int, p_ts timestamptz, p_dir smallint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    d dpu%ROWTYPE;
    ev bigint;
    sp int;
    occ int;
    r record;
BEGIN
    -- 1. the DPU with its entry and exit space
    SELECT * INTO d FROM dpu WHERE dpu_id = p_dpu;
    IF NOT FOUND THEN RAISE EXCEPTION 'unknown dpu %', p_dpu; END IF;
    -- 2. the event row
    INSERT INTO dpuevent (dpu_id, "timestamp", direction) VALUES (d.id, p_ts, p_dir)
        RETURNING id INTO ev;
    -- 3. PENDING rows for the entry and the exit space
    IF d.entry_space_id IS NOT NULL THEN
        INSERT INTO spaceoccupancy (space_id, dpu_event_id, status) VALUES (d.entry_space_id, ev, 'PENDING');
    END IF;
    IF d.exit_space_id IS NOT NULL THEN
        INSERT INTO spaceoccupancy (space_id, dpu_event_id, status) VALUES (d.exit_space_id, ev, 'PENDING');
    END IF;
    -- 4. settle every PENDING row (any space) older than ts - 300 s: a rescan
    UPDATE spaceoccupancy so SET status = 'SETTLED'
      FROM dpuevent e
     WHERE so.dpu_event_id = e.id AND so.status = 'PENDING'
       AND e."timestamp" < p_ts - interval '300 seconds';
    -- 5. per space: latest SETTLED occupancy, then walk PENDING rows in ts order
    FOREACH sp IN ARRAY ARRAY[d.entry_space_id, d.exit_space_id] LOOP
        CONTINUE WHEN sp IS NULL;
        SELECT so.occupancy INTO occ FROM spaceoccupancy so JOIN dpuevent e ON e.id = so.dpu_event_id
         WHERE so.space_id = sp AND so.status = 'SETTLED'
         ORDER BY e."timestamp" DESC LIMIT 1;
        occ := COALESCE(occ, 0);
        FOR r IN SELECT so.id, e.direction, x.entry_space_id, x.exit_space_id
                   FROM spaceoccupancy so JOIN dpuevent e ON e.id = so.dpu_event_id
                   JOIN dpu x ON x.id = e.dpu_id
                  WHERE so.space_id = sp AND so.status = 'PENDING'
                  ORDER BY e."timestamp" LOOP
            IF r.exit_space_id IS NOT DISTINCT FROM sp AND r.entry_space_id IS DISTINCT FROM sp THEN
                occ := occ - r.direction;
            ELSE
                occ := occ + r.direction;
            END IF;
            UPDATE spaceoccupancy SET occupancy = occ WHERE id = r.id;
        END LOOP;
    END LOOP;
    RETURN ev;
END $$;
SQL
psqlu -d "$DB" -f "$WORK/schema.sql" >/dev/null

# --- topology from the generator's JSON -----------------------------------------------
python3 - "$WORK/topo.json" >"$WORK/topo.sql" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
n = lambda v: "NULL" if v is None else str(int(v))
for s in t["spaces"]:   print("INSERT INTO space VALUES (%d, '%s');" % (s["id"], s["name"]))
for d in t["doorways"]: print("INSERT INTO doorway VALUES (%d, '%s');" % (d["id"], d["name"]))
for d in t["dpus"]:
    print("INSERT INTO dpu (id, dpu_id, doorway_id, entry_space_id, exit_space_id) VALUES (%d, %d, %s, %s, %s);"
          % (d["id"], d["id"], n(d.get("doorway_id")), n(d.get("entry_space_id")), n(d.get("exit_space_id"))))
PY
psqlu -d "$DB" -f "$WORK/topo.sql" >/dev/null

# --- PRELOAD: the state record_dpu_event would have left after the first N events -----
if [ "$PRELOAD" -gt 0 ]; then
    t0=$(date +%s.%N)
    psqlu -d "$DB" -c "\\copy dpuevent (\"timestamp\", direction, dpu_id) FROM PROGRAM 'cut -d, -f1-3 $WORK/preload.csv' WITH (FORMAT csv, HEADER true)" >/dev/null
    psqlu -d "$DB" >/dev/null <<'SQL'
WITH x AS (
    SELECT e.id, e."timestamp" AS ts, d.entry_space_id AS sp, e.direction AS delta
      FROM dpuevent e JOIN dpu d ON d.id = e.dpu_id WHERE d.entry_space_id IS NOT NULL
    UNION ALL
    SELECT e.id, e."timestamp", d.exit_space_id, -e.direction
      FROM dpuevent e JOIN dpu d ON d.id = e.dpu_id WHERE d.exit_space_id IS NOT NULL),
newest AS (SELECT max("timestamp") AS m FROM dpuevent)
INSERT INTO spaceoccupancy (space_id, dpu_event_id, status, occupancy)
SELECT x.sp, x.id,
       CASE WHEN x.ts < newest.m - interval '300 seconds' THEN 'SETTLED' ELSE 'PENDING' END,
       sum(x.delta) OVER (PARTITION BY x.sp ORDER BY x.ts, x.id)
  FROM x, newest ORDER BY x.id;
ANALYZE;
SQL
    say "preloaded $PRELOAD events ($(psqlu -d "$DB" -Atc "SELECT count(*) FROM spaceoccupancy") spaceoccupancy rows, $(psqlu -d "$DB" -Atc "SELECT count(*) FROM spaceoccupancy WHERE status = 'PENDING'") PENDING) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
fi

# --- 1. record_dpu_event, one call (= one transaction) per event, for SECONDS_RUN -----
awk -F, 'NR > 1 { printf "SELECT record_dpu_event(%d, %c%s%c, %d::smallint);\n", $3, 39, $1, 39, $2 }' \
    "$WORK/call.csv" >"$WORK/calls.sql"
# loopback TCP if the cluster lets postgres in without a password, else the unix socket
HOSTOPT="-h 127.0.0.1"
runuser -u postgres -- psql -X -h 127.0.0.1 -w -d "$DB" -Atc "SELECT 1" >/dev/null 2>&1 || HOSTOPT=""
say "record_dpu_event: up to $CALL_EVENTS calls, psql ${HOSTOPT:-(unix socket)}, at most ${SECONDS_RUN}s"
# the count is read at the deadline by another session (committed calls only): a psql
# stopped by a signal finishes its current call first, which took up to 2 s here
t0=$(date +%s.%N)
runuser -u postgres -- psql -X -q $HOSTOPT -d "$DB" -f "$WORK/calls.sql" >/dev/null 2>&1 &
CALLS_PID=$!
end=$(awk -v a="$t0" -v s="$SECONDS_RUN" 'BEGIN { printf "%.3f", a + s }')
while kill -0 "$CALLS_PID" 2>/dev/null &&
    awk -v e="$end" -v n="$(date +%s.%N)" 'BEGIN { exit !(n < e) }'; do sleep 0.05; done
n=$(($(psqlu -d "$DB" -Atc "SELECT count(*) FROM dpuevent") - PRELOAD))
t1=$(date +%s.%N)
kill "$CALLS_PID" 2>/dev/null || true
wait "$CALLS_PID" 2>/dev/null || true
rate=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
say "record_dpu_event: $n events in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s after $PRELOAD stored"
peer=postgres_record_dpu_event
[ "$PRELOAD" -gt 0 ] && peer=postgres_record_dpu_event_preloaded
echo "result peer=$peer events=$n events_per_s=$rate dpus=$DPUS preload=$PRELOAD"
if [ "$SKIP_COPY" = 1 ]; then
    [ "${KEEP_CLUSTER:-1}" = 1 ] || pg_ctlcluster 15 main stop
    exit 0
fi

# --- 2. plain COPY of the raw CSV into dpuevent (dpu.id = dpu_id here) -----------------
psqlu -d "$DB" -c "TRUNCATE spaceoccupancy, dpuevent" >/dev/null
t0=$(date +%s.%N)
psqlu -d "$DB" -c "\\copy dpuevent (\"timestamp\", direction, dpu_id) FROM PROGRAM 'cut -d, -f1-3 $WORK/copy.csv' WITH (FORMAT csv, HEADER true)" >/dev/null
t1=$(date +%s.%N)
n=$(psqlu -d "$DB" -Atc "SELECT count(*) FROM dpuevent")
rate=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
say "COPY: $n rows in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s"
echo "result peer=postgres_copy events=$n events_per_s=$rate"
[ "${KEEP_CLUSTER:-1}" = 1 ] || pg_ctlcluster 15 main stop
