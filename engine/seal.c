/*
 * seal.c -- sealing settled rows into segment files (storage/segment.h), and the reads
 * that span segments and memory.
 *
 * What is sealed. A seal picks a time `to` and moves every row of every space with
 * ts <= to out of memory into ONE new segment covering the window (previous
 * sealed_upto, to]; then sealed_upto = to. Rows in memory therefore all have
 * ts > sealed_upto, and a space's rows in canonical order are: its sealed rows, segment
 * after segment (windows are disjoint and ascending), then its memory rows, whose fold
 * starts from the occupancy after the last sealed row (ff__rows.base). Orphan rows
 * (events counted in no space) are few and stay in memory.
 *
 * When. Once seal_rows rows have settled since the last seal, or seal_age_us of
 * wall-clock time has passed with some settled: in ff__seal_tick() (from
 * ff_engine_tick()), or with seal_async as a job the caller runs on another thread
 * (Jobs, below; footfalld does). A seal takes to = H - seal_lag_us (default 0): every
 * settled row older than that leaves memory. A lag keeps recent settled history in
 * memory, where a late event is cheap to count (a refold), instead of in segments,
 * where it costs rewrites (Late events, below).
 * On the engine's thread a seal costs one copy of its rows (about 15 ns a row, taken in
 * steps: Capturing, below) and O(1) per space at its end; the segment's encoding,
 * compression and fsyncs are the job's, and with seal_async the checkpoint is a job's
 * too (Commit jobs, below).
 *
 * Late events into sealed history (ts <= sealed_upto, admitted with late=amend) are
 * answered exactly at once, by rewriting (ff__seal_amend): the segment whose window holds
 * the event is written again as its next version with the row inserted and the space's
 * occupancies refolded, then every later segment holding the space is rewritten the same
 * way from the new occupancy, until one starts from the occupancy it already had (a
 * clamped space may absorb the change) or the memory rows are reached (then rebased).
 * Cost: one whole segment rewrite (all its spaces) per segment touched, so O(rows of the
 * segments from the event's window to the end) per late event in an unclamped space,
 * plus one log sync and one checkpoint per batch holding such events (ff__seal_commit),
 * all synchronous in the ingest call. Late events are rare; the thresholds bound a
 * segment's size. A failed rewrite (disk full) panics: memory would no longer match the
 * log, and a restart replays the event again.
 *
 * Versions. A rewritten segment keeps its window and gets version + 1. The file of the
 * version the checkpoint names stays on disk until a new checkpoint names the new one
 * (then it is removed); intermediate versions no checkpoint named are removed at once.
 * Recovery opens exactly the versions the checkpoint names, so a crash between the
 * rewrite and the checkpoint leaves the old version, and the log replays the event into
 * it again.
 *
 * Merging. Each seal adds a segment, and a count in sealed history costs a footer
 * lookup per segment it visits (Reads, below), so adjacent segments of similar size (the
 * later holding at least half the rows of the earlier) that hold at most seal_merge_rows
 * rows together are merged into one segment covering both windows, one merge at a time,
 * as a job (below) or in the tick, committed by a checkpoint like an amendment: the old
 * files stay until the checkpoint names the merged one. Like a binary counter, each row
 * is rewritten about log2(seal_merge_rows / seal_rows) times. A merge changes nothing
 * per space: segments are found by their windows.
 * A late event may rewrite a segment that a merge job is reading: the job's end sees
 * the new version and discards the merge, and the old version's mapping is closed only
 * then (close_seg). Merging costs late events nothing more: a late event already
 * rewrites every later segment of its space, merged or not. Archived segments
 * (engine/archive.c) are never merged.
 *
 * Reads. Nothing per (space, segment) is kept in memory: per space only sealed_rows and
 * sealed_last_ts (the occupancy after it is rows.base), so memory does not grow with
 * history. The segment footers hold the rest (per space: rows, first and last ts,
 * occupancy before and after). count-at-T in sealed history finds the segment whose
 * window holds T (binary search over the live list), looks the space up in its footer
 * (binary search), and answers from the footer or with one block decode; when the space
 * has no row there at or before T, it steps back a segment at a time (a busy space never
 * does; a space silent for days steps back over the merged stretches between). Scans
 * visit the segments overlapping the range in order; a duplicate check is the one
 * segment whose window holds the key. (Until 2026-11-29 each space kept an entry per
 * segment holding it: 48 then 24 bytes each, 200 MiB after a week at 100,000 busy
 * spaces, and growing: bench/week, docs/BENCHMARKS.md.)
 *
 * Residency. A segment's pages count in RSS once read (its footer, about 100 bytes per
 * space, is read whole at open and by merges). ff_seg_open drops them, and every commit
 * drops the pages reads have faulted in since (ff_seg_drop_pages), so the mapped
 * segments cost no resident memory between commits however long the history grows.
 *
 * Durability. A seal is committed by the checkpoint (engine/checkpoint.c, which gives
 * the protocol step by step): the log is synced, the segment written and made durable,
 * the rows dropped from memory, then the checkpoint naming the segment renamed into
 * place. Recovery opens only the segments the checkpoint names and removes any other
 * segment file, so a crash at any step leaves either the old state (the log still holds
 * the rows) or the new one.
 *
 * Invariants (ff__seal_check):
 *   S1 segment windows tile [FF_TS_MIN, sealed_upto]: the first starts at FF_TS_MIN,
 *      each next one right after the previous one's end, the last ends at sealed_upto;
 *      segment ids ascend with the windows.
 *   S2 a space's rows in a segment (its footer entry) lie inside the segment's window.
 *   S3 occupancy chains: a space's first segment starts from 0, each next one holding
 *      it from the previous one's last occupancy, the memory rows from the last one's
 *      (rows.base).
 *   S4 every memory row of a space has ts > sealed_upto; sealed_rows is the sum of its
 *      footer row counts and sealed_last_ts the latest footer last ts.
 *   S5 a segment read from its stub is archived and ends at or before stub_upto; an
 *      archived one ends at or before archived_upto (engine/archive.c).
 */
#include "engine/engine_int.h"
#include "storage/archive.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- open, close ---- */

static int mkdir_p(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return -errno;
    return 0;
}

int ff__seal_test_stop = FF__STOP_NONE;

/* Whether a test asked to stop (crash) at this step. */
static bool stop_at(int step)
{
    if (ff__seal_test_stop != step) return false;
    ff__seal_test_stop = FF__STOP_HIT;
    return true;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Removes every segment file (and temp leftover) that is not a live segment (at open:
 * leftovers of seals and rewrites that did not commit). */
static int remove_unnamed(const ff_engine *e)
{
    DIR *d = opendir(e->seg_dir);
    if (!d) return -errno;
    char(*live)[FF_SEG_NAME_MAX] = ff_xmalloc((e->nsegs + 1) * FF_SEG_NAME_MAX);
    for (size_t i = 0; i < e->nsegs; i++)
        ff_seg_name(live[i], e->segs[i].start, e->segs[i].end, e->segs[i].version);
    qsort(live, e->nsegs, FF_SEG_NAME_MAX, cmp_name);
    int rc = 0;
    bool removed = false;
    struct dirent *de;
    while ((de = readdir(d))) {
        char base[FF_SEG_NAME_MAX] = "";
        size_t n = strlen(de->d_name), k = strlen(FF_ARC_SUFFIX);
        if (n > k && n - k < FF_SEG_NAME_MAX && strcmp(de->d_name + n - k, FF_ARC_SUFFIX) == 0)
            memcpy(base, de->d_name, n - k); /* a stub: kept while its segment is live */
        if (strncmp(de->d_name, "seg-", 4) != 0 ||
            bsearch(de->d_name, live, e->nsegs, FF_SEG_NAME_MAX, cmp_name) ||
            (base[0] && bsearch(base, live, e->nsegs, FF_SEG_NAME_MAX, cmp_name)))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) != 0) rc = -errno;
        removed = true;
    }
    if (!rc && removed && fsync(dirfd(d)) != 0) rc = -errno;
    closedir(d);
    free(live);
    return rc;
}

