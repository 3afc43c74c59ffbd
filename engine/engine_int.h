/*
 * engine_int.h -- the engine's state, shared by engine.c (open, ingest, tick, replay),
 * topology.c (spaces, doorways, DPU versions, topology log records) and query.c
 * (answers, statistics, invariants). Nothing outside engine/ includes it.
 *
 * Slots. Spaces, doorways and DPUs live in growable arrays of slots; an id map turns an
 * id into its slot index. Slot indexes never change while the slot is live. DPUs are
 * never deleted. A deleted space or doorway leaves a dead slot that a later creation
 * reuses; a space can only be deleted when no assignment version refers to it, so no
 * stored slot index ever points at a dead or reused slot.
 *
 * DPU versions. A DPU's versions sit in one block: cap ff_assignment (the public view,
 * sorted by effective_from) followed by cap pairs of space slot indexes (entry, exit;
 * FF__NOIX for none), cap being nv rounded up to a power of two.
 *
 * Orphans. Events of a DPU whose version in force has no space (or that precede its
 * first version) are kept in the DPU's orphan rows (delta 0), searched like a space.
 */
#ifndef FF_ENGINE_INT_H
#define FF_ENGINE_INT_H

#include "engine/engine.h"
#include "engine/idmap.h"
#include "engine/rows.h"

typedef struct ff__space {
    ff_space_def def;
    bool live;
    uint32_t refs; /* assignment versions naming it as entry or exit */
    uint64_t revision;
    ff__rows rows;
} ff__space;

typedef struct ff__doorway {
    ff_doorway_def def;
    bool live;
    uint32_t refs;
} ff__doorway;

typedef struct ff__dpu {
    uint32_t id;
    uint32_t nv;        /* versions, >= 1 */
    unsigned char *blk; /* versions block, see above */
    ff__rows *orphans;  /* NULL until the first orphan */
} ff__dpu;

struct ff_engine {
    ff_engine_opts o;
    ff_log *log; /* NULL without data_dir */

    ff__space *spaces;
    size_t nspaces, capspaces; /* slots, live or dead */
    size_t live_spaces;
    ff__idmap space_ix;
    ff__namemap space_names;

    ff__doorway *doorways;
    size_t ndoorways, capdoorways;
    size_t live_doorways;
    ff__idmap doorway_ix;
    ff__namemap doorway_names;

    ff__dpu *dpus;
    size_t ndpus, capdpus;
    ff__idmap dpu_ix;

    int64_t h;           /* horizon; FF_TS_MIN before any event */
    int64_t max_ts;      /* FF_TS_MIN before any event */
    int64_t last_accept; /* wall clock of the last accepted event */
    size_t settle_cursor;
    bool replaying;

    uint64_t outcomes[FF_OUT__COUNT];
    uint64_t events_replayed, topo_replayed;

    ff__row *scratch; /* re-attribution */
    size_t nscratch, capscratch;
};

/* The versions of a DPU. */
static inline size_t ff__vcap(uint32_t nv)
{
    size_t c = 1;
    while (c < nv) c *= 2;
    return c;
}
static inline ff_assignment *ff__dpu_versions(const ff__dpu *d)
{
    return (ff_assignment *)d->blk;
}
/* The (entry, exit) space slots of version i. */
static inline uint32_t *ff__dpu_slots(const ff__dpu *d, uint32_t i)
{
    return (uint32_t *)(d->blk + ff__vcap(d->nv) * sizeof(ff_assignment)) + 2 * i;
}

/* qsort comparison of uint64_t. */
static inline int ff__cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The index of the version in force at ts (latest effective_from <= ts), or -1. */
int ff__dpu_version_at(const ff__dpu *d, int64_t ts);

/* Slot of an id, or NULL. */
ff__space *ff__space_find(const ff_engine *e, uint32_t id);
ff__dpu *ff__dpu_find(const ff_engine *e, uint32_t id);

/* The wall clock through opts.clock. */
int64_t ff__now(const ff_engine *e);
/* Adds an accepted event (flags in ev->reserved) to the rows; no checks, no logging.
 * Used by ingest and by replay. */
void ff__apply_event(ff_engine *e, ff__dpu *d, const ff_event *ev);
/* Decodes and applies one FF_LOG_TOPO payload (replay). FF_ECORRUPT if malformed. */
int ff__topo_replay(ff_engine *e, const void *payload, uint32_t len);
/* Fills the public view of a space. */
void ff__space_info(const ff_engine *e, const ff__space *s, ff_space_info *out);
/* Frees every topology structure. */
void ff__topo_free(ff_engine *e);
/* Topology invariants (numbered in topology.c). */
void ff__topo_check(const ff_engine *e);

#endif /* FF_ENGINE_INT_H */
