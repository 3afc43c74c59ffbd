/*
 * engine.h -- the occupancy engine: topology, admission, per-space rows, the horizon,
 * queries, durability through the log, recovery.
 *
 * The engine is pure and single-threaded: it never calls libuv, never reads the wall
 * clock except through opts.clock, and gives the same answers for the same set of
 * accepted events and topology, whatever order the events came in (SPEC §2).
 *
 * Sealed history. With a data directory, settled rows are sealed into immutable segment
 * files under <data_dir>/segments and leave memory; every answer below reads segments
 * and memory as one sequence. A late event into sealed history rewrites the segments it
 * changes before ff_engine_ingest() returns (engine/seal.c gives the cost).
 *
 * Durability. With a data directory, every accepted event and every topology change is
 * appended to the log (storage/log.h) before it counts. ff_engine_written() is then the
 * log position covering everything done so far; the caller (the server) syncs it --
 * ff_engine_sync(), or ff_engine_sync_begin/run/end with the msync on another thread --
 * and releases the acks and answers whose position is <= ff_engine_durable(). Without a data
 * directory (tests) nothing is written and both positions stay 0.
 *
 * Pointers. Strings and structs returned by queries point into engine memory and are
 * valid until the next call that changes the engine (ingest, topology, tick, close).
 */
#ifndef FF_ENGINE_H
#define FF_ENGINE_H

#include "engine/ff.h"
#include "storage/log.h"

#include <stdbool.h>

typedef struct ff_engine ff_engine;
typedef struct ff_archive_news ff_archive_news;

/* The wall clock, in ff_ts microseconds. Injectable so tests control time. */
typedef int64_t (*ff_clock_fn)(void *ctx);

typedef struct ff_engine_opts {
    const char *data_dir;    /* NULL: in memory only, no log (tests) */
    int64_t settle_us;       /* settle_delay; default 5 min (0 means default) */
    int64_t max_lateness_us; /* default 7 d */
    int64_t max_future_us;   /* default 5 min */
    bool late_reject;        /* --late=reject; default amend */
    bool dedup_off;          /* --dedup=off; default on */
    size_t log_file_bytes;   /* 0 = log default */
    ff_clock_fn clock;       /* NULL = CLOCK_REALTIME */
    void *clock_ctx;
    /* Sealing (with a data_dir only): a tick seals settled rows into a segment once
     * seal_rows of them have settled since the last seal, or seal_age_us of wall-clock
     * time has passed with some settled. 0 = defaults (FF_SEAL_ROWS, FF_SEAL_AGE). */
    uint64_t seal_rows;
    int64_t seal_age_us;
    /* Only rows older than H - seal_lag_us are sealed (default 0: every settled row).
     * Late events into the lag are counted in memory, cheaply; older ones rewrite
     * segments. Costs memory: the rows of the lag. */
    int64_t seal_lag_us;
    /* Adjacent segments of similar size (the later holds at least half the rows of the
     * earlier) are merged pairwise as soon as both are sealed, while the result holds
     * at most seal_merge_rows rows, one merge at a time, so a space's index stays
     * short. Archived segments are never merged. 0 = 16 * seal_rows. */
    uint64_t seal_merge_rows;
    /* The caller seals and merges through ff_engine_seal_begin/run/end (below), with
     * the writing on another thread; ff_engine_tick() then does not (except the next
     * seal after a discarded job). Default false: the tick does everything. */
    bool seal_async;
    /* Where `footfall archive` moved old segments (engine/archive.c). NULL: queries into
     * archived history answer FF_EARCHIVED; else the archived segments are read from
     * here, and every answer is as if they were local. */
    const char *archive_dir;
    /* Called from ff_engine_tick() after it adopted the stubs of a `footfall archive`
     * run (engine/archive.c), with what changed; NULL: nobody is told. */
    void (*on_archived)(void *ctx, const ff_archive_news *news);
    void *on_archived_ctx;
} ff_engine_opts;

#define FF_SEAL_ROWS ((uint64_t)1 << 20)
#define FF_SEAL_AGE  ((int64_t)3600 * 1000000) /* one hour */