/* Removes the replaced versions the last checkpoint no longer names. */
static int remove_garbage(ff_engine *e)
{
    if (!e->ngarbage) return 0;
    int dfd = open(e->seg_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (dfd < 0) return -errno;
    for (size_t i = 0; i < e->ngarbage; i++) {
        char name[FF_SEG_NAME_MAX];
        const ff__segref *g = &e->garbage[i];
        ff_seg_name(name, g->start, g->end, g->version);
        if (unlinkat(dfd, name, 0) != 0 && errno != ENOENT) rc = -errno;
    }
    if (!rc && fsync(dfd) != 0) rc = -errno;
    close(dfd);
    e->ngarbage = 0; /* a file that could not go is removed at the next open */
    return rc;
}

const char *ff_engine_corrupt_detail(const ff_engine *e)
{
    for (size_t i = 0; i < e->nsegs; i++)
        if (e->segs[i].seg && ff_seg_error(e->segs[i].seg)[0]) return ff_seg_error(e->segs[i].seg);
    return "";
}

int ff__seal_open(ff_engine *e, char *err, size_t errlen)
{
    e->sealed_upto = FF_TS_MIN;
    ff__arc_recount(e); /* nothing archived */
    if (!e->o.data_dir) return 0;
    size_t n = strlen(e->o.data_dir) + sizeof("/segments");
    e->seg_dir = ff_xmalloc(n);
    snprintf(e->seg_dir, n, "%s/segments", e->o.data_dir);
    int rc = mkdir_p(e->o.data_dir);
    if (!rc) rc = mkdir_p(e->seg_dir);
    if (rc) {
        snprintf(err, errlen, "%s: %s", e->seg_dir, strerror(-rc));
        return rc;
    }
    rc = ff__ckpt_load(e, err, errlen);
    if (!rc) rc = remove_unnamed(e);
    ff__arc_recount(e);
    e->merge_scan = e->nsegs > 1;
    return rc;
}

void ff__seal_close(ff_engine *e)
{
    for (size_t i = 0; i < e->nsegs; i++) ff_seg_close(e->segs[i].seg);
    free(e->segs);
    free(e->garbage);
    free(e->lch);
    e->lch = NULL;
    free(e->deferred);
    e->deferred = NULL;
    free(e->by_id);
    e->by_id = NULL;
    e->by_id_gen = 0;
    free(e->seg_dir);
    e->segs = NULL;
    e->nsegs = e->capsegs = 0;
    e->seg_dir = NULL;
}

/* ---- sealing ---- */

static int cmp_u64(const void *a, const void *b)
{
    return ff__cmp_u64(a, b);
}

/* Live space slots in ascending id order; sorted again only after a topology change
 * (sorting 50,000 ids at every seal was an eighth of the loop thread's time). */
static const uint32_t *slots_by_id(ff_engine *e, size_t *n)
{
    if (e->by_id_gen != e->topo_gen + 1) {
        uint64_t *ids = ff_xmalloc((e->nspaces + 1) * sizeof(*ids));
        size_t k = 0;
        for (size_t i = 0; i < e->nspaces; i++)
            if (e->spaces[i].live) ids[k++] = (uint64_t)e->spaces[i].def.id << 32 | i;
        qsort(ids, k, sizeof(*ids), cmp_u64);
        e->by_id = ff_xrealloc(e->by_id, (k + 1) * sizeof(*e->by_id));
        for (size_t i = 0; i < k; i++) e->by_id[i] = (uint32_t)ids[i];
        free(ids);
        e->nby_id = k;
        e->by_id_gen = e->topo_gen + 1;
    }
    *n = e->nby_id;
    return e->by_id;
}

/* Rows of the settled part with ts <= to (they are a prefix). */
static size_t sealable(const ff__rows *r, int64_t to)
{
    size_t lo = 0, hi = r->nset;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->set[mid].ts <= to)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static ff_seg_row seg_row_of(const ff__row *x)
{
    return (ff_seg_row){.ts = x->ts,
                        .dpu_id = x->dpu,
                        .seq = x->seq,
                        .direction = x->dir,
                        .delta = x->delta,
                        .occupancy = x->occ};
}

static int push_segref(ff_engine *e, ff_seg *seg, int64_t start, int64_t end, uint32_t version,
                       bool archived);

/* Opens segment (start, end, version) and appends it to the live list; returns its
 * index or < 0 with a message naming the file in err. */
static int add_segref(ff_engine *e, int64_t start, int64_t end, uint32_t version, bool recover,
                      char *err, size_t errlen)
{
    char name[FF_SEG_NAME_MAX], path[4096];
    ff_seg_name(name, start, end, version);
    snprintf(path, sizeof(path), "%s/%s", e->seg_dir, name);
    ff_seg *seg;
    bool archived = false; /* a new segment is never archived; a recovered one may be */
    int rc = recover ? ff__arc_open(e, name, &seg, &archived, err, errlen)
                     : ff_seg_open(path, &seg, err, errlen);
    if (rc < 0) return rc;
    return push_segref(e, seg, start, end, version, archived);
}

/* Appends the opened segment seg to the live list; returns its index. */
static int push_segref(ff_engine *e, ff_seg *seg, int64_t start, int64_t end, uint32_t version,
                       bool archived)
{
    e->segs = ff_xgrow(e->segs, &e->capsegs, e->nsegs + 1, sizeof(*e->segs));
    e->segs[e->nsegs] = (ff__segref){.seg = seg,
                                     .id = e->next_seg_id++,
                                     .start = start,
                                     .end = end,
                                     .version = version,
                                     .archived = archived};
    return (int)e->nsegs++;
}

/* Drops the first k rows of s from memory: they are sealed, the last one at last_ts
 * with occupancy occ after it (passed in, so that a seal's end does not wait for a
 * cache miss on each of 100,000 settled arrays). */
static void drop_sealed(ff__space *s, size_t k, int64_t last_ts, int32_t occ)
{
    s->sealed_last_ts = last_ts;
    s->sealed_rows += k;
    ff__rows_drop_front(&s->rows, k, occ);
}

int ff__seal_attach(ff_engine *e, int64_t start, int64_t end, uint32_t version, char *err,
                    size_t errlen)
{
    int64_t want = e->nsegs ? e->segs[e->nsegs - 1].end + 1 : FF_TS_MIN;
    if (start != want || start > end || end > e->sealed_upto) {
        snprintf(err, errlen, "%s: segment list out of order", e->seg_dir);
        return FF_ECORRUPT;
    }
    int ix = add_segref(e, start, end, version, true, err, errlen);
    if (ix < 0) return ix;
    e->segs[ix].in_ck = true;
    const ff_seg *seg = e->segs[ix].seg;
    ff_seg_info info;
    ff_seg_get_info(seg, &info);
    for (uint32_t i = 0; i < info.spaces; i++) {
        ff_seg_space si;
        ff_seg_space_at(seg, i, &si);
        ff__space *s = ff__space_find(e, si.space_id);
        int64_t prev = s && s->sealed_rows ? s->rows.base : 0;
        if (!s || si.occ_before != prev || si.first_ts < start || si.last_ts > end ||
            si.last_occ != (int32_t)si.last_occ) {
            snprintf(err, errlen, "%s: space %u does not continue the checkpoint's history",
                     ff_seg_path(seg), si.space_id);
            return FF_ECORRUPT;
        }
        s->sealed_last_ts = si.last_ts;
        s->sealed_rows += si.rows;
        s->rows.base = si.last_occ;
    }
    ff_seg_drop_pages(seg); /* the footer just read: see Residency */
    return 0;
}

/* Steps 4 and 5 of the protocol (engine/checkpoint.c): the checkpoint names exactly
 * the live segments, then files of older versions are removed. */
static int commit(ff_engine *e, uint64_t lsn)
{
    int rc = ff__ckpt_write(e, lsn);
    if (rc < 0) return rc;
    for (size_t i = 0; i < e->nsegs; i++) e->segs[i].in_ck = true;
    if (stop_at(FF__STOP_CKPT)) return -EINTR;
    for (size_t i = 0; i < e->nsegs; i++) ff_seg_drop_pages(e->segs[i].seg); /* Residency */
    remove_garbage(e);   /* committed already: a failure only leaves files for the open */
    ff__ckpt_release(e); /* likewise: a failure leaves files for the next checkpoint */
    return 0;
}

static void merge_some(ff_engine *e, bool sync);

/*
 * Jobs. A seal and a merge are each done in three steps, so that the expensive middle
 * one -- encoding, lz4, writing and fsyncing a segment file -- can run on another
 * thread while the engine goes on (ff_engine_seal_begin/run/end in engine.h):
 *   begin (engine thread) captures what the job writes: for a seal, the rows with
 *     ts <= to of every space, settled first and then pinned where they lie (rows.h:
 *     Pinned rows); for a merge, the two segments (immutable, mapped: the worker reads
 *     them in place).
 *   run (any thread) writes the new segment: temp file, fsync, rename, directory fsync
 *     (storage/segment_write.c). It touches nothing but the job, the files and the rows
 *     it pinned, which it only reads.
 *   end (engine thread) checks that what the job captured is still what the engine
 *     holds. For a seal: no event at or before `to` was applied and no amendment ran
 *     since begin (seal_dirty), and each space still has exactly the copied rows. For a
 *     merge: both segments are still live in the same versions. Then the segment is
 *     attached, the rows leave memory (or the pair is replaced) and a checkpoint
 *     commits (engine/checkpoint.c); otherwise the new file is removed -- it was never
 *     named -- and the next seal after a discarded one runs synchronously, so a stream
 *     of late events cannot starve sealing.
 * Without seal_async, ff_engine_tick() runs all three steps itself.
 */
typedef struct job_space {
    uint32_t id, slot;  /* slot: valid while the topology is unchanged (topo_gen) */
    int32_t last_occ;   /* occupancy after the last row */
    int64_t base;       /* occupancy before the first row */
    const ff__row *row; /* the space's pinned settled rows, row[0 .. n) */
    size_t n;
    int64_t last_ts;
    ff__row *mem; /* the allocation pinned (ff__rows_release); NULL once released */
} job_space;

struct ff_seal_job {
    bool merge;
    bool commit; /* a commit job: ck and garbage below */
    char *dir;
    char name[FF_SEG_NAME_MAX];
    int64_t start, to; /* the new segment's window */
    /* a seal */
    job_space *sp;
    size_t nsp, capsp;
    size_t nrows;     /* rows in all */
    ff_seg_row *conv; /* run: one space's rows in the writer's form */
    size_t capconv;
    uint64_t settled;  /* settled_since_seal at begin */
    uint64_t topo_gen; /* e->topo_gen at begin */
    size_t cursor;     /* spaces (in id order) captured so far */
    bool captured;     /* every space is in: the job may run */
    ff_seg *seg;       /* the new segment, opened by run (validating its footer is O(spaces)) */
    char err[FF_SEG_ERRLEN];
    /* a merge of the segments at positions i, i+1 */
    ff__segref a, b;
    /* a commit */
    ff__ckpt_job ck;
    ff__segref *garbage; /* replaced segment files the checkpoint no longer names */
    size_t ngarbage;
};

static ff_seal_job *job_new(const ff_engine *e, bool merge, int64_t start, int64_t to)
{
    ff_seal_job *j = ff_xcalloc(1, sizeof(*j));
    j->merge = merge;
    j->dir = ff_xmalloc(strlen(e->seg_dir) + 1);
    strcpy(j->dir, e->seg_dir);
    j->start = start;
    j->to = to;
    ff_seg_name(j->name, start, to, 1);
    return j;
}

/* Releases the rows a seal job pinned (before it is freed, on the engine's thread). */
static void job_release(ff_engine *e, ff_seal_job *j)
{
    bool same = e->topo_gen == j->topo_gen;
    for (size_t i = 0; i < j->nsp; i++) {
        job_space *x = &j->sp[i];
        if (!x->mem) continue;
        ff__space *s = same ? &e->spaces[x->slot] : ff__space_find(e, x->id);
        ff__rows_release(s ? &s->rows : NULL, x->mem);
        x->mem = NULL;
    }
}

static void job_free(ff_engine *e, ff_seal_job *j)
{
    if (!j) return;
    job_release(e, j);
    ff_seg_close(j->seg);
    free(j->sp);
    free(j->conv);
    free(j->garbage);
    free(j->dir);
    free(j);
}

/* Removes the job's file (never named by a checkpoint). */
static void job_unlink(const ff_seal_job *j)
{
    if (j->commit) return; /* writes no segment */
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", j->dir, j->name);
    unlink(path);
}

/*
 * Capturing a seal's rows. Each space's rows up to `to` are settled and then pinned where
 * they lie (rows.h): the job's worker reads them in place. They used to be copied into
 * one array, and at 200 DPUs and 1.2 M events/s over UDP that copy and its page faults
 * were a quarter of the loop thread (BENCHMARKS). At 100,000 busy spaces the settles
 * still move about a million rows from as many rings, 30-40 ms in one piece, which
 * every ack and answer waiting on the loop would see. So the capture is taken in steps
 * of at most ff__seal_capture_spaces (1,024) spaces and about CAPTURE_ROWS rows (a
 * space is never split: the step that reaches CAPTURE_ROWS ends after that space),
 * between which the engine goes on.
 * That is safe for the same reason a running job is: the job is registered (e->job, seal_to) from
 * the first step, so any event at or before `to` -- the only thing that changes rows
 * already captured, through ff__apply_event -- marks it dirty, and a topology change
 * (re-attribution, slots) is seen by topo_gen; either discards the job at its end. The
 * pinned memory itself never changes under the worker: a change moves the space's rows
 * to a new allocation first.
 */
#define CAPTURE_ROWS 16384
size_t ff__seal_capture_spaces = 1024;

static ff_seal_job *seal_job_new(ff_engine *e, int64_t to)
{
    ff_seal_job *j =
        job_new(e, false, e->sealed_upto == FF_TS_MIN ? FF_TS_MIN : e->sealed_upto + 1, to);
    j->settled = e->settled_since_seal;
    j->topo_gen = e->topo_gen;
    return j;
}

/* Settles and pins the rows with ts <= to of the next spaces in id order (segments list
 * spaces by id); at most max_spaces spaces and about max_rows rows. */
static void capture_step(ff_engine *e, ff_seal_job *j, size_t max_spaces, size_t max_rows)
{
    size_t n;
    const uint32_t *slots = slots_by_id(e, &n);
    size_t rows = 0, stop = j->cursor + max_spaces < n ? j->cursor + max_spaces : n;
    for (; j->cursor < stop && rows < max_rows; j->cursor++) {
        if (j->cursor + 8 < n) __builtin_prefetch(&e->spaces[slots[j->cursor + 8]].rows);
        ff__space *s = &e->spaces[slots[j->cursor]];
        ff__rows_settle(&s->rows, j->to, SIZE_MAX);
        size_t k = sealable(&s->rows, j->to);
        if (!k) continue;
        ff__row *mem = ff__rows_pin(&s->rows, k); /* may move the rows: first */
        j->sp = ff_xgrow(j->sp, &j->capsp, j->nsp + 1, sizeof(*j->sp));
        j->sp[j->nsp++] = (job_space){.id = s->def.id,
                                      .slot = slots[j->cursor],
                                      .last_occ = s->rows.set[k - 1].occ,
                                      .base = s->rows.base,
                                      .row = s->rows.set,
                                      .n = k,
                                      .last_ts = s->rows.set[k - 1].ts,
                                      .mem = mem};
        j->nrows += k;
        rows += k;
    }
    j->captured = j->cursor == n;
}

/* A seal of every row with ts <= to, captured at once. NULL if none. */
static ff_seal_job *seal_job(ff_engine *e, int64_t to)
{
    ff_seal_job *j = seal_job_new(e, to);
    capture_step(e, j, SIZE_MAX, SIZE_MAX);
    if (j->nrows) return j;
    e->settled_since_seal = 0; /* nothing to seal after all */
    job_free(e, j);
    return NULL;
}

/*
 * Commit jobs (seal_async). Committing a seal, a merge or a batch of amendments took the
 * loop 2-150 ms, most of it waiting on the disk: a log sync, the checkpoint's write,
 * fsync, rename and directory fsync, then the unlinks of replaced segments and released
 * log files (a 64 MiB log file took 20-30 ms to unlink). With seal_async none of that
 * runs on the engine's thread: an end leaves amend_pending, and the next
 * ff_engine_seal_begin hands out a commit job. Its begin encodes the checkpoint of the
 * engine as it is then (ff__ckpt_prepare: the state after every record up to lsn =
 * written); its run syncs the log up to lsn through a descriptor of its current file,
 * writes the checkpoint, then unlinks the replaced segments and the log files it made
 * redundant; its end records the new checkpoint. Nothing acknowledged depends on a
 * checkpoint (the log holds it), so a commit may come late: it only has to be the
 * only writer of the checkpoint (one job at a time; the synchronous commits of
 * ingest and the tick are off with seal_async), and every segment file it names must
 * stay until a later checkpoint drops it, which in_ck, set here at begin, ensures.
 */
static ff_seal_job *commit_job(ff_engine *e)
{
    ff_seal_job *j = ff_xcalloc(1, sizeof(*j));
    j->commit = true;
    j->to = FF_TS_MIN;
    j->dir = ff_xmalloc(strlen(e->seg_dir) + 1);
    strcpy(j->dir, e->seg_dir);
    ff__ckpt_prepare(e, &j->ck);
    j->garbage = e->garbage, j->ngarbage = e->ngarbage;
    e->garbage = NULL, e->ngarbage = e->capgarbage = 0;
    for (size_t i = 0; i < e->nsegs; i++) e->segs[i].in_ck = true;
    e->amend_pending = false;
    return j;
}

static int commit_run(ff_seal_job *j)
{
    int rc = ff__ckpt_run(&j->ck);
    if (rc < 0 || !j->ngarbage) return rc;
    int dfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return 0; /* committed: files left are removed at the next open */
    for (size_t i = 0; i < j->ngarbage; i++) {
        char name[FF_SEG_NAME_MAX];
        ff_seg_name(name, j->garbage[i].start, j->garbage[i].end, j->garbage[i].version);
        unlinkat(dfd, name, 0);
    }
    fsync(dfd);
    close(dfd);
    return 0;
}

static int commit_end(ff_engine *e, ff_seal_job *j, int rc)
{
    rc = ff__ckpt_done(e, &j->ck, rc);
    if (rc == 0) {
        for (size_t i = 0; i < e->nsegs; i++) ff_seg_drop_pages(e->segs[i].seg); /* Residency */
    } else {                                                                     /* retried */
        e->amend_pending = true;
        e->commit_failed = true;
        for (size_t i = 0; i < j->ngarbage; i++) {
            e->garbage = ff_xgrow(e->garbage, &e->capgarbage, e->ngarbage + 1, sizeof(*e->garbage));
            e->garbage[e->ngarbage++] = j->garbage[i];
        }
    }
    job_free(e, j);
    return rc;
}

static int copy_pair(const ff_seg *sa, const ff_seg *sb, ff_seg_writer *w);

static int job_run(ff_seal_job *j)
{
    if (j->commit) return commit_run(j);
    ff_seg_writer *w;
    int rc = ff_seg_writer_open(&w, j->dir, j->name, NULL);
    if (rc < 0) return rc;
    if (j->merge)
        rc = copy_pair(j->a.seg, j->b.seg, w);
    else
        for (size_t i = 0; i < j->nsp && rc == 0; i++) {
            const job_space *x = &j->sp[i];
            j->conv = ff_xgrow(j->conv, &j->capconv, x->n, sizeof(*j->conv));
            for (size_t r = 0; r < x->n; r++) j->conv[r] = seg_row_of(&x->row[r]);
            rc = ff_seg_writer_add_space(w, x->id, x->base, j->conv, x->n);
        }
    if (rc < 0) {
        ff_seg_writer_abort(w);
        return rc;
    }
    rc = ff_seg_writer_finish(w, NULL, NULL);
    if (rc < 0) return rc;
    char path[4096]; /* opened here: at 100,000 spaces its footer took the loop 3 ms */
    snprintf(path, sizeof(path), "%s/%s", j->dir, j->name);
    return ff_seg_open(path, &j->seg, j->err, sizeof(j->err));
}

#ifndef NDEBUG
/* Whether each space holds exactly the rows the job copied, space by space (debug
 * builds: the tests check seal_still_valid's reasoning with it). */
static bool rows_unchanged(const ff_engine *e, const ff_seal_job *j)
{
    for (size_t i = 0; i < j->nsp; i++) {
        const ff__space *s = ff__space_find(e, j->sp[i].id);
        if (!s || s != &e->spaces[j->sp[i].slot] || s->rows.base != j->sp[i].base) return false;
        size_t k = sealable(&s->rows, j->to);
        if (k != j->sp[i].n || s->rows.set[k - 1].ts != j->sp[i].last_ts) return false;
    }
    return true;
}
#endif

/* Whether every space still holds exactly the rows the seal job copied: nothing at or
 * before `to` was applied (seal_dirty, see Capturing) and the topology is the same.
 * O(1): checking each space instead cost 10-17 ms of the loop at 100,000 spaces. */
static bool seal_still_valid(const ff_engine *e, const ff_seal_job *j)
{
    if (e->seal_dirty || e->h < j->to || e->topo_gen != j->topo_gen) return false;
    if ((e->nsegs ? e->segs[e->nsegs - 1].end + 1 : FF_TS_MIN) != j->start) return false;
    FF_DEBUG_ASSERT(rows_unchanged(e, j));
    return true;
}

/*
 * Closes a segment the engine no longer uses. A merge job's worker may still be reading
 * its two segments (a late event may rewrite one meanwhile; the job's end then sees the
 * new version and discards the merge): those are closed when the job ends.
 */
static void close_seg(ff_engine *e, ff_seg *seg)
{
    const ff_seal_job *j = e->job;
    if (j && j->merge && (seg == j->a.seg || seg == j->b.seg)) {
        e->deferred =
            ff_xgrow(e->deferred, &e->capdeferred, e->ndeferred + 1, sizeof(*e->deferred));
        e->deferred[e->ndeferred++] = seg;
        return;
    }
    ff_seg_close(seg);
}

static void retire(ff_engine *e, size_t i);

/* Position of the live segment with id `id`, or -1. */
static ptrdiff_t pos_of_id(const ff_engine *e, uint32_t id)
{
    for (size_t i = 0; i < e->nsegs; i++)
        if (e->segs[i].id == id) return (ptrdiff_t)i;
    return -1;
}

/* The end of a seal job on the engine's thread. Returns 0, -EAGAIN (discarded), -EINTR
 * (a test's crash point) or an error (nothing changed). */
static int seal_end(ff_engine *e, ff_seal_job *j)
{
    if (!seal_still_valid(e, j)) {
        job_unlink(j);
        return -EAGAIN;
    }
    push_segref(e, j->seg, j->start, j->to, 1, false);
    j->seg = NULL; /* the engine's now */
    for (size_t i = 0; i < j->nsp; i++) {
        if (i + 8 < j->nsp) __builtin_prefetch(&e->spaces[j->sp[i + 8].slot].rows);
        job_space *x = &j->sp[i];
        ff__space *s = &e->spaces[x->slot];
        ff__rows_release(&s->rows, x->mem);
        x->mem = NULL;
        drop_sealed(s, x->n, x->last_ts, x->last_occ);
    }
    e->sealed_upto = j->to;
    e->segments_sealed++;
    e->merge_scan = true;
    e->settled_since_seal -=
        j->settled < e->settled_since_seal ? j->settled : e->settled_since_seal;
    if (stop_at(FF__STOP_SEGMENT)) return -EINTR;
    e->amend_pending = true;       /* committed below, or retried by the next tick */
    if (e->o.seal_async) return 0; /* by a commit job: ff_engine_seal_begin */
    int rc = ff__seal_commit(e);
    return rc == -EINTR ? rc : 0; /* a failed commit is retried: the seal stands */
}

static int merge_end(ff_engine *e, ff_seal_job *j)
{
    ptrdiff_t i = pos_of_id(e, j->a.id);
    if (i < 0 || (size_t)i + 1 >= e->nsegs || e->segs[i].version != j->a.version ||
        e->segs[i + 1].id != j->b.id || e->segs[i + 1].version != j->b.version ||
        e->segs[i].start != j->start || e->segs[i + 1].end != j->to) {
        job_unlink(j);
        return -EAGAIN;
    }
    if (stop_at(FF__STOP_MERGE)) return -EINTR;
    ff_seg *seg = j->seg;
    j->seg = NULL; /* the engine's now */
    retire(e, (size_t)i);
    retire(e, (size_t)i + 1);
    e->segs[i] =
        (ff__segref){.seg = seg, .id = j->a.id, .start = j->start, .end = j->to, .version = 1};
    memmove(&e->segs[i + 1], &e->segs[i + 2], (e->nsegs - (size_t)i - 2) * sizeof(*e->segs));
    e->nsegs--;
    e->segments_merged++;
    e->amend_pending = true; /* committed like an amendment */
    return e->o.seal_async ? 0 : ff__seal_commit(e);
}

/* Notes why run failed (ff_engine_seal_error): for a commit the file it was writing (or
 * the log it synced); else run's own message (the new segment does not open), else the
 * corrupt segment a merge read, else the file it was writing. On the engine's thread:
 * queries may be reading the same segments' messages. */
static void note_error(ff_engine *e, const ff_seal_job *j, int rc)
{
    const char *m = j->err;
    if (!m[0] && j->merge && rc == FF_ECORRUPT)
        m = ff_seg_error(j->a.seg)[0] ? ff_seg_error(j->a.seg) : ff_seg_error(j->b.seg);
    if (j->commit && !strcmp(j->ck.failed, "log"))
        snprintf(e->job_err, sizeof(e->job_err), "%s: the log's fdatasync for a checkpoint: %s",
                 j->ck.dir, ff_strerror(rc));
    else if (j->commit)
        snprintf(e->job_err, sizeof(e->job_err), "%s%s%s: %s", j->ck.dir,
                 j->ck.failed[0] ? "/" : "", j->ck.failed, ff_strerror(rc));
    else if (m[0])
        snprintf(e->job_err, sizeof(e->job_err), "%s", m);
    else
        snprintf(e->job_err, sizeof(e->job_err), "%s/%s: %s", j->dir, j->name, ff_strerror(rc));
}

static int job_end(ff_engine *e, ff_seal_job *j, int rc)
{
    FF_ASSERT(e->job == j);
    e->job = NULL;
    e->job_err[0] = '\0';
    if (rc < 0) note_error(e, j, rc); /* before the deferred segments close */
    for (size_t i = 0; i < e->ndeferred; i++) ff_seg_close(e->deferred[i]);
    e->ndeferred = 0;
    if (j->commit) return commit_end(e, j, rc);
    if (rc == 0)
        rc = j->merge ? merge_end(e, j) : seal_end(e, j);
    else
        job_unlink(j);
    if (rc == -EAGAIN) e->seal_jobs_discarded++;
    if (rc == -EAGAIN && !j->merge) e->seal_sync_next = true;
    if (rc == 0 && !j->merge) e->seal_sync_next = false;
    job_free(e, j);
    return rc;
}

static ff_seal_job *job_begin(ff_engine *e, ff_seal_job *j)
{
    if (!j) return NULL;
    e->job = j;
    e->seal_dirty = false;
    e->seal_to = j->merge || j->commit ? FF_TS_MIN : j->to;
    return j;
}

/* Where a seal would end: H, or seal_lag_us before it (FF_TS_MIN: nothing to seal). */
static int64_t seal_target(const ff_engine *e)
{
    int64_t to;
    if (e->h == FF_TS_MIN || __builtin_sub_overflow(e->h, e->o.seal_lag_us, &to)) return FF_TS_MIN;
    return to;
}

/* Whether a seal is due at wall-clock time now. */
static bool seal_due(const ff_engine *e, int64_t now)
{
    if (!e->seg_dir || !e->settled_since_seal || seal_target(e) <= e->sealed_upto) return false;
    uint64_t rows = e->o.seal_rows ? e->o.seal_rows : FF_SEAL_ROWS;
    int64_t age = e->o.seal_age_us > 0 ? e->o.seal_age_us : FF_SEAL_AGE;
    return e->settled_since_seal >= rows || now - e->last_seal >= age;
}

/* A seal (or merge) done at once on the engine's thread: begin, run, end. */
static int job_sync(ff_engine *e, ff_seal_job *j)
{
    if (!job_begin(e, j)) return 0;
    return job_end(e, j, job_run(j));
}

void ff__seal_tick(ff_engine *e, int64_t now)
{
    if (e->job) return; /* the caller's job ends first */
    if (e->amend_pending && !e->o.seal_async && ff__seal_commit(e) == -EINTR) return; /* a retry */
    if (e->o.seal_async && !e->seal_sync_next) return; /* ff_engine_seal_begin's work */
    if (e->merge_scan) merge_some(e, true);
    if (!seal_due(e, now)) return;
    int rc = job_sync(e, seal_job(e, seal_target(e)));
    if (rc == -EINTR) return;            /* a test's crash point: the engine is closed next */
    if (rc < 0 && rc != -EAGAIN) return; /* retried next time */
    e->last_seal = now;
}

/* Drops a capture that has not been handed out (a discarded one, or at close). */
static void capture_drop(ff_engine *e, bool discarded)
{
    ff_seal_job *j = e->job;
    e->job = NULL;
    if (discarded) {
        e->seal_jobs_discarded++;
        e->seal_sync_next = true; /* as at a discarded job's end */
    }
    job_free(e, j);
}

/* One step of the capture in progress: 1 with *out once it is complete. */
static int capture_more(ff_engine *e, ff_seal_job **out)
{
    ff_seal_job *j = e->job;
    if (e->seal_dirty || e->topo_gen != j->topo_gen) { /* would be discarded at its end */
        capture_drop(e, true);
        return 0;
    }
    capture_step(e, j, ff__seal_capture_spaces, CAPTURE_ROWS);
    if (!j->captured) return 0;
    if (!j->nrows) {
        e->settled_since_seal = 0; /* nothing to seal after all */
        capture_drop(e, false);
        return 0;
    }
    *out = j;
    return 1;
}

bool ff_engine_seal_capturing(const ff_engine *e)
{
    return e->job && !e->job->merge && !e->job->commit && !e->job->captured;
}

bool ff_engine_seal_stepping(const ff_engine *e)
{
    return ff_engine_seal_capturing(e) ||
           (e->seg_dir && !e->job && e->amend_pending && !e->commit_failed);
}

void ff__seal_abandon(ff_engine *e)
{
    if (ff_engine_seal_capturing(e)) capture_drop(e, false);
}

int ff_engine_seal_begin(ff_engine *e, ff_seal_job **out)
{
    *out = NULL;
    if (!e->seg_dir) return 0;
    if (ff_engine_seal_capturing(e)) return capture_more(e, out);
    if (e->job) return 0;
    int64_t now = ff__now(e);
    /* A commit first, but never two in a row while a seal is due: late events into sealed
     * history arriving during every commit would otherwise starve sealing. */
    bool seal_turn = e->committed_last && seal_due(e, now);
    if (e->amend_pending && !e->commit_failed && !seal_turn) {
        e->committed_last = true;
        *out = job_begin(e, commit_job(e));
        return 1;
    }
    e->committed_last = false;
    if (seal_due(e, now)) {
        e->last_seal = now;
        job_begin(e, seal_job_new(e, seal_target(e)));
        return capture_more(e, out);
    }
    if (e->merge_scan) merge_some(e, false);
    *out = e->job;
    return *out != NULL;
}

int ff_engine_seal_run(ff_seal_job *job)
{
    return job_run(job);
}

int ff_engine_seal_end(ff_engine *e, ff_seal_job *job, int rc)
{
    rc = job_end(e, job, rc);
    return rc == -EAGAIN ? 0 : rc;
}

const char *ff_engine_seal_error(const ff_engine *e)
{
    return e->job_err;
}

/* ---- amending sealed history ---- */

/* The live segment whose window holds ts (windows tile [FF_TS_MIN, sealed_upto]). */
static size_t window_of(const ff_engine *e, int64_t ts)
{
    size_t lo = 0, hi = e->nsegs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (e->segs[mid].end < ts)
            lo = mid + 1;
        else
            hi = mid;
    }
    FF_ASSERT(lo < e->nsegs && e->segs[lo].start <= ts);
    return lo;
}

