/*
 * checkpoint.c -- the checkpoint: one small file that says what the segments hold, so
 * that recovery = open the segments it names + replay the log records it does not cover.
 *
 * FILE <data_dir>/checkpoint.ffc, little-endian, written whole and renamed into place:
 *
 *   0   8  magic "FFCKPT\0\1"
 *   8   4  version (3)
 *   12  4  zero
 *   16  8  B: body length
 *   24  8  XXH3_64bits of the body
 *   32  B  body:
 *            i64 sealed_upto   every row with ts <= this is in the segments below
 *            u64 lsn (L)       the log position covered: the state below is the state
 *                              after every log record with LSN <= L
 *            i64 H, i64 max_ts
 *            u32 n, then n segments: i64 start, i64 end, u32 version (names, see
 *                storage/segment.h), ascending and disjoint
 *            u32 n, then n spaces with a non-zero revision: u32 id, u64 revision
 *            u64 T: the topology snapshot (below) that holds the topology as of L
 *            u32 n, then n DPUs with orphan rows (events counted in no space) with
 *                ts <= sealed_upto: u32 dpu id, u32 k, then k events of 16 bytes
 *                (ff_event, reserved 0) in canonical order
 *
 * FILE <data_dir>/topology-<T as 16 hex digits>.fft, the same 32-byte header with magic
 * "FFTOPO\0\1" and version 1, then: u32 n, then n topology operations: u32 len, len
 * bytes (FF_LOG_TOPO payloads that rebuild spaces, doorways and every DPU version on an
 * empty engine). The topology of 10 million DPUs is hundreds of MB while it seldom
 * changes, so it is written only when it changed since the last snapshot (a new number,
 * before the checkpoint that names it); a checkpoint otherwise names the snapshot it had.
 * Snapshots the checkpoint on disk does not name are removed (after a commit, and at
 * open).
 *
 * SNAPSHOT NUMBERS are never reused once a rename may have used them. A commit whose
 * checkpoint was renamed into place but whose directory fsync then failed has failed
 * (it is retried), yet checkpoint.ffc names its snapshot T now, and may still after a
 * crash. Were the retry, after a topology change, to write its snapshot as T again, it
 * would rename a newer topology over the file that checkpoint names, and a crash before
 * the retry's own checkpoint would leave that checkpoint (position L) with a topology
 * from after L: recovery would apply the topology operations after L twice (a deleted
 * space: the open fails) and attribute the records before L with a later topology. So a
 * new snapshot takes the number after topo_snap_hi, the highest whose rename was ever
 * tried (at open: the highest on disk). A snapshot written whole by a commit that then
 * failed is named again by the retry if the topology has not changed since (topo_spare),
 * so a commit that keeps failing does not write one each time; a commit that succeeds
 * removes every snapshot below the one it names.
 *
 * PROTOCOL of a seal (engine/seal.c), each step durable before the next:
 *   1. the segment: the rows with ts <= to are copied at begin and written by the job
 *      (perhaps on another thread): temp file, fsync, rename, fsync of the directory.
 *   2. at the job's end, if the copied rows are still exactly the engine's: the rows
 *      leave memory (the engine reads them from the mapped segment now).
 *   3. ff_log_sync(); L = ff_log_written(): everything applied so far is at or below L,
 *      and on disk. (Events applied after begin all have ts > to, or step 2 would have
 *      discarded the job: they stay in memory and the log, and replay applies them.)
 *   4. the checkpoint: "checkpoint.ffc.tmp", fsync, rename over checkpoint.ffc, fsync of
 *      the directory. The rename is the commit point of the seal.
 *   5. segment files the new checkpoint no longer names are unlinked; log files it
 *      makes redundant are released (LOG RELEASE below).
 * With seal_async, steps 3 to 5 are a commit job of their own (engine/seal.c): the
 * engine's thread encodes the checkpoint and notes the log files to release
 * (ff__ckpt_prepare), another thread makes the log durable up to L with fdatasync on a
 * descriptor of its current file that the log opened before writing to it (no writeback
 * error since can escape it: storage/log.c, DATASYNC JOBS), does step 4 and unlinks
 * (ff__ckpt_run), and the engine's thread records the result (ff__ckpt_done); a failed
 * fdatasync fails the log, as a failed sync does.
 * A crash before 4 leaves the previous checkpoint, which names neither the new segment
 * nor anything after its L: recovery removes the unnamed segment and replays the log,
 * which still holds every event. A failed step 4 is retried by the next tick.
 * A batch of late events that rewrote sealed segments (engine/seal.c), and a merge, are
 * committed the same way: log sync, then steps 4 and 5.
 *
 * RECOVERY (ff__ckpt_load, then the log replay in engine.c):
 *   - no checkpoint: every segment file is removed (none is committed); replay all.
 *   - a checkpoint with a bad magic, version or checksum fails the open, naming the
 *     file: it is written by rename, so it is never torn, and guessing would lose rows.
 *   - its topology snapshot is applied (missing or corrupt: the open fails, naming it),
 *     its segments opened (a missing or corrupt segment fails
 *     the open with the segment's name: never silently read), the per-space index built
 *     from their footers, revisions, H and max_ts restored; unnamed segment files are
 *     removed (leftovers of a seal or rewrite that did not commit).
 *   - log records with LSN <= L: topology and horizon records are skipped (in the
 *     checkpoint and its snapshot), events with ts <= sealed_upto are skipped (in the
 *     segments, or in the checkpoint's orphan rows), other
 *     events are applied without bumping revisions (counted in the checkpoint already),
 *     attributed with the checkpoint's topology, which gives the same rows since a new
 *     DPU version re-attributes the pending rows after it anyway.
 *   - records with LSN > L are replayed as usual; a late event among them whose ts is
 *     <= sealed_upto is written into the named segment versions again, which never
 *     held it (a rewrite that held it was not committed); the open then commits.
 *   - a log that ends before L lost records the checkpoint relies on: FF_ECORRUPT.
 *   - a log that starts after L (ff_log_start() > L: files the checkpoint does not
 *     cover are gone) or after 0 without a checkpoint: FF_ECORRUPT.
 *
 * LOG RELEASE. A log record is redundant once a durable checkpoint covers it: its LSN
 * is <= L and, for events, its ts <= sealed_upto (then it is in a segment or in the
 * orphan rows above). Events with a later ts are only in memory and the log. To know
 * which records those are without a second pass over the log, the engine keeps coarse
 * chunks of the log (ff__lchunk: from which LSN on, latest event time), one per 1/16
 * of a log file, noted at ingest and rebuilt by replay. After every checkpoint,
 * upto = min(L, first LSN of the first chunk whose max_ts > sealed_upto) - 1 and the
 * log releases every file that ends at or before upto (oldest first, see storage/log.c).
 * So the log holds about the pending window (settle time + one seal interval) plus one
 * file, however long the server runs.
 */
