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
 * FF__NOIX for none), cap being nv rounded up to a power of two. The latest version's
 * effective_from and slots are also kept in the ff__dpu itself (new versions are only
 * ever appended): an event at or after it -- nearly all of them -- is attributed
 * without reading the block, one dependent cache miss less per event at 100,000 DPUs.
 *
 * Orphans. Events of a DPU whose version in force has no space (or that precede its
 * first version) are kept in the DPU's orphan rows (delta 0), searched like a space.
 */
#ifndef FF_ENGINE_INT_H
#define FF_ENGINE_INT_H

#include "engine/engine.h"
#include "engine/idmap.h"
#include "engine/rows.h"
#include "storage/segment.h"

#include <time.h>

/* One live segment: the sealed rows of every space with ts in [start, end]. */
typedef struct ff__segref {
    ff_seg *seg;
    uint32_t id; /* stable while the window lives; ascending with the windows */
    int64_t start, end;
    uint32_t version;
    bool in_ck;    /* named by the checkpoint on disk */
    bool archived; /* archived (engine/archive.c): seg is its stub, or its archive copy */
} ff__segref;

/* Log coverage (engine/checkpoint.c): the latest event time in the event records with
 * LSN in [from, next chunk's from). */
typedef struct ff__lchunk {
    uint64_t from;
    int64_t max_ts;
} ff__lchunk;

/* Ingest reads a space's rows struct and little else: it comes first, and the slots
 * are cache-line aligned (topology.c allocates them so), so that the fields an append
 * reads (rows.h) share one cache line. After the 101-byte name, as it was, the rows
 * struct straddled two lines, and a space cost two misses per event (bench/ingest). */
typedef struct ff__space {
    _Alignas(64) ff__rows rows; /* rows after the sealed ones (ts > sealed_upto) */
    ff_space_def def;
    bool live;
    uint32_t refs; /* assignment versions naming it as entry or exit */
    uint64_t revision;
    uint64_t sealed_rows;   /* rows of the space in segments (engine/seal.c) */
    int64_t sealed_last_ts; /* the latest of them; after it the occupancy is rows.base */
} ff__space;

typedef struct ff__doorway {
    ff_doorway_def def;
    bool live;
    uint32_t refs;
} ff__doorway;