typedef struct rowbuf {
    ff_seg_row *r;
    size_t n, cap;
} rowbuf;

static int collect(void *ctx, const ff_seg_row *row)
{
    rowbuf *b = ctx;
    b->r = ff_xgrow(b->r, &b->cap, b->n + 1, sizeof(*b->r));
    b->r[b->n++] = *row;
    return 0;
}

/* The change to one space of one segment: insert `row` (when has_row) and refold every
 * row of the space in the segment from occ_before. */
typedef struct amend {
    const ff__space *s;
    bool has_row;
    ff_seg_row row;
    int64_t occ_before;
    int64_t last_occ; /* out: the space's occupancy after its rows in the new version */
} amend;

static void amend_rows(rowbuf *b, amend *a)
{
    if (a->has_row) {
        ff_seg_key k = {a->row.ts, a->row.dpu_id, a->row.seq, a->row.direction};
        size_t p = b->n;
        while (p > 0 && ff_seg_key_cmp(&b->r[p - 1], &k) > 0) p--;
        collect(b, &a->row);
        memmove(&b->r[p + 1], &b->r[p], (b->n - 1 - p) * sizeof(*b->r));
        b->r[p] = a->row;
    }
    int64_t occ = a->occ_before;
    for (size_t i = 0; i < b->n; i++)
        occ = b->r[i].occupancy = ff__fold(occ, b->r[i].delta, a->s->rows.clamp);
    a->last_occ = occ;
}