/* Fills o with the defaults above. */
void ff_engine_opts_default(ff_engine_opts *o);

/* What ff_engine_open() found and did. */
typedef struct ff_engine_recovery {
    ff_log_recovery log;
    uint64_t events_replayed;
    uint64_t topo_ops_replayed;
    double seconds;
    uint64_t events_skipped; /* log events already in segments */
    uint32_t segments;       /* segments opened */
    char error[512];         /* why the open failed, naming the file; "" */
} ff_engine_recovery;

/* Opens the engine; with a data_dir, loads the checkpoint, opens the segments it names
 * (a corrupt one fails the open: rep->error names it) and replays the log records they
 * do not cover (engine/checkpoint.c). rep may be NULL. */
int ff_engine_open(ff_engine **out, const ff_engine_opts *opts, ff_engine_recovery *rep);
/* Syncs the log and frees everything. */
void ff_engine_close(ff_engine *e);

/* ---- Topology -------------------------------------------------------------------- */

#define FF_NAME_MAX 100 /* bytes of UTF-8 */

typedef struct ff_space_def {
    uint32_t id; /* > 0 */
    char name[FF_NAME_MAX + 1];
    bool has_capacity;
    int64_t capacity; /* >= 0 when has_capacity */
    bool clamp_at_zero;
} ff_space_def;

typedef struct ff_doorway_def {
    uint32_t id; /* > 0 */
    char name[FF_NAME_MAX + 1];
} ff_doorway_def;

/* One assignment version of a DPU. Space and doorway ids of 0 mean null. */
typedef struct ff_assignment {
    uint32_t doorway_id;
    uint32_t entry_space_id;
    uint32_t exit_space_id;
    int64_t effective_from; /* FF_TS_MIN = the beginning of time */
} ff_assignment;

/*
 * Creates or updates a space. A def identical to the existing one changes nothing and
 * writes nothing. Errors: FF_EINVAL (id 0, empty or too long name, capacity < 0),
 * FF_EEXIST (another space has that name), FF_ECONFLICT (changing clamp_at_zero of a
 * space that already has events would rewrite settled history).
 * *created (may be NULL) tells whether the space is new.
 */
int ff_engine_space_put(ff_engine *e, const ff_space_def *def, bool *created);
/* FF_ENOTFOUND, or FF_ECONFLICT while any assignment version refers to the space. */
int ff_engine_space_delete(ff_engine *e, uint32_t id);
/* Smallest unused space id (for POST without id). */
uint32_t ff_engine_space_next_id(const ff_engine *e);

/* The same for doorways. */
int ff_engine_doorway_put(ff_engine *e, const ff_doorway_def *def, bool *created);
int ff_engine_doorway_delete(ff_engine *e, uint32_t id);
uint32_t ff_engine_doorway_next_id(const ff_engine *e);

/*
 * Adds an assignment version to DPU `dpu_id`, creating the DPU if it is new.
 * has_effective_from false: the beginning of time for a DPU's first version, now
 * (opts.clock) for later ones. Applied idempotently: when has_effective_from is false
 * and the DPU's latest version already has the same doorway and spaces, or when a
 * version identical in all fields exists, nothing changes (*added = false).
 * Pending events of the DPU at or after the new effective_from are re-attributed.
 * Errors: FF_EINVAL (entry == exit != 0), FF_EREF (a space or doorway id that names
 * nothing), FF_ECONFLICT (effective_from at or before the horizon H, except for a DPU's
 * first version, or before the DPU's latest version).
 */
int ff_engine_dpu_assign(ff_engine *e, uint32_t dpu_id, const ff_assignment *a,
                         bool has_effective_from, bool *added);

/* Read access. Each returns NULL when the id is unknown. */
typedef struct ff_space_info {
    ff_space_def def;
    uint64_t revision; /* late amendments so far */
    uint64_t rows;     /* events counted in the space */
    int64_t occupancy; /* after every accepted event */
    int64_t latest_ts; /* ts of the latest event; FF_TS_MIN if none */
    bool settled;      /* latest_ts <= H */
} ff_space_info;