typedef struct ff__dpu {
    int64_t last_from;   /* effective_from of version nv - 1 (first: ingest reads these) */
    uint32_t last_sl[2]; /* its (entry, exit) space slots, as in the block */
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
    size_t orphan_dpus; /* DPUs with an orphan list */

    int64_t h;           /* horizon; FF_TS_MIN before any event */
    int64_t max_ts;      /* FF_TS_MIN before any event */
    int64_t last_accept; /* wall clock of the last accepted event */
    size_t settle_cursor;
    bool replaying;

    uint64_t outcomes[FF_OUT__COUNT];
    uint64_t events_replayed, topo_replayed, events_skipped;

    ff__row *scratch; /* re-attribution */
    size_t nscratch, capscratch;

    /* sealing (engine/seal.c); nothing is sealed without a data_dir */
    char *seg_dir;    /* <data_dir>/segments */
    ff__segref *segs; /* by start; windows are disjoint and ascending */
    size_t nsegs, capsegs;
    int64_t sealed_upto;         /* every row with ts <= this is in a segment; FF_TS_MIN */
    uint64_t settled_since_seal; /* rows settled since the last seal */
    int64_t last_seal;           /* wall clock of the last seal (or of open) */
    uint64_t segments_sealed, segments_rewritten, segments_merged;
    uint64_t ck_lsn;     /* log position the checkpoint covers (engine/checkpoint.c) */
    bool amend_pending;  /* segments were rewritten since the last checkpoint */
    bool commit_failed;  /* a commit job failed: the next is tried after a tick */
    bool committed_last; /* the last job begun was a commit (ff_engine_seal_begin) */
    uint32_t next_seg_id;
    bool merge_scan;     /* a seal or merge happened: look for segments to merge */
    ff__segref *garbage; /* replaced versions the checkpoint still names (seg NULL) */
    size_t ngarbage, capgarbage;

    /* the seal or merge job in flight (engine/seal.c), NULL if none; why the last one
     * failed (ff_engine_seal_error) */
    ff_seal_job *job;
    char job_err[FF_SEG_ERRLEN];
    int64_t seal_to;     /* a seal job's window end; FF_TS_MIN for a merge */
    bool seal_dirty;     /* an event at or before seal_to was applied since begin */
    bool seal_sync_next; /* a seal job was discarded: the next seal runs in the tick */
    uint64_t seal_jobs_discarded;
    ff_seg **deferred; /* segments to close when the merge job ends (close_seg) */
    size_t ndeferred, capdeferred;
    uint32_t *by_id; /* live space slots in ascending id order (slots_by_id) */
    size_t nby_id;
    uint64_t by_id_gen; /* topo_gen + 1 when by_id was built; 0 never */

    /* archived segments (engine/archive.c) */
    int64_t archived_upto;         /* the latest end of an archived segment; FF_TS_MIN none */
    int64_t stub_upto;             /* the same over those read from their stub only */
    uint32_t segments_archived;    /* live segments that are archived */
    int64_t last_arc_scan;         /* wall clock of the last look for new stubs */
    struct timespec arc_dir_mtime; /* the segment directory's mtime at that look */
    int64_t arc_replay_ts;         /* replay met an event in a stub's window (open fails) */

    /* log release (engine/checkpoint.c) */
    ff__lchunk *lch; /* by from; chunks of the log not released yet */
    size_t nlch, caplch;
    uint64_t topo_gen;           /* topology changes applied (engine/topology.c) */
    uint64_t topo_snap;          /* the topology snapshot the checkpoint names; 0 none */
    uint64_t topo_snap_gen;      /* topo_gen when that snapshot was taken */
    uint64_t topo_snap_hi;       /* highest snapshot number a rename was tried with */
    uint64_t topo_spare;         /* a snapshot written whole by a commit that failed; 0 none */
    uint64_t topo_spare_gen;     /* topo_gen when it was taken */
    uint64_t log_released;       /* log files released */
    const ff_log_recovery *lrep; /* during replay: what the log found so far */
    bool log_gap;                /* replay stopped: the log starts after the checkpoint */
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

/* The (entry, exit) space slots of the version in force at ts, or NULL if none is. The
 * latest version's come from the ff__dpu itself, so the common case reads no block. */
static inline const uint32_t *ff__dpu_slots_at(const ff__dpu *d, int64_t ts)
{
    if (FF_LIKELY(ts >= d->last_from)) return d->last_sl;
    int vi = ff__dpu_version_at(d, ts);
    return vi >= 0 ? ff__dpu_slots(d, (uint32_t)vi) : NULL;
}

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
/* Calls cb with one FF_LOG_TOPO payload per live space, doorway and DPU version, in an
 * order that ff__topo_replay() accepts on an empty engine (checkpoints). */
typedef int (*ff__topo_op_cb)(void *ctx, const void *payload, uint32_t len);
int ff__topo_dump(const ff_engine *e, ff__topo_op_cb cb, void *ctx);
/* Fills the public view of a space. */
void ff__space_info(const ff_engine *e, const ff__space *s, ff_space_info *out);
/* Frees every topology structure. */
void ff__topo_free(ff_engine *e);
/* Topology invariants (numbered in topology.c). */
void ff__topo_check(const ff_engine *e);

/* ---- seal.c: segments and the reads that span them ---- */

/* Prepares <data_dir>/segments at open, before replay: loads the checkpoint, opens the
 * segments it names, removes the others. Errors name the file in err. */
int ff__seal_open(ff_engine *e, char *err, size_t errlen);
/* Closes every segment. */
void ff__seal_close(ff_engine *e);
/* Seals when enough settled rows (or enough wall-clock time) have accumulated. */
void ff__seal_tick(ff_engine *e, int64_t now);
/* What a job does (tests). */
enum { FF__JOB_SEAL, FF__JOB_MERGE, FF__JOB_COMMIT };
int ff__seal_job_kind(const ff_seal_job *j);
/* Frees a seal capture in progress (ff_engine_seal_begin); at close. */
void ff__seal_abandon(ff_engine *e);
/* The occupancy of s after its last row with ts <= t (0 before any); FF_ECORRUPT. */
int ff__space_occ_at(const ff_engine *e, const ff__space *s, int64_t t, int64_t *occ);
/* Rows of s (sealed, then in memory) with start <= ts < end, after *after if not NULL,
 * in canonical order; cb's non-zero return stops and is returned; FF_ECORRUPT. */
typedef int (*ff__row_cb)(void *ctx, const ff__row *r);
int ff__space_scan(const ff_engine *e, const ff__space *s, int64_t start, int64_t end,
                   const ff_row_key *after, ff__row_cb cb, void *ctx);
/* Whether a row with key k exists in the sealed rows of s. */
bool ff__space_sealed_has(const ff_engine *e, const ff__space *s, const ff_row_key *k);
/* Row count, latest ts and latest occupancy of s over sealed and memory rows. */
void ff__space_totals(const ff__space *s, uint64_t *rows, int64_t *latest_ts, int64_t *occ);
/* Invariants of the sealed index (numbered in seal.c). */
void ff__seal_check(const ff_engine *e);
/* Opens segment (start, end, version) of the segment directory as the next live one
 * and indexes its spaces (recovery). Errors name the file in err. */
int ff__seal_attach(ff_engine *e, int64_t start, int64_t end, uint32_t version, char *err,
                    size_t errlen);

/* Counts late row `row` (ts <= sealed_upto) of space s: rewrites the segment holding
 * its window, and every later one of s whose occupancies change (synchronously). */
void ff__seal_amend(ff_engine *e, ff__space *s, const ff__row *row);
/* Makes amendments durable: log sync, then a checkpoint. 0 when nothing is pending. */
int ff__seal_commit(ff_engine *e);

/* ---- archive.c: archived segments ---- */

/* Opens live segment `name` of the segment directory at recovery: its stub when it was
 * archived (with opts.archive_dir, the archive's copy instead, checked against the
 * stub), completing an interrupted archive; else the file. *archived tells which. */
int ff__arc_open(ff_engine *e, const char *name, ff_seg **out, bool *archived, char *err,
                 size_t errlen);
/* Recomputes archived_upto, stub_upto and segments_archived from the live list. */
void ff__arc_recount(ff_engine *e);
/* About once a second, with no seal or merge job in flight: adopts the stubs that
 * `footfall archive` left for live segments while the engine ran. */
void ff__arc_tick(ff_engine *e, int64_t now);
/* Whether history at or before t is archived and not readable here (FF_EARCHIVED). */
static inline bool ff__arc_gone(const ff_engine *e, int64_t t)
{
    return e->stub_upto != FF_TS_MIN && t <= e->stub_upto;
}

/* ---- checkpoint.c ---- */

/* Writes the checkpoint covering log position lsn (atomically; see checkpoint.c). */
int ff__ckpt_write(ff_engine *e, uint64_t lsn);
/* The same in three steps, so that the writing can run on another thread (a commit job,
 * engine/seal.c): prepare (engine thread) encodes the checkpoint of the engine as it is
 * now, covering lsn = ff_log_written(), and notes the log files it makes redundant; run
 * (any thread) makes the log durable up to lsn (fdatasync of its current file), writes
 * the topology snapshot when it changed and the checkpoint, then unlinks those log
 * files; done (engine thread) records the result (and frees the job's buffers). */
typedef struct ff__ckpt_job {
    char *dir;
    uint64_t lsn, snap, old_snap, topo_gen, upto;
    unsigned char *ck, *topo; /* topo NULL: the snapshot did not change */
    size_t nck, ntopo;
    bool topo_renamed, topo_written; /* by run: its rename was tried; it is durable */
    char failed[64];                 /* by run: the file in dir that failed, "" the dir */
    ff_log_datasync_job sync;        /* the log up to lsn */
    ff_log_release_job rel;
} ff__ckpt_job;
void ff__ckpt_prepare(ff_engine *e, ff__ckpt_job *j);
int ff__ckpt_run(ff__ckpt_job *j);
int ff__ckpt_done(ff_engine *e, ff__ckpt_job *j, int rc);
/* Loads the checkpoint if there is one (topology, revisions, H, segments). Errors name
 * the file in err. */
int ff__ckpt_load(ff_engine *e, char *err, size_t errlen);
/* Reads, without opening an engine, H and the segments the checkpoint of data_dir
 * names, in time order, into a new array *segs (free() it): the committed state, which
 * a running server only moves forward. No checkpoint: 0 segments. Errors name the
 * file in err. */
int ff__ckpt_peek(const char *data_dir, int64_t *h, ff_seg_entry **segs, size_t *nsegs, char *err,
                  size_t errlen);
/* Notes an event record at lsn whose latest event time is max_ts (ingest and replay). */
void ff__ckpt_note(ff_engine *e, uint64_t lsn, int64_t max_ts);
/* Releases the log files the checkpoint on disk makes redundant; 0 or -errno. */
int ff__ckpt_release(ff_engine *e);

/* Crash points for tests: a seal stops (as a crash would) once it reaches the step set
 * here, and sets it to FF__STOP_HIT. Always FF__STOP_NONE outside tests. */
enum {
    FF__STOP_NONE,
    FF__STOP_SEGMENT,  /* a new segment is durable, no checkpoint names it */
    FF__STOP_CKPT_TMP, /* the new checkpoint is written but not renamed */
    FF__STOP_CKPT,     /* committed; files of replaced versions not yet removed */
    FF__STOP_AMEND,    /* segments rewritten for a late event, not committed */
    FF__STOP_MERGE,    /* a merged segment is durable, no checkpoint names it */
    FF__STOP_TOPO,     /* a new topology snapshot is written but not renamed */
    FF__FAIL_DIRSYNC,  /* not a crash: the directory fsync after a checkpoint's rename fails */
    FF__FAIL_WRITE,    /* not a crash: the next snapshot or checkpoint file fails its fsync */
    FF__STOP_HIT
};
extern int ff__seal_test_stop;
/* Spaces per step of a seal capture (ff_engine_seal_begin); tests make it small. */
extern size_t ff__seal_capture_spaces;

#endif /* FF_ENGINE_INT_H */