/* Copies every space of segment g into writer w, applying a to its space. */
static int copy_amended(const ff_engine *e, size_t g, ff_seg_writer *w, amend *a)
{
    const ff_seg *seg = e->segs[g].seg;
    ff_seg_info info;
    ff_seg_get_info(seg, &info);
    rowbuf b = {0};
    int rc = 0;
    bool done = false;
    uint32_t id = a->s->def.id;
    for (uint32_t i = 0; i <= info.spaces && rc == 0; i++) {
        ff_seg_space si = {0};
        bool last = i == info.spaces;
        if (!last) ff_seg_space_at(seg, i, &si);
        bool here = !last && si.space_id == id;
        if (!done && (last || id <= si.space_id)) { /* the amended space goes here */
            done = true;
            b.n = 0;
            if (here) rc = ff_seg_rows(seg, id, FF_TS_MIN, FF_TS_MAX, NULL, collect, &b);
            if (rc == 0) amend_rows(&b, a);
            if (rc == 0) rc = ff_seg_writer_add_space(w, id, a->occ_before, b.r, b.n);
        }
        if (last || here || rc) continue;
        b.n = 0;
        rc = ff_seg_rows(seg, si.space_id, FF_TS_MIN, FF_TS_MAX, NULL, collect, &b);
        if (rc == 0) rc = ff_seg_writer_add_space(w, si.space_id, si.occ_before, b.r, b.n);
    }
    free(b.r);
    return rc;
}