int ff_engine_space_get(const ff_engine *e, uint32_t id, ff_space_info *out);
int ff_engine_doorway_get(const ff_engine *e, uint32_t id, ff_doorway_def *out);
/* Looks a space / doorway up by exact name; 0 if none. */
uint32_t ff_engine_space_by_name(const ff_engine *e, const char *name);
uint32_t ff_engine_doorway_by_name(const ff_engine *e, const char *name);

/* Iteration in ascending id order. The callback returns non-zero to stop. */
typedef int (*ff_space_cb)(void *ctx, const ff_space_info *s);
typedef int (*ff_doorway_cb)(void *ctx, const ff_doorway_def *d);
typedef int (*ff_dpu_cb)(void *ctx, uint32_t dpu_id, const ff_assignment *versions, size_t n);
void ff_engine_spaces(const ff_engine *e, ff_space_cb cb, void *ctx);
void ff_engine_doorways(const ff_engine *e, ff_doorway_cb cb, void *ctx);
void ff_engine_dpus(const ff_engine *e, ff_dpu_cb cb, void *ctx);
/* The versions of one DPU in effective_from order; FF_ENOTFOUND if unknown. The pointer
 * is valid until the next change. */
int ff_engine_dpu_get(const ff_engine *e, uint32_t dpu_id, const ff_assignment **versions,
                      size_t *n);
size_t ff_engine_space_count(const ff_engine *e);
size_t ff_engine_dpu_count(const ff_engine *e);

/* ---- Ingest ---------------------------------------------------------------------- */

/* Per-event outcome of admission. */
enum ff_outcome {
    FF_OUT_ACCEPTED = 0,
    FF_OUT_LATE,      /* accepted, amended settled history */
    FF_OUT_DUPLICATE, /* acknowledged, changed nothing */
    FF_OUT_REFUSED_LATE,
    FF_OUT_REFUSED_TOO_OLD,
    FF_OUT_REFUSED_FUTURE,
    FF_OUT_REFUSED_UNKNOWN_DPU,
    FF_OUT_REFUSED_INVALID, /* direction not +-1, reserved not 0, ts < 0 */
    FF_OUT__COUNT
};
/* The refusal reason as the API spells it: "late", "too_old", "future", "unknown_dpu",
 * "invalid"; NULL for outcomes that are not refusals. */
const char *ff_outcome_reason(int outcome);

typedef struct ff_ingest_result {
    uint32_t accepted; /* including late */
    uint32_t duplicates;
    uint32_t late;
    uint32_t refused;
} ff_ingest_result;

/*
 * Admits a batch of events: validates each, refuses (future, too_old, late with
 * late_reject, unknown_dpu, invalid), detects duplicates (also within the batch),
 * appends the accepted ones to the log as one record, then counts them. outcome (may
 * be NULL) receives one enum ff_outcome per event. Returns 0, or a negative error when
 * the log cannot be written (-ENOSPC, -EIO): then nothing of the batch was taken.
 * No allocation per event in the steady state.
 */
int ff_engine_ingest(ff_engine *e, const ff_event *ev, size_t n, uint8_t *outcome,
                     ff_ingest_result *res);

/*
 * Time passes: applies the idle advance of H (no event accepted for settle_delay of
 * wall-clock time moves H up to the largest accepted ts; logged) and moves rows that
 * became settled out of the pending rings. Bounded work; call it from a timer.
 * With a data_dir and without seal_async it also seals: once seal_rows rows have settled
 * (or seal_age_us has passed), every settled row moves into a new segment file and
 * leaves memory, and a checkpoint commits it (engine/seal.c, engine/checkpoint.c). That
 * tick's work is proportional to the rows sealed (about 0.2 s per million rows) plus
 * three fsyncs; with seal_async, ff_engine_seal_begin/run/end move it off this thread.
 */
void ff_engine_tick(ff_engine *e);