#include "engine/engine_int.h"
#include "storage/file.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define CK_MAGIC   "FFCKPT\0\1"
#define CK_VERSION 3u
#define TP_MAGIC   "FFTOPO\0\1"
#define TP_VERSION 1u
#define CK_HDR     32u
#define CK_NAME    "checkpoint.ffc"

/* ---- writing ---- */

typedef struct obuf {
    unsigned char *p;
    size_t n, cap;
} obuf;

static void put(obuf *b, const void *src, size_t n)
{
    b->p = ff_xgrow(b->p, &b->cap, b->n + n, 1);
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u32(obuf *b, uint32_t v)
{
    put(b, &v, 4);
}

static void put_u64(obuf *b, uint64_t v)
{
    put(b, &v, 8);
}

static int put_topo(void *ctx, const void *payload, uint32_t len)
{
    obuf *b = ctx;
    put_u32(b, len);
    put(b, payload, len);
    return 0;
}

/* The orphan rows with ts <= sealed_upto (a prefix of each DPU's list). */
static void put_orphans(const ff_engine *e, obuf *b)
{
    size_t at = b->n;
    uint32_t ndpus = 0;
    put_u32(b, 0);
    for (size_t i = 0; i < e->ndpus && e->orphan_dpus; i++) { /* 10 M DPUs, seldom orphans */
        const ff__rows *r = e->dpus[i].orphans;
        size_t k = 0;
        while (r && k < ff__rows_n(r) && ff__rows_at(r, k)->ts <= e->sealed_upto) k++;
        if (!k) continue;
        put_u32(b, e->dpus[i].id);
        put_u32(b, (uint32_t)k);
        for (size_t j = 0; j < k; j++) {
            const ff__row *row = ff__rows_at(r, j);
            ff_event ev = {
                .dpu_id = row->dpu, .direction = row->dir, .seq = row->seq, .ts = row->ts};
            put(b, &ev, sizeof(ev));
        }
        ndpus++;
    }
    memcpy(b->p + at, &ndpus, 4);
}

/* Starts a file: magic, version, room for body length and checksum. */
static void put_header(obuf *b, const char *magic, uint32_t version)
{
    put(b, magic, 8);
    put_u32(b, version);
    put_u32(b, 0);
    put_u64(b, 0); /* body length and checksum, filled by finish() */
    put_u64(b, 0);
}

static void finish(obuf *b)
{
    uint64_t blen = b->n - CK_HDR, sum = XXH3_64bits(b->p + CK_HDR, blen);
    memcpy(b->p + 16, &blen, 8);
    memcpy(b->p + 24, &sum, 8);
}

static void encode_topology(const ff_engine *e, obuf *b)
{
    put_header(b, TP_MAGIC, TP_VERSION);
    size_t at = b->n;
    put_u32(b, 0);
    uint32_t nops = 0;
    ff__topo_dump(e, put_topo, b);
    for (size_t off = at + 4; off < b->n; nops++) {
        uint32_t len;
        memcpy(&len, b->p + off, 4);
        off += 4 + len;
    }
    memcpy(b->p + at, &nops, 4);
    finish(b);
}

static void encode(const ff_engine *e, uint64_t lsn, uint64_t snap, obuf *b)
{
    put_header(b, CK_MAGIC, CK_VERSION);
    put_u64(b, (uint64_t)e->sealed_upto);
    put_u64(b, lsn);
    put_u64(b, (uint64_t)e->h);
    put_u64(b, (uint64_t)e->max_ts);
    put_u32(b, (uint32_t)e->nsegs);
    for (size_t i = 0; i < e->nsegs; i++) {
        put_u64(b, (uint64_t)e->segs[i].start);
        put_u64(b, (uint64_t)e->segs[i].end);
        put_u32(b, e->segs[i].version);
    }
    size_t at = b->n;
    uint32_t nrev = 0;
    put_u32(b, 0);
    for (size_t i = 0; i < e->nspaces; i++)
        if (e->spaces[i].live && e->spaces[i].revision) {
            put_u32(b, e->spaces[i].def.id);
            put_u64(b, e->spaces[i].revision);
            nrev++;
        }
    memcpy(b->p + at, &nrev, 4);
    put_u64(b, snap);
    put_orphans(e, b);
    finish(b);
}

static void snap_name(char out[40], uint64_t snap)
{
    snprintf(out, 40, "topology-%016llx.fft", (unsigned long long)snap);
}

/* Writes b as dir/name: "name.tmp", fsync, rename, fsync of the directory; *renamed
 * (may be NULL) is set once the rename is tried. The test crash point `stop` hits between
 * the fsync and the rename; FF__FAIL_DIRSYNC fails the checkpoint's directory fsync. */
static int write_atomic(int dfd, const char *name, const obuf *b, int stop, bool *renamed,
                        char failed[64])
{
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%s.tmp", name);
    snprintf(failed, 64, "%s", tmp); /* what a failure names, until the rename */
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), rc = 0;
    bool crashed = false; /* the tests' simulated crash, which leaves the .tmp */
    if (fd < 0) rc = -errno;
    ff_wfile f; /* a topology snapshot is hundreds of MB at 10 M DPUs: see storage/file.h */
    ff_wfile_init(&f, fd, 0);
    if (!rc) rc = ff_wfile_write(&f, b->p, b->n);
    if (!rc && fsync(fd) != 0) rc = -errno;
    if (!rc && stop != FF__STOP_NONE && ff__seal_test_stop == FF__FAIL_WRITE) {
        ff__seal_test_stop = FF__STOP_HIT; /* a failed write, in tests */
        rc = -EIO;
    }
    if (fd >= 0) close(fd);
    if (!rc && stop != FF__STOP_NONE && ff__seal_test_stop == stop) { /* a crash, in tests */
        ff__seal_test_stop = FF__STOP_HIT;
        rc = -EINTR;
        crashed = true;
    }
    if (!rc && renamed) *renamed = true;
    if (!rc && renameat(dfd, tmp, dfd, name) != 0) rc = -errno;
    if (rc && !crashed) unlinkat(dfd, tmp, 0); /* nothing left behind */
    if (!rc) failed[0] = '\0';                 /* the directory's fsync */
    if (!rc && fsync(dfd) != 0) rc = -errno;
    if (!rc && stop == FF__STOP_CKPT_TMP && ff__seal_test_stop == FF__FAIL_DIRSYNC) {
        ff__seal_test_stop = FF__STOP_HIT; /* a failed directory fsync, in tests */
        rc = -EIO;
    }
    return rc;
}

