-- schema.sql -- the original project's tables and indexes (PEERS.md): every foreign key
-- indexed, the timestamp indexed, no index on status. Used by postgres.sh (which adds
-- record_dpu_event) and pg_bytes.sh.
CREATE TABLE space   (id serial PRIMARY KEY, name text UNIQUE NOT NULL);
CREATE TABLE doorway (id serial PRIMARY KEY, name text UNIQUE NOT NULL);
CREATE TABLE dpu (id serial PRIMARY KEY, dpu_id int UNIQUE NOT NULL,
    doorway_id int NULL REFERENCES doorway(id),
    entry_space_id int NULL REFERENCES space(id),
    exit_space_id int NULL REFERENCES space(id));
CREATE INDEX ON dpu(doorway_id); CREATE INDEX ON dpu(entry_space_id); CREATE INDEX ON dpu(exit_space_id);
CREATE TABLE dpuevent (id bigserial PRIMARY KEY, dpu_id int NOT NULL REFERENCES dpu(id),
    "timestamp" timestamptz NOT NULL, direction smallint NOT NULL);
CREATE INDEX ON dpuevent(dpu_id); CREATE INDEX ON dpuevent("timestamp");
CREATE TABLE spaceoccupancy (id bigserial PRIMARY KEY,
    space_id int NOT NULL REFERENCES space(id),
    dpu_event_id bigint NOT NULL REFERENCES dpuevent(id),
    status text NOT NULL CHECK (status IN ('PENDING','SETTLED')),
    occupancy int NOT NULL DEFAULT 0);
CREATE INDEX ON spaceoccupancy(space_id); CREATE INDEX ON spaceoccupancy(dpu_event_id);