/*
 * Sealing off the engine's thread (opts.seal_async), in three steps like the log sync:
 *   ff_engine_seal_begin (engine thread), after ff_engine_tick(): when a seal is due,
 *       settles the rows to seal (all spaces, ts <= H) and pins them where they lie for
 *       a new job (engine/rows.h), a step at a time (at most 1,024 spaces and about
 *       16,384 rows per call, so that no call holds the thread for long); else maybe
 *       picks two old segments to merge. Returns 1 with *job once it is complete, or 0.
 *       After a seal, a merge or late events into sealed history, the next job is a
 *       commit: the checkpoint (engine/checkpoint.c), encoded here, written by run.
 *       While ff_engine_seal_stepping() is true, call it again soon (footfalld: every
 *       loop turn). One job at a time.
 *   ff_engine_seal_run (any thread): encodes, compresses and writes the new segment
 *       file, fsync, rename, directory fsync. Touches only the job, its files and the
 *       rows it pinned (read only: the engine never writes them while pinned).
 *   ff_engine_seal_end (engine thread) with run's result: if what the job pinned is
 *       unchanged (no event at or before its end and no amendment came in meanwhile),
 *       attaches the segment, drops the rows from memory and commits a checkpoint; else
 *       removes the file (the next seal then runs in the tick). Frees job. Returns 0 or
 *       the error of run or of the commit (both retried later).
 * Ingest, queries and ticks go on between begin and end; ff_engine_close() may not.
 */
typedef struct ff_seal_job ff_seal_job;
/* Syncs the log and writes a checkpoint now, with a new topology snapshot if the
 * topology changed since the last one (engine/checkpoint.c): after a bulk topology
 * change, so that the next seal does not pay for the snapshot. 0 or an error. */
int ff_engine_checkpoint(ff_engine *e);
/* With seal_async: writes the checkpoint a commit job would (after a seal, a merge or
 * late events into sealed history), now, on this thread; 0 when none is due or a job is
 * in flight. Before a clean close, so that a restart replays less. 0 or an error. */
int ff_engine_commit(ff_engine *e);
int ff_engine_seal_begin(ff_engine *e, ff_seal_job **job);
bool ff_engine_seal_capturing(const ff_engine *e); /* a seal's capture is in progress */
bool ff_engine_seal_stepping(const ff_engine *e);  /* ... or a commit is due */
int ff_engine_seal_run(ff_seal_job *job);
int ff_engine_seal_end(ff_engine *e, ff_seal_job *job, int rc);
/* Why the seal, merge or commit job the last ff_engine_seal_end() (or tick) ended
 * failed, naming the file: "FILE: what is wrong" for a segment it wrote that does not
 * open or could not be written, "corrupt at offset X in FILE: why" for a segment a merge
 * read, "DIR/FILE: what is wrong" for the checkpoint or topology snapshot a commit
 * could not write, "DIR: the log's fdatasync for a checkpoint: ..." when its log sync
 * failed. "" when it did not fail. Valid until the next job's end or ff_engine_close().
 * (The synchronous ff_engine_commit() does not set it.) */
const char *ff_engine_seal_error(const ff_engine *e);

/* Durability (see the top of this file). */
uint64_t ff_engine_written(const ff_engine *e);
uint64_t ff_engine_durable(const ff_engine *e);
int ff_engine_sync(ff_engine *e);
/* The same in three steps, so the sync can run on another thread while the engine goes
 * on (ff_log_sync_begin/run/end in storage/log.h; begin and end on the engine's thread,
 * run on any). Without a data directory begin returns 0: nothing to sync. */
int ff_engine_sync_begin(ff_engine *e, ff_log_sync_job *job);
int ff_engine_sync_run(const ff_log_sync_job *job);
int ff_engine_sync_end(ff_engine *e, const ff_log_sync_job *job, int rc);

/* ---- Queries --------------------------------------------------------------------- */

int64_t ff_engine_horizon(const ff_engine *e); /* H; FF_TS_MIN before any event */

typedef struct ff_count {
    int64_t at; /* the T asked, or the latest event's ts (FF_TS_MIN if none) */
    int64_t occupancy;
    bool settled; /* at <= H */
    uint64_t revision;
} ff_count;

/* Occupancy of a space at T (events with ts <= T), O(log n); has_at false: latest.
 * FF_ENOTFOUND for an unknown space. */