/* The snapshot a checkpoint of the engine as it is now names (SNAPSHOT NUMBERS): the
 * one it names already or the spare, if the topology has not changed since it was
 * taken; else a new number, to be written (*fresh). */
static uint64_t snap_pick(const ff_engine *e, bool *fresh)
{
    *fresh = false;
    if (e->topo_snap && e->topo_gen == e->topo_snap_gen) return e->topo_snap;
    if (e->topo_spare && e->topo_gen == e->topo_spare_gen) return e->topo_spare;
    *fresh = true;
    return e->topo_snap_hi + 1;
}

/* Records what a checkpoint naming snapshot snap (of topology generation gen) did:
 * whether the snapshot's rename was tried, whether it was written completely, whether
 * the checkpoint is durable. */
static void snap_record(ff_engine *e, uint64_t snap, uint64_t gen, bool renamed, bool written,
                        bool committed)
{
    if (renamed && snap > e->topo_snap_hi) e->topo_snap_hi = snap;
    if (committed) {
        e->topo_snap = snap;
        e->topo_snap_gen = gen;
        e->topo_spare = 0;
    } else if (written) {
        e->topo_spare = snap;
        e->topo_spare_gen = gen;
    }
}

/* Removes the snapshots numbered [from, to): after a commit naming `to`, the one the
 * previous checkpoint named and those of commits that failed since. */