/* Replaces segment g by its next version with a applied. The old file stays while the
 * checkpoint names it (removed by the next commit), else it is removed now. */
static int rewrite(ff_engine *e, size_t g, amend *a)
{
    ff__segref *ref = &e->segs[g];
    char name[FF_SEG_NAME_MAX], old[FF_SEG_NAME_MAX], path[4096], err[FF_SEG_ERRLEN];
    ff_seg_name(name, ref->start, ref->end, ref->version + 1);
    ff_seg_name(old, ref->start, ref->end, ref->version);
    ff_seg_writer *w;
    int rc = ff_seg_writer_open(&w, e->seg_dir, name, NULL);
    if (rc < 0) return rc;
    rc = copy_amended(e, g, w, a);
    if (rc < 0) {
        ff_seg_writer_abort(w);
        return rc;
    }
    rc = ff_seg_writer_finish(w, ref->in_ck ? NULL : old, NULL);
    if (rc == 0 && ref->in_ck) {
        e->garbage = ff_xgrow(e->garbage, &e->capgarbage, e->ngarbage + 1, sizeof(*e->garbage));
        e->garbage[e->ngarbage++] =
            (ff__segref){.start = ref->start, .end = ref->end, .version = ref->version};
    }
    snprintf(path, sizeof(path), "%s/%s", e->seg_dir, name);
    ff_seg *seg;
    if (rc == 0) rc = ff_seg_open(path, &seg, err, sizeof(err));
    if (rc < 0) return rc;
    close_seg(e, ref->seg);
    ref->seg = seg;
    ref->version++;
    ref->in_ck = false;
    if (ref->archived) { /* replayed into an archive copy: the new version is local */
        ref->archived = false;
        ff__arc_recount(e);
    }
    e->segments_sealed++;
    e->segments_rewritten++;
    e->amend_pending = true;
    return 0;
}