int ff_engine_count(const ff_engine *e, uint32_t space_id, bool has_at, int64_t at, ff_count *out);

typedef struct ff_bucket {
    int64_t start, end;
    int64_t occupancy_start; /* fold of events with ts < start */
    int64_t occupancy_end;   /* fold of events with ts < end */
    int64_t min, max;        /* over occupancy_start and every value reached inside */
    uint64_t entrances;      /* events with positive delta inside */
    uint64_t exits;          /* events with negative delta inside */
    bool settled;            /* end <= H */
} ff_bucket;

#define FF_MAX_BUCKETS 10000

/*
 * Buckets [b, b+interval) from start up to end (the last one ends at end). Errors:
 * FF_ENOTFOUND, FF_EINVAL (interval <= 0, end <= start), FF_ETOOBIG (more than
 * FF_MAX_BUCKETS). out must hold FF_MAX_BUCKETS; *n receives the count.
 */
int ff_engine_counts(const ff_engine *e, uint32_t space_id, int64_t start, int64_t end,
                     int64_t interval, ff_bucket *out, size_t *n, uint64_t *revision);

/* One occupancy row: an event of a space with the occupancy after it. */
typedef struct ff_occ_row {
    int64_t ts;
    uint32_t dpu_id;
    uint16_t seq;
    int8_t direction;
    int8_t delta;
    int64_t occupancy;
    bool settled;
} ff_occ_row;

/* A position in a space's canonical order, for cursors: rows strictly after it. */
typedef struct ff_row_key {
    int64_t ts;
    uint32_t dpu_id;
    uint16_t seq;
    int8_t direction;
} ff_row_key;

typedef int (*ff_row_cb)(void *ctx, const ff_occ_row *r);
/*
 * Calls cb for the rows of a space with start <= ts < end in canonical order, starting
 * after *after when it is not NULL, until cb returns non-zero (which is returned) or the
 * rows run out (0). FF_ENOTFOUND for an unknown space.
 */
int ff_engine_rows(const ff_engine *e, uint32_t space_id, int64_t start, int64_t end,
                   const ff_row_key *after, ff_row_cb cb, void *ctx);

typedef int (*ff_event_cb)(void *ctx, const ff_event *ev);
/* Calls cb for the accepted events of a DPU with start <= ts < end, in (ts, seq,
 * direction) order. FF_ENOTFOUND for an unknown DPU. */
int ff_engine_dpu_events(const ff_engine *e, uint32_t dpu_id, int64_t start, int64_t end,
                         ff_event_cb cb, void *ctx);

/* The end of archived history that this engine cannot read (archived, and no
 * archive_dir): count-at-T with T before it, and ranges starting at or before it,
 * answer FF_EARCHIVED. FF_TS_MIN when nothing is archived (or all is readable). */
int64_t ff_engine_archived_upto(const ff_engine *e);

/* ---- Archiving (footfall archive; engine/archive.c) ---------------------------- */

/* What one look for stubs adopted (opts.on_archived). */
struct ff_archive_news {
    uint32_t segments; /* segments adopted, oldest `first`, newest `last` */
    char first[64], last[64];
    int64_t archived_upto; /* the end of archived history now */
    bool readable;         /* read from opts.archive_dir, else answered FF_EARCHIVED */
};

/* One segment of an archive plan. */
typedef struct ff_archive_item {
    char name[64]; /* segment file name (FF_SEG_NAME_MAX) */
    int64_t start, end;
    uint64_t rows, bytes;
} ff_archive_item;

typedef struct ff_archive_plan {
    ff_archive_item *items; /* the segments to move, oldest first */
    size_t n;
    size_t already;    /* live segments archived before */
    int64_t cutoff;    /* only segments ending before this move */
    int64_t horizon;   /* H of the checkpoint */
    bool lateness_cut; /* the cutoff is H - max_lateness, not now - older_than */
} ff_archive_plan;

/*
 * Plans archiving data_dir's oldest segments, offline (the server may run): the live
 * segments of its checkpoint, in time order, that end before
 *   cutoff = min(now - older_than, H - max_lateness)
 * (max_lateness: the server's --max-lateness; no late event can reach them), stopping
 * at the first that does not: archived history is always a prefix. Errors name the
 * file in err. Free the plan with ff_engine_archive_plan_free().
 */