static void unlink_snaps(int dfd, uint64_t from, uint64_t to)
{
    char name[40];
    for (uint64_t n = from ? from : 1; n < to; n++) {
        snap_name(name, n);
        unlinkat(dfd, name, 0); /* else removed at the next open */
    }
}

int ff__ckpt_write(ff_engine *e, uint64_t lsn)
{
    int dfd = open(e->o.data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (dfd < 0) return -errno;
    bool fresh, renamed = false;
    char failed[64];
    uint64_t snap = snap_pick(e, &fresh);
    if (fresh) { /* the topology changed */
        char name[40];
        obuf t = {0};
        encode_topology(e, &t);
        snap_name(name, snap);
        rc = write_atomic(dfd, name, &t, FF__STOP_TOPO, &renamed, failed);
        free(t.p);
    }
    bool written = fresh && rc == 0;
    obuf b = {0};
    if (!rc) {
        encode(e, lsn, snap, &b);
        rc = write_atomic(dfd, CK_NAME, &b, FF__STOP_CKPT_TMP, NULL, failed);
    }
    if (rc == 0) {
        unlink_snaps(dfd, e->topo_snap, snap); /* unnamed now */
        e->ck_lsn = lsn;
    }
    snap_record(e, snap, e->topo_gen, renamed, written, rc == 0);
    close(dfd);
    free(b.p);
    return rc;
}

/* The last log position whose records a checkpoint at lsn makes redundant (LOG
 * RELEASE): events after sealed_upto are still needed. */
static uint64_t release_upto(const ff_engine *e, uint64_t lsn)
{
    uint64_t upto = lsn;
    size_t i = 0;
    while (i < e->nlch && e->lch[i].max_ts <= e->sealed_upto) i++;
    if (i < e->nlch && e->lch[i].from - 1 < upto) upto = e->lch[i].from - 1;
    return upto;
}

/* Forgets the chunks wholly at or before upto. */
static void drop_chunks(ff_engine *e, uint64_t upto)
{
    size_t drop = 0;
    while (drop + 1 < e->nlch && e->lch[drop + 1].from <= upto + 1) drop++;
    if (drop) {
        memmove(e->lch, e->lch + drop, (e->nlch - drop) * sizeof(*e->lch));
        e->nlch -= drop;
    }
}

void ff__ckpt_prepare(ff_engine *e, ff__ckpt_job *j)
{
    *j = (ff__ckpt_job){.lsn = ff_log_written(e->log), .old_snap = e->topo_snap};
    j->dir = ff_xmalloc(strlen(e->o.data_dir) + 1);
    strcpy(j->dir, e->o.data_dir);
    j->topo_gen = e->topo_gen;
    bool fresh;
    j->snap = snap_pick(e, &fresh);
    if (fresh) { /* the topology changed */
        obuf t = {0};
        encode_topology(e, &t);
        j->topo = t.p, j->ntopo = t.n;
    }
    obuf b = {0};
    encode(e, j->lsn, j->snap, &b);
    j->ck = b.p, j->nck = b.n;
    ff_log_datasync_begin(e->log, &j->sync); /* a failure (a failed log) fails run */
    j->upto = release_upto(e, j->lsn);
    ff_log_release_begin(e->log, j->upto, &j->rel);
}

int ff__ckpt_run(ff__ckpt_job *j)
{
    snprintf(j->failed, sizeof j->failed, "log"); /* its current file's fdatasync */
    int rc = ff_log_datasync_run(&j->sync);       /* step 3: the log up to lsn */
    if (rc < 0) return rc;
    j->failed[0] = '\0';
    int dfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return -errno;
    char name[40];
    if (j->topo) {
        snap_name(name, j->snap);
        obuf t = {.p = j->topo, .n = j->ntopo};
        rc = write_atomic(dfd, name, &t, FF__STOP_TOPO, &j->topo_renamed, j->failed);
        j->topo_written = rc == 0;
    }
    if (!rc)
        rc = write_atomic(dfd, CK_NAME, &(obuf){.p = j->ck, .n = j->nck}, FF__STOP_CKPT_TMP, NULL,
                          j->failed);
    if (!rc) unlink_snaps(dfd, j->old_snap, j->snap); /* unnamed now */
    if (!rc) ff_log_release_run(&j->rel);             /* a failure leaves files for the next one */
    close(dfd);
    return rc;
}

int ff__ckpt_done(ff_engine *e, ff__ckpt_job *j, int rc)
{
    snap_record(e, j->snap, j->topo_gen, j->topo_renamed, j->topo_written, rc == 0);
    if (rc == 0) {
        e->ck_lsn = j->lsn;
        drop_chunks(e, j->upto);
    }
    int n = ff_log_release_end(e->log, &j->rel);
    if (n > 0) e->log_released += (uint64_t)n;
    ff_log_datasync_end(e->log, &j->sync); /* a failed fdatasync fails the log */
    free(j->dir);
    free(j->ck);
    free(j->topo);
    *j = (ff__ckpt_job){0};
    return rc;
}

/* ---- reading ---- */

typedef struct ibuf {
    const unsigned char *p, *end;
    bool bad;
} ibuf;

static uint64_t get(ibuf *r, int n)
{
    if (r->end - r->p < n) {
        r->bad = true;
        return 0;
    }
    uint64_t v = 0;
    memcpy(&v, r->p, (size_t)n);
    r->p += n;
    return v;
}

static int read_file(const char *path, unsigned char **out, size_t *n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    int rc = fstat(fd, &st) == 0 ? 0 : -errno;
    unsigned char *p = rc ? NULL : ff_xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (!rc && got < (size_t)st.st_size) {
        ssize_t k = read(fd, p + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            rc = k < 0 ? -errno : FF_ECORRUPT;
        else
            got += (size_t)k;
    }
    close(fd);
    if (rc) {
        free(p);
        return rc;
    }
    *out = p;
    *n = got;
    return 0;
}

static int fail(char *err, size_t errlen, int rc, const char *path, const char *what)
{
    snprintf(err, errlen, "%s: %s", path, what);
    return rc;
}

/* Checks the header of a checkpoint or snapshot file; on success r reads the body. */
static int check_header(const unsigned char *p, size_t n, ibuf *r, const char *magic,
                        uint32_t version, const char *what, const char *path, char *err,
                        size_t errlen)
{
    if (n < CK_HDR || memcmp(p, magic, 8) != 0) {
        snprintf(err, errlen, "%s: not a footfall %s", path, what);
        return FF_EFORMAT;
    }
    uint32_t ver;
    uint64_t blen, sum;
    memcpy(&ver, p + 8, 4);
    memcpy(&blen, p + 16, 8);
    memcpy(&sum, p + 24, 8);
    if (ver != version) {
        snprintf(err, errlen, "%s: %s version %u, expected %u", path, what, ver, version);
        return FF_EVERSION;
    }
    if (blen != n - CK_HDR || XXH3_64bits(p + CK_HDR, blen) != sum)
        return fail(err, errlen, FF_ECORRUPT, path, "corrupt (length or checksum)");
    *r = (ibuf){p + CK_HDR, p + n, false};
    return 0;
}

/* Applies the topology snapshot `snap`. */
static int load_topology(ff_engine *e, uint64_t snap, char *err, size_t errlen)
{
    char name[40], path[4096];
    snap_name(name, snap);
    snprintf(path, sizeof(path), "%s/%s", e->o.data_dir, name);
    unsigned char *p = NULL;
    size_t n = 0;
    int rc = read_file(path, &p, &n);
    if (rc < 0) return fail(err, errlen, FF_ECORRUPT, path, strerror(-rc));
    ibuf r = {0};
    rc = check_header(p, n, &r, TP_MAGIC, TP_VERSION, "topology snapshot", path, err, errlen);
    uint32_t nops = rc ? 0 : (uint32_t)get(&r, 4);
    for (uint32_t i = 0; i < nops && !r.bad && rc == 0; i++) {
        uint32_t len = (uint32_t)get(&r, 4);
        if (r.bad || (size_t)(r.end - r.p) < len || ff__topo_replay(e, r.p, len) < 0)
            rc = fail(err, errlen, FF_ECORRUPT, path, "corrupt topology operation");
        else
            r.p += len;
    }
    if (rc == 0 && (r.bad || r.p != r.end)) rc = fail(err, errlen, FF_ECORRUPT, path, "corrupt");
    free(p);
    if (rc == 0) {
        e->topo_snap = snap;
        e->topo_snap_gen = e->topo_gen;
    }
    return rc;
}

/* Removes topology snapshots other than the one the checkpoint names (0: all); notes
 * the highest number seen, which a new snapshot must not take again (SNAPSHOT NUMBERS). */
static void remove_other_snapshots(ff_engine *e)
{
    e->topo_snap_hi = e->topo_snap;
    DIR *d = opendir(e->o.data_dir);
    if (!d) return;
    char keep[40] = "";
    if (e->topo_snap) snap_name(keep, e->topo_snap);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "topology-", 9) != 0 || strcmp(de->d_name, keep) == 0) continue;
        unsigned long long n = strtoull(de->d_name + 9, NULL, 16);
        if (n > e->topo_snap_hi) e->topo_snap_hi = n;
        unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

/* The orphan rows, after the topology they belong to. */
static int load_orphans(ff_engine *e, ibuf *r)
{
    uint32_t ndpus = (uint32_t)get(r, 4);
    for (uint32_t i = 0; i < ndpus && !r->bad; i++) {
        ff__dpu *d = ff__dpu_find(e, (uint32_t)get(r, 4));
        uint32_t k = (uint32_t)get(r, 4);
        if (r->bad || !d || (size_t)(r->end - r->p) / sizeof(ff_event) < k) return FF_ECORRUPT;
        if (!d->orphans) {
            d->orphans = ff_xcalloc(1, sizeof(*d->orphans));
            e->orphan_dpus++;
        }
        for (uint32_t j = 0; j < k; j++) {
            ff_event ev;
            memcpy(&ev, r->p, sizeof(ev));
            r->p += sizeof(ev);
            if (ev.dpu_id != d->id || (ev.direction != 1 && ev.direction != -1) ||
                ev.ts > e->sealed_upto)
                return FF_ECORRUPT;
            ff__row row = {.ts = ev.ts, .dpu = ev.dpu_id, .seq = ev.seq, .dir = ev.direction};
            ff__rows_insert(d->orphans, &row);
        }
    }
    return r->bad ? FF_ECORRUPT : 0;
}

static int load_body(ff_engine *e, ibuf *r, const char *path, char *err, size_t errlen)
{
    e->sealed_upto = (int64_t)get(r, 8);
    e->ck_lsn = get(r, 8);
    e->h = (int64_t)get(r, 8);
    e->max_ts = (int64_t)get(r, 8);
    uint32_t nseg = (uint32_t)get(r, 4);
    if (r->bad || (size_t)(r->end - r->p) / 20 < nseg)
        return fail(err, errlen, FF_ECORRUPT, path, "corrupt body");
    const unsigned char *segs = r->p;
    r->p += (size_t)nseg * 20;
    uint32_t nrev = (uint32_t)get(r, 4);
    if (r->bad || (size_t)(r->end - r->p) / 12 < nrev)
        return fail(err, errlen, FF_ECORRUPT, path, "corrupt body");
    const unsigned char *revs = r->p;
    r->p += (size_t)nrev * 12;
    uint64_t snap = get(r, 8);
    if (r->bad || snap == 0) return fail(err, errlen, FF_ECORRUPT, path, "corrupt body");
    int rc = load_topology(e, snap, err, errlen);
    if (rc < 0) return rc;
    ibuf rv = {revs, revs + (size_t)nrev * 12, false};
    for (uint32_t i = 0; i < nrev; i++) {
        ff__space *s = ff__space_find(e, (uint32_t)get(&rv, 4));
        if (!s) return fail(err, errlen, FF_ECORRUPT, path, "revision of an unknown space");
        s->revision = get(&rv, 8);
    }
    if (load_orphans(e, r) < 0) return fail(err, errlen, FF_ECORRUPT, path, "corrupt orphan rows");
    if (r->p != r->end) return fail(err, errlen, FF_ECORRUPT, path, "corrupt body");
    ibuf sr = {segs, segs + (size_t)nseg * 20, false};
    for (uint32_t i = 0; i < nseg && rc == 0; i++) {
        int64_t start = (int64_t)get(&sr, 8), end = (int64_t)get(&sr, 8);
        uint32_t version = (uint32_t)get(&sr, 4);
        rc = ff__seal_attach(e, start, end, version, err, errlen);
    }
    if (rc == 0 && (nseg ? e->segs[nseg - 1].end != e->sealed_upto : e->sealed_upto != FF_TS_MIN))
        return fail(err, errlen, FF_ECORRUPT, path, "segments do not reach sealed_upto");
    return rc;
}

int ff__ckpt_load(ff_engine *e, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", e->o.data_dir, CK_NAME);
    unsigned char *p = NULL;
    size_t n = 0;
    int rc = read_file(path, &p, &n);
    if (rc == -ENOENT) {
        remove_other_snapshots(e); /* none is committed */
        return 0;
    }
    if (rc < 0) return fail(err, errlen, rc, path, strerror(-rc));
    ibuf r = {0};
    rc = check_header(p, n, &r, CK_MAGIC, CK_VERSION, "checkpoint", path, err, errlen);
    if (rc == 0) rc = load_body(e, &r, path, err, errlen);
    free(p);
    if (rc == 0) remove_other_snapshots(e);
    return rc;
}

int ff__ckpt_peek(const char *data_dir, int64_t *h, ff_seg_entry **segs, size_t *nsegs, char *err,
                  size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", data_dir, CK_NAME);
    unsigned char *p = NULL;
    size_t n = 0;
    *segs = NULL;
    *nsegs = 0;
    *h = FF_TS_MIN;
    int rc = read_file(path, &p, &n);
    if (rc == -ENOENT) return 0; /* nothing committed: no segment */
    if (rc < 0) return fail(err, errlen, rc, path, strerror(-rc));
    ibuf r = {0};
    rc = check_header(p, n, &r, CK_MAGIC, CK_VERSION, "checkpoint", path, err, errlen);
    if (rc == 0) {
        get(&r, 8); /* sealed_upto */
        get(&r, 8); /* lsn */
        *h = (int64_t)get(&r, 8);
        get(&r, 8); /* max_ts */
        uint32_t k = (uint32_t)get(&r, 4);
        if (r.bad || (size_t)(r.end - r.p) / 20 < k)
            rc = fail(err, errlen, FF_ECORRUPT, path, "corrupt body");
        ff_seg_entry *v = rc ? NULL : ff_xmalloc(((size_t)k + 1) * sizeof(*v));
        for (uint32_t i = 0; i < k && rc == 0; i++) {
            v[i].start = (int64_t)get(&r, 8);
            v[i].end = (int64_t)get(&r, 8);
            v[i].version = (uint32_t)get(&r, 4);
            ff_seg_name(v[i].name, v[i].start, v[i].end, v[i].version);
        }
        if (rc == 0) *segs = v, *nsegs = k;
    }
    free(p);
    return rc;
}

/* ---- log release ---- */

/* Chunks per log file: release is exact to 1/16 of a file. */
#define LCHUNKS_PER_FILE 16

void ff__ckpt_note(ff_engine *e, uint64_t lsn, int64_t max_ts)
{
    uint64_t file = e->o.log_file_bytes ? e->o.log_file_bytes : (uint64_t)64 << 20;
    ff__lchunk *c = e->nlch ? &e->lch[e->nlch - 1] : NULL;
    if (c && lsn - c->from < file / LCHUNKS_PER_FILE) {
        if (max_ts > c->max_ts) c->max_ts = max_ts;
        return;
    }
    e->lch = ff_xgrow(e->lch, &e->caplch, e->nlch + 1, sizeof(*e->lch));
    e->lch[e->nlch++] = (ff__lchunk){lsn, max_ts};
}

int ff__ckpt_release(ff_engine *e)
{
    if (!e->log) return 0;
    uint64_t upto = release_upto(e, e->ck_lsn);
    drop_chunks(e, upto);
    int rc = ff_log_release(e->log, upto);
    if (rc > 0) e->log_released += (uint64_t)rc;
    return rc < 0 ? rc : 0;
}