/* Rewrites segment g with a applied. */
static void amend_seg(ff_engine *e, size_t g, amend *a)
{
    int rc = rewrite(e, g, a);
    if (rc < 0) /* memory would no longer match the log; a restart replays it */
        FF_PANIC("cannot rewrite segment %s: %s", ff_seg_path(e->segs[g].seg), ff_strerror(rc));
}

/* The rows of s in the segment at position g, from its footer: 0 or FF_ENOTFOUND. */
static int space_in(const ff_engine *e, size_t g, const ff__space *s, ff_seg_space *si)
{
    return ff_seg_space_info(e->segs[g].seg, s->def.id, si);
}

/* The occupancy of s before the segment at position g: after its rows in the latest
 * earlier segment holding it, 0 if none does. */
static int64_t occ_before_seg(const ff_engine *e, const ff__space *s, size_t g)
{
    ff_seg_space si;
    while (g-- > 0)
        if (space_in(e, g, s, &si) == 0) return si.last_occ;
    return 0;
}

void ff__seal_amend(ff_engine *e, ff__space *s, const ff__row *row)
{
    size_t g = window_of(e, row->ts);
    ff_seg_space si;
    bool had = space_in(e, g, s, &si) == 0;
    amend a = {.s = s, .has_row = true, .row = seg_row_of(row)};
    a.occ_before = had ? si.occ_before : occ_before_seg(e, s, g);
    int64_t was = had ? si.last_occ : a.occ_before; /* what later segments continue from */
    amend_seg(e, g, &a);
    s->sealed_rows++;
    if (row->ts > s->sealed_last_ts) s->sealed_last_ts = row->ts;
    int64_t occ = a.last_occ;
    size_t k = g + 1;
    for (; k < e->nsegs && was != occ; k++) { /* refold the later segments holding s */
        if (space_in(e, k, s, &si) != 0) continue;
        was = si.last_occ;
        amend next = {.s = s, .occ_before = occ};
        amend_seg(e, k, &next);
        occ = next.last_occ;
    }
    if (k == e->nsegs && s->rows.base != occ) ff__rows_rebase(&s->rows, occ);
}