int ff_engine_archive_plan(const char *data_dir, int64_t older_than_us, int64_t max_lateness_us,
                           int64_t now, ff_archive_plan *plan, char *err, size_t errlen);
void ff_engine_archive_plan_free(ff_archive_plan *plan);
/*
 * Moves item i of the plan to to_dir (storage/archive.h: copy, verify, stub, unlink).
 * Returns 0; 1 when the segment was merged or rewritten by the server meanwhile (then
 * nothing is archived: its stub, if written, is removed; the copy stays, unused); or
 * an error with a message naming the file in err. *stub_bytes (may be NULL) gets the
 * stub's size.
 */
int ff_engine_archive_one(const char *data_dir, const char *to_dir, const ff_archive_item *item,
                          int64_t now, uint64_t *stub_bytes, char *err, size_t errlen);

/* ---- Statistics ------------------------------------------------------------------ */

typedef struct ff_engine_stats {
    uint64_t outcomes[FF_OUT__COUNT]; /* events by outcome since start */
    uint64_t pending_rows;            /* rows with ts > H, all spaces */
    uint64_t settled_rows;            /* rows with ts <= H still in memory */
    int64_t horizon;                  /* H */
    int64_t max_ts;                   /* largest accepted ts, FF_TS_MIN if none */
    uint64_t log_bytes;
    uint32_t log_files;
    uint64_t segments_sealed;     /* segments written since open (seals, rewrites) */
    size_t pending_row_bytes;     /* sizeof one pending row */
    uint64_t sealed_rows;         /* rows in segments, all spaces (not in memory) */
    uint32_t segments;            /* live segment files open */
    uint64_t segments_rewritten;  /* corrected versions written for late events */
    uint64_t segments_merged;     /* pairs of adjacent segments merged into one */
    uint64_t log_files_released;  /* log files removed since open: all they held is sealed */
    uint64_t seal_jobs_discarded; /* async seals redone: late events came in meanwhile */
    uint32_t segments_archived;   /* live segments that `footfall archive` moved out */
    int64_t archived_upto;        /* the end of archived history; FF_TS_MIN if none */
} ff_engine_stats;

void ff_engine_stats_get(const ff_engine *e, ff_engine_stats *out);

/*
 * The same, a few spaces at a time: the row counts walk every space, about 15 ms at
 * 100,000 spaces, so a server spreads the walk over the turns of its loop instead of
 * holding ingest for it. Zero the walk, then call ff_engine_stats_step until it returns
 * true; *out is then filled. Each space is counted as it is at its step, and every row
 * once: events and seals between steps stay within their space, and a topology change
 * (which can move rows between spaces) starts the walk over; after two such restarts
 * the rest is walked in one step. The counters are read at the last step.
 */
typedef struct ff_engine_stats_walk {
    size_t next; /* the next space slot */
    uint64_t pending_rows, settled_rows, sealed_rows;
    uint64_t topo_gen; /* the topology's generation + 1 the walk began at; 0: not begun */
    unsigned restarts;
} ff_engine_stats_walk;

bool ff_engine_stats_step(const ff_engine *e, ff_engine_stats_walk *w, size_t max_spaces,
                          ff_engine_stats *out);

/* After an FF_ECORRUPT answer: "corrupt at offset X in FILE: why" for the first live
 * segment that failed a check, or "" if none did. */
const char *ff_engine_corrupt_detail(const ff_engine *e);
/* Calls fn(ctx, message) once for each live segment (local or an --archive-dir copy)
 * whose reads failed a check since the last call: message as above, valid during the
 * call. For one log line per damaged file. Returns how many. */
size_t ff_engine_corrupt_news(const ff_engine *e, void (*fn)(void *ctx, const char *message),
                              void *ctx);

/* Checks every invariant (canonical order, folds, ring bookkeeping); panics on a broken
 * one. For tests and debug builds: O(total rows). */
void ff_engine_check(const ff_engine *e);

#endif /* FF_ENGINE_H */
