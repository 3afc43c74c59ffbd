#!/usr/bin/env bash
# pg_bytes.sh -- bytes on disk per settled occupancy row in the original project's
# PostgreSQL schema (PEERS.md; the same DDL as postgres.sh), for the site of bench/week.c:
# DPU 2k+1 over a door into space 2k+1, DPU 2k+2 between spaces 2k+1 and 2k+2, so an
# event has 1.5 spaceoccupancy rows on average.
#
# A lower bound for PostgreSQL: every row is inserted once, already SETTLED, then the
# tables are vacuumed -- the original inserts PENDING rows and updates each one at least
# twice (occupancy walk, status), leaving dead tuples until autovacuum. The events are
# inserted in time order (as they arrive), with every index in place.
#
# Env: EVENTS (1000000), DPUS (100000). Prints `result peer=postgres-bytes ...` on stdout.
set -euo pipefail
EVENTS=${EVENTS:-1000000}
DPUS=${DPUS:-100000}
DB=ff_bytes_$$
pg_ctlcluster 15 main start 2>/dev/null || true
psqlu() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "$@"; }
trap 'psqlu -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT
psqlu -d postgres -c "CREATE DATABASE $DB" >/dev/null
psqlu -d "$DB" <"$(dirname "$0")/schema.sql"
psqlu -d "$DB" <<SQL

INSERT INTO space (id, name) SELECT i, 'Site ' || (i - 1) / 2 || CASE WHEN i % 2 = 1 THEN ' A' ELSE ' B' END
    FROM generate_series(1, $DPUS) i;
INSERT INTO doorway (id, name) SELECT i, 'Door ' || i FROM generate_series(1, $DPUS) i;
INSERT INTO dpu (id, dpu_id, doorway_id, entry_space_id, exit_space_id)
    SELECT i, i, i, 2 * ((i - 1) / 2) + 1, CASE WHEN i % 2 = 0 THEN i END FROM generate_series(1, $DPUS) i;
-- events in time order over one day, random DPU and direction
INSERT INTO dpuevent (dpu_id, "timestamp", direction)
    SELECT 1 + floor(random() * $DPUS)::int,
           timestamptz '2026-01-05 00:00:00+00' + (g * 86400.0 / $EVENTS) * interval '1 second',
           CASE WHEN random() < 0.5 THEN 1 ELSE -1 END
    FROM generate_series(1, $EVENTS) g ORDER BY g;
-- one row per (event, space), settled, with a running occupancy
INSERT INTO spaceoccupancy (space_id, dpu_event_id, status, occupancy)
    SELECT space_id, id, 'SETTLED', sum(delta) OVER (PARTITION BY space_id ORDER BY "timestamp", id)
    FROM (SELECT e.id, e."timestamp", d.entry_space_id AS space_id, e.direction AS delta
            FROM dpuevent e JOIN dpu d ON d.id = e.dpu_id
          UNION ALL
          SELECT e.id, e."timestamp", d.exit_space_id, -e.direction
            FROM dpuevent e JOIN dpu d ON d.id = e.dpu_id WHERE d.exit_space_id IS NOT NULL) x
    ORDER BY "timestamp", id;
VACUUM ANALYZE dpuevent; VACUUM ANALYZE spaceoccupancy;
SQL
psqlu -d "$DB" -At <<'SQL'
SELECT 'result peer=postgres-bytes events=' || (SELECT count(*) FROM dpuevent)
    || ' rows=' || (SELECT count(*) FROM spaceoccupancy)
    || ' dpuevent_heap=' || pg_relation_size('dpuevent')
    || ' dpuevent_indexes=' || pg_indexes_size('dpuevent')
    || ' spaceoccupancy_heap=' || pg_relation_size('spaceoccupancy')
    || ' spaceoccupancy_indexes=' || pg_indexes_size('spaceoccupancy')
    || ' bytes_per_row=' || round((pg_total_relation_size('dpuevent') + pg_total_relation_size('spaceoccupancy'))::numeric
                                  / (SELECT count(*) FROM spaceoccupancy), 1)
    || ' occupancy_only_bytes_per_row=' || round(pg_total_relation_size('spaceoccupancy')::numeric
                                  / (SELECT count(*) FROM spaceoccupancy), 1);
SQL