/* ---- merging old segments ---- */

/* Writes the rows of segments sa and sb (adjacent windows) into writer w, space by
 * space. Reads only the two mapped files: safe on any thread while they stay open. */
static int copy_pair(const ff_seg *sa, const ff_seg *sb, ff_seg_writer *w)
{
    ff_seg_info ia, ib;
    ff_seg_get_info(sa, &ia);
    ff_seg_get_info(sb, &ib);
    rowbuf b = {0};
    int rc = 0;
    for (uint32_t x = 0, y = 0; rc == 0 && (x < ia.spaces || y < ib.spaces);) {
        ff_seg_space pa = {0}, pb = {0};
        if (x < ia.spaces) ff_seg_space_at(sa, x, &pa);
        if (y < ib.spaces) ff_seg_space_at(sb, y, &pb);
        bool ua = x < ia.spaces && (y == ib.spaces || pa.space_id <= pb.space_id);
        bool ub = y < ib.spaces && (x == ia.spaces || pb.space_id <= pa.space_id);
        uint32_t id = ua ? pa.space_id : pb.space_id;
        b.n = 0;
        if (ua) rc = ff_seg_rows(sa, id, FF_TS_MIN, FF_TS_MAX, NULL, collect, &b);
        if (ub && rc == 0) rc = ff_seg_rows(sb, id, FF_TS_MIN, FF_TS_MAX, NULL, collect, &b);
        if (rc == 0)
            rc = ff_seg_writer_add_space(w, id, ua ? pa.occ_before : pb.occ_before, b.r, b.n);
        x += ua;
        y += ub;
    }
    free(b.r);
    return rc;
}

/* Drops the segment at position i from memory; its file goes now, or after the next
 * checkpoint when the last one names it. */
static void retire(ff_engine *e, size_t i)
{
    ff__segref *r = &e->segs[i];
    if (r->in_ck) {
        e->garbage = ff_xgrow(e->garbage, &e->capgarbage, e->ngarbage + 1, sizeof(*e->garbage));
        e->garbage[e->ngarbage++] =
            (ff__segref){.start = r->start, .end = r->end, .version = r->version};
    } else {
        char name[FF_SEG_NAME_MAX], path[4096];
        ff_seg_name(name, r->start, r->end, r->version);
        snprintf(path, sizeof(path), "%s/%s", e->seg_dir, name);
        unlink(path);
    }
    close_seg(e, r->seg);
}

static uint64_t seg_rows(const ff_seg *seg)
{
    ff_seg_info info;
    ff_seg_get_info(seg, &info);
    return info.rows;
}

/* A merge of the segments at positions i and i+1 into one covering both windows. */
static ff_seal_job *merge_job(ff_engine *e, size_t i)
{
    ff_seal_job *j = job_new(e, true, e->segs[i].start, e->segs[i + 1].end);
    j->a = e->segs[i];
    j->b = e->segs[i + 1];
    return j;
}

/* One merge of the first adjacent pair that fits: done at once (sync), or begun as the
 * engine's job. Pairs of similar size only (the later one at least half the earlier),
 * so merging works like a binary counter: each row is rewritten about log2(most /
 * seal_rows) times, and about history / most + log2(most / seal_rows) segments live. */
static void merge_some(ff_engine *e, bool sync)
{
    uint64_t rows = e->o.seal_rows ? e->o.seal_rows : FF_SEAL_ROWS;
    uint64_t most = e->o.seal_merge_rows ? e->o.seal_merge_rows : 16 * rows;
    for (size_t i = 0; i + 1 < e->nsegs; i++) {
        if (e->segs[i].archived || e->segs[i + 1].archived) continue; /* engine/archive.c */
        uint64_t a = seg_rows(e->segs[i].seg), b = seg_rows(e->segs[i + 1].seg);
        if (a + b > most || 2 * b < a) continue;
        if (sync)
            job_sync(e, merge_job(e, i)); /* a failure is retried by a later tick */
        else
            job_begin(e, merge_job(e, i));
        return;
    }
    e->merge_scan = false;
}

int ff_engine_checkpoint(ff_engine *e)
{
    if (!e->seg_dir) return 0;
    FF_ASSERT(!e->job); /* a commit job may be writing the checkpoint */
    int rc = ff_log_sync(e->log);
    return rc ? rc : commit(e, ff_log_written(e->log));
}

int ff_engine_commit(ff_engine *e)
{
    if (!e->seg_dir || e->job) return 0;
    return ff__seal_commit(e);
}

int ff__seal_job_kind(const ff_seal_job *j)
{
    return j->commit ? FF__JOB_COMMIT : j->merge ? FF__JOB_MERGE : FF__JOB_SEAL;
}

int ff__seal_commit(ff_engine *e)
{
    if (!e->amend_pending) return 0;
    if (stop_at(FF__STOP_AMEND)) return -EINTR;
    int rc = ff_log_sync(e->log);
    if (rc == 0) rc = commit(e, ff_log_written(e->log));
    if (rc == 0) e->amend_pending = false;
    return rc;
}

/* ---- reading across segments and memory ---- */

/*
 * count-at-T in sealed history: the segment whose window holds t, then, while the space
 * has no row there at or before t, the previous one (a busy space stops at the first;
 * one silent for a long time walks back a segment per merged stretch of history). Each
 * step is a binary search in a footer, from the page cache.
 */
int ff__space_occ_at(const ff_engine *e, const ff__space *s, int64_t t, int64_t *occ)
{
    const ff__rows *r = &s->rows;
    size_t i = t == FF_TS_MAX ? ff__rows_n(r) : ff__rows_lower_ts(r, t + 1);
    if (i > 0 || s->sealed_rows == 0 || t >= s->sealed_last_ts) {
        *occ = i == 0 && s->sealed_rows == 0 ? 0 : ff__rows_occ_before(r, i);
        return 0;
    }
    for (size_t g = window_of(e, t) + 1; g-- > 0;) {
        ff_seg_space si;
        if (space_in(e, g, s, &si) != 0) continue;
        if (t < si.first_ts) { /* only in t's own window: rows of s come later in it */
            *occ = si.occ_before;
            return 0;
        }
        if (t >= si.last_ts) {
            *occ = si.last_occ;
            return 0;
        }
        bool found;
        return ff_seg_count_at(e->segs[g].seg, s->def.id, t, occ, &found);
    }
    *occ = 0;
    return 0;
}

typedef struct scan_ctx {
    ff__row_cb cb;
    void *ctx;
} scan_ctx;

static int seg_row_cb(void *ctx, const ff_seg_row *r)
{
    scan_ctx *sc = ctx;
    int64_t o = r->occupancy;
    ff__row x = {.ts = r->ts,
                 .dpu = r->dpu_id,
                 .seq = r->seq,
                 .dir = r->direction,
                 .delta = r->delta,
                 .occ = (int32_t)(o > INT32_MAX   ? INT32_MAX
                                  : o < INT32_MIN ? INT32_MIN
                                                  : o)};
    return sc->cb(sc->ctx, &x);
}

static int scan_sealed(const ff_engine *e, const ff__space *s, int64_t start, int64_t end,
                       const ff_row_key *after, scan_ctx *sc)
{
    ff_seg_key ak, *ap = NULL;
    if (after) {
        ak = (ff_seg_key){.ts = after->ts,
                          .dpu_id = after->dpu_id,
                          .seq = after->seq,
                          .direction = after->direction};
        ap = &ak;
    }
    int64_t from = after && after->ts > start ? after->ts : start;
    if (from > e->sealed_upto) return 0;
    for (size_t g = window_of(e, from); g < e->nsegs && e->segs[g].start < end; g++) {
        int rc = ff_seg_rows(e->segs[g].seg, s->def.id, start, end, ap, seg_row_cb, sc);
        if (rc && rc != FF_ENOTFOUND) return rc;
    }
    return 0;
}

int ff__space_scan(const ff_engine *e, const ff__space *s, int64_t start, int64_t end,
                   const ff_row_key *after, ff__row_cb cb, void *ctx)
{
    scan_ctx sc = {.cb = cb, .ctx = ctx};
    if (s->sealed_rows && start <= e->sealed_upto) {
        int rc = scan_sealed(e, s, start, end, after, &sc);
        if (rc) return rc;
    }
    const ff__rows *r = &s->rows;
    size_t i = ff__rows_lower_ts(r, start), n = ff__rows_n(r);
    if (after) {
        size_t j = ff__rows_upper(r, after);
        if (j > i) i = j;
    }
    for (; i < n; i++) {
        const ff__row *x = ff__rows_at(r, i);
        if (x->ts >= end) break;
        int rc = cb(ctx, x);
        if (rc) return rc;
    }
    return 0;
}

bool ff__space_sealed_has(const ff_engine *e, const ff__space *s, const ff_row_key *k)
{
    if (s->sealed_rows == 0 || k->ts > s->sealed_last_ts) return false;
    ff_seg_key sk = {.ts = k->ts, .dpu_id = k->dpu_id, .seq = k->seq, .direction = k->direction};
    return ff_seg_find(e->segs[window_of(e, k->ts)].seg, s->def.id, &sk, NULL) == 1;
}

void ff__space_totals(const ff__space *s, uint64_t *rows, int64_t *latest_ts, int64_t *occ)
{
    size_t n = ff__rows_n(&s->rows);
    *rows = s->sealed_rows + n;
    if (n) {
        const ff__row *last = ff__rows_at(&s->rows, n - 1);
        *latest_ts = last->ts;
        *occ = last->occ;
    } else if (s->sealed_rows) {
        *latest_ts = s->sealed_last_ts;
        *occ = s->rows.base;
    } else {
        *latest_ts = FF_TS_MIN;
        *occ = 0;
    }
}

/* ---- invariants ---- */

static void check_space(const ff_engine *e, const ff__space *s)
{
    uint64_t rows = 0;
    int64_t occ = 0, last_ts = FF_TS_MIN;
    for (size_t g = 0; g < e->nsegs; g++) {
        ff_seg_space si;
        if (space_in(e, g, s, &si) != 0) continue;
        FF_ASSERT(si.first_ts <= si.last_ts); /* S2 */
        FF_ASSERT(si.first_ts >= e->segs[g].start && si.last_ts <= e->segs[g].end);
        FF_ASSERT(si.occ_before == occ); /* S3 */
        occ = si.last_occ;
        last_ts = si.last_ts;
        rows += si.rows;
    }
    FF_ASSERT(s->rows.base == occ);
    FF_ASSERT(rows == s->sealed_rows); /* S4 */
    FF_ASSERT(rows == 0 || s->sealed_last_ts == last_ts);
    if (ff__rows_n(&s->rows)) FF_ASSERT(ff__rows_at(&s->rows, 0)->ts > e->sealed_upto);
}

void ff__seal_check(const ff_engine *e)
{
    for (size_t i = 0; i < e->nsegs; i++) { /* S1 */
        const ff__segref *g = &e->segs[i];
        FF_ASSERT(g->start <= g->end);
        FF_ASSERT(g->start == (i == 0 ? FF_TS_MIN : e->segs[i - 1].end + 1));
        FF_ASSERT(i == 0 || e->segs[i - 1].id < g->id);
        ff_seg_info info; /* S5 */
        ff_seg_get_info(g->seg, &info);
        FF_ASSERT(!info.stub || (g->archived && g->end <= e->stub_upto));
        FF_ASSERT(!g->archived || g->end <= e->archived_upto);
    }
    FF_ASSERT(e->nsegs ? e->segs[e->nsegs - 1].end == e->sealed_upto : e->sealed_upto == FF_TS_MIN);
    for (size_t i = 0; i < e->nspaces; i++)
        if (e->spaces[i].live) check_space(e, &e->spaces[i]);
}
