/*
 * week -- a week of events for 100,000 DPUs through the engine, in process: does resident
 * memory stay flat once the pending window is full, does the log stay bounded, and how
 * many bytes on disk does a settled row take?
 *
 * No network: the engine (engine/engine.h) is driven directly with an injected clock
 * that follows simulated time, so seven simulated days take minutes. Sealing goes
 * through the same job API footfalld uses (ff_engine_seal_begin/run/end, seal_async):
 * begin and end on the main thread after each tick, run on a second thread like
 * footfalld's libuv pool (or inline with --inline-seal). The options default to
 * footfalld's: settle 5m, seal-lag 5m, seal-rows 1,048,576, seal-age 1h, merges up to
 * 16 x seal-rows, max-lateness 7d; the malloc tuning is footfalld's too.
 *
 * The site: the sample floor plan (tests/data/floorplan.json) repeated. Site k has
 * spaces "Site k A" (id 2k+1) and "Site k B" (2k+2), doorways X (2k+1, from outside
 * into A) and Z (2k+2, between A and B), DPU 2k+1 over X (entry A) and DPU 2k+2 over Z
 * (entry A, exit B: +1 enters A from B). --dpus N gives N/2 sites; an event of an X DPU
 * makes one row (A), of a Z DPU two (A and B): 1.5 rows per event on average.
 *
 * The load: --events-per-dpu-day per DPU per day, spread by the daily shape of
 * bench/ff_load.c (hourly steps, 0.1x at night, 17:00-18:00 at 5x the mean). Simulated
 * time runs second by second from 2026-01-05T00:00:00Z; each simulated second's events
 * (a uniformly random DPU each, direction +1/-1 with equal odds, the DPU's next seq,
 * timestamps ascending, random at --ts-unit precision: ms by default, as in the sample
 * data; us is the harder case for the segment encoding) go to ff_engine_ingest in frames
 * of at most 4,096 with the clock at the end of that second; then the engine ticks. Faults,
 * each an independent fraction: --out-of-order (ts moved back up to 60 s, still pending),
 * --late (ts 1 s to seal-lag behind H: amends the settled rows in memory), --duplicate
 * (a repeat of one of the last 1,024 events). --late-sealed N per day puts N events 2 to
 * 3 hours behind H - seal-lag, into sealed history: each rewrites the segments of its
 * space from its window on (engine/seal.c), the expensive path. The log is synced every
 * --sync-events events (footfalld syncs once per loop turn; the sync cost is not what
 * this measures).
 *
 * Checks (the exit status is 1 if one fails): the engine's outcome counts equal what
 * was generated (accepted = made - duplicates, duplicates, late, nothing refused); the
 * latest occupancy of every space equals the bench's own sum of deltas; for
 * --check-spaces sample spaces the bench keeps every row it generated and compares
 * ff_engine_count at many times T (in sealed history, in memory, pending) with a
 * brute-force fold of those rows in canonical order. --reopen closes the engine,
 * opens it again (recovery from checkpoint, segments and log) and checks again;
 * --check-invariants runs ff_engine_check (reads every segment: slow on big runs).
 *
 * Output: a progress line on stderr every 2 s; per simulated day one table row on
 * stdout: events, wall time, ev/s, VmRSS, RssAnon, RssFile, VmHWM (/proc/self/status),
 * the resident pages of segment and log mappings (/proc/self/smaps), the rows held in
 * memory (pending and settled, ff_engine_stats; malloc's view goes to the result line), log bytes
 * on disk (allocated) and the largest seen, segment bytes (file sizes), rows in segments, bytes per
 * row, segments; then "result key=value ..." for scripts and "check ok" or "check FAILED: ...". The
 * data directory is removed at the end unless --keep.
 */
#include "engine/engine.h"
#include "net/timefmt.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FRAME     4096 /* events per ff_engine_ingest call, like one wire frame */
#define RECENT    1024 /* events remembered for --duplicate */
#define DAY_US    (24 * FF_HOUR)
#define START_US  ((int64_t)1767571200 * FF_SECOND) /* 2026-01-05T00:00:00Z */
#define NCHECK_AT 64                                /* times T checked per sample space */

typedef struct opts {
    unsigned days;
    uint64_t dpus, per_dpu_day, seal_rows, seal_merge_rows, sync_events, seed;
    int64_t settle_us, seal_lag_us, seal_age_us;
    double ooo, late, dup;
    unsigned late_sealed, check_spaces;
    int64_t ts_unit; /* timestamps are multiples of this: 1000 (ms, default) or 1 (us) */
    const char *data_dir;
    bool keep, inline_seal, reopen, check_invariants, progress, wrong;
} opts;

/* ---- random numbers (splitmix64), clocks ------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double rnd01(void)
{
    return (double)(rnd() >> 11) * 0x1.0p-53;
}
static uint64_t rnd_below(uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rnd() * n) >> 64);
}

static double mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The engine's clock: the end of the simulated second being ingested. */
static int64_t sim_now;
static int64_t sim_clock(void *ctx)
{
    (void)ctx;
    return sim_now;
}

/* ---- the daily shape (as bench/ff_load.c): mean 1, the 17:00 hour exactly 5 ------- */

static const double hour_weight[24] = {0.1, 0.1, 0.1, 0.1, 0.1, 0.15, 0.3, 0.8, 1.6, 1.2, 1.0, 1.1,
                                       1.5, 1.3, 1.0, 1.0, 1.4, 5.0,  1.6, 1.0, 0.7, 0.5, 0.3, 0.2};
#define PEAK_HOUR 17
static double shape_w[24];

static void shape_init(void)
{
    double others = 0;
    for (int h = 0; h < 24; h++)
        if (h != PEAK_HOUR) others += hour_weight[h];
    for (int h = 0; h < 24; h++) shape_w[h] = h == PEAK_HOUR ? 5 : hour_weight[h] * 19 / others;
}

/* ---- the site ------------------------------------------------------------------------ */

/* DPU d (1-based) counts into spaces *entry and *exit (0: none). */
static void dpu_spaces(uint32_t d, uint32_t *entry, uint32_t *exit)
{
    uint32_t k = (d - 1) / 2;
    *entry = 2 * k + 1;
    *exit = d % 2 ? 0 : 2 * k + 2;
}

static int build_topology(ff_engine *e, uint64_t dpus)
{
    uint64_t nspaces = (dpus + 1) / 2 * 2;
    for (uint64_t i = 1; i <= nspaces; i++) {
        ff_space_def s = {.id = (uint32_t)i};
        ff_doorway_def d = {.id = (uint32_t)i};
        snprintf(s.name, sizeof s.name, "Site %" PRIu64 " %c", (i - 1) / 2, i % 2 ? 'A' : 'B');
        snprintf(d.name, sizeof d.name, "Site %" PRIu64 " %c", (i - 1) / 2, i % 2 ? 'X' : 'Z');
        int rc = ff_engine_space_put(e, &s, NULL);
        if (rc == 0) rc = ff_engine_doorway_put(e, &d, NULL);
        if (rc < 0) return rc;
    }
    for (uint64_t i = 1; i <= dpus; i++) {
        ff_assignment a = {.doorway_id = (uint32_t)i, .effective_from = FF_TS_MIN};
        dpu_spaces((uint32_t)i, &a.entry_space_id, &a.exit_space_id);
        int rc = ff_engine_dpu_assign(e, (uint32_t)i, &a, false, NULL);
        if (rc < 0) return rc;
    }
    return ff_engine_checkpoint(e); /* as footfalld does after --topology */
}

/* ---- what the bench knows: counts, sums, sample rows ------------------------------- */

typedef struct srow {
    int64_t ts;
    uint32_t dpu;
    uint16_t seq;
    int8_t dir, delta;
} srow;

typedef struct sample {
    uint32_t space;
    srow *r;
    size_t n, cap;
} sample;

typedef struct truth {
    uint64_t made, dups, late, ooo, late_sealed;
    int64_t *occ; /* by space id */
    uint64_t nspaces;
    sample *smp;
    unsigned nsmp;
    int32_t *smp_of; /* space id -> sample index, or -1 */
} truth;

static void truth_init(truth *t, const opts *o)
{
    memset(t, 0, sizeof *t);
    t->nspaces = (o->dpus + 1) / 2 * 2;
    t->occ = ff_xcalloc(t->nspaces + 1, sizeof *t->occ);
    t->smp_of = ff_xmalloc((t->nspaces + 1) * sizeof *t->smp_of);
    for (uint64_t i = 0; i <= t->nspaces; i++) t->smp_of[i] = -1;
    t->nsmp = o->check_spaces < t->nspaces ? o->check_spaces : (unsigned)t->nspaces;
    t->smp = ff_xcalloc(t->nsmp + 1, sizeof *t->smp);
    for (unsigned i = 0; i < t->nsmp; i++) { /* spread over the ids, A and B spaces */
        uint32_t id = (uint32_t)(1 + (uint64_t)i * t->nspaces / t->nsmp);
        if (i % 2 && id % 2 && id < t->nspaces) id++;
        if (t->smp_of[id] >= 0) continue;
        t->smp_of[id] = (int32_t)i;
        t->smp[i].space = id;
    }
}

static void truth_free(truth *t)
{
    for (unsigned i = 0; i < t->nsmp; i++) free(t->smp[i].r);
    free(t->smp);
    free(t->smp_of);
    free(t->occ);
}

static void note_row(truth *t, uint32_t space, const ff_event *ev, int delta)
{
    t->occ[space] += delta;
    int32_t k = t->smp_of[space];
    if (k < 0) return;
    sample *s = &t->smp[k];
    s->r = ff_xgrow(s->r, &s->cap, s->n + 1, sizeof *s->r);
    s->r[s->n++] = (srow){ev->ts, ev->dpu_id, ev->seq, ev->direction, (int8_t)delta};
}

/* An event the engine must accept: its rows go into the truth. */
static void note_event(truth *t, const ff_event *ev)
{
    uint32_t en, ex;
    dpu_spaces(ev->dpu_id, &en, &ex);
    if (en) note_row(t, en, ev, ev->direction);
    if (ex) note_row(t, ex, ev, -ev->direction);
}

/* ---- the generator ------------------------------------------------------------------- */

typedef struct gen {
    const opts *o;
    uint16_t *seq; /* by DPU id - 1 */
    ff_event recent[RECENT];
    uint64_t nrecent;
    double carry; /* fraction of an event carried to the next second */
} gen;

/* One event at simulated time ts (H is the engine's horizon before this second). */
static void gen_event(gen *g, truth *t, int64_t ts, int64_t h, bool sealed_late, ff_event *e)
{
    const opts *o = g->o;
    if (!sealed_late && o->dup > 0 && g->nrecent && rnd01() < o->dup) {
        *e = g->recent[rnd_below(g->nrecent < RECENT ? g->nrecent : RECENT)];
        t->dups++;
        return;
    }
    uint32_t d = (uint32_t)rnd_below(o->dpus);
    uint16_t s = ++g->seq[d];
    if (s == 0) s = g->seq[d] = 1;
    *e = (ff_event){.dpu_id = d + 1, .direction = (rnd() & 1) ? 1 : -1, .seq = s, .ts = ts};
    int64_t lag = o->seal_lag_us;
    if (sealed_late) {
        e->ts = h - lag - 2 * FF_HOUR - (int64_t)rnd_below(FF_HOUR);
        e->ts -= e->ts % o->ts_unit;
        t->late_sealed++;
    } else if (o->late > 0 && lag > 2 * FF_SECOND && h > START_US + lag && rnd01() < o->late) {
        e->ts = h - FF_SECOND - (int64_t)rnd_below((uint64_t)(lag - 2 * FF_SECOND));
        e->ts -= e->ts % o->ts_unit;
        t->late++;
    } else if (o->ooo > 0 && rnd01() < o->ooo) {
        e->ts = ts - o->ts_unit * (1 + (int64_t)rnd_below((uint64_t)(60 * FF_SECOND / o->ts_unit)));
        t->ooo++;
    }
    g->recent[g->nrecent++ % RECENT] = *e;
    t->made++;
    note_event(t, e);
}

/* ---- /proc and the disk -------------------------------------------------------------- */

typedef struct mem {
    long rss, anon, file, hwm;            /* KiB, /proc/self/status */
    long heap_used, heap_free, heap_mmap; /* KiB, malloc's view (mallinfo2) */
    long seg_rss, log_rss;                /* KiB, /proc/self/smaps: segment and log mappings */
} mem;

static void mem_sample(mem *m)
{
    memset(m, 0, sizeof *m);
#ifdef __GLIBC__
    struct mallinfo2 mi = mallinfo2();
    m->heap_used = (long)(mi.uordblks / 1024);
    m->heap_free = (long)(mi.fordblks / 1024);
    m->heap_mmap = (long)(mi.hblkhd / 1024);
#endif
    FILE *f = fopen("/proc/self/status", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        long v;
        if (sscanf(line, "VmRSS: %ld", &v) == 1) m->rss = v;
        if (sscanf(line, "RssAnon: %ld", &v) == 1) m->anon = v;
        if (sscanf(line, "RssFile: %ld", &v) == 1) m->file = v;
        if (sscanf(line, "VmHWM: %ld", &v) == 1) m->hwm = v;
    }
    if (f) fclose(f);
    f = fopen("/proc/self/smaps", "r");
    long *into = NULL;
    while (f && fgets(line, sizeof line, f)) {
        long v;
        if ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f')) {
            /* a mapping's header line; its fields (capitalised names) follow */
            into = strstr(line, "/segments/seg-") ? &m->seg_rss
                   : strstr(line, "/log-")        ? &m->log_rss
                                                  : NULL;
        } else if (into && sscanf(line, "Rss: %ld", &v) == 1) {
            *into += v;
        }
    }
    if (f) fclose(f);
}

typedef struct disk {
    uint64_t log_bytes; /* allocated (st_blocks): what the log takes on disk */
    uint32_t log_files;
    uint64_t seg_bytes; /* file sizes of the segment files */
    uint64_t seg_alloc; /* allocated */
    uint32_t seg_files;
} disk;

static void dir_sum(const char *dir, const char *prefix, uint64_t *size, uint64_t *alloc,
                    uint32_t *n)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0 || strstr(de->d_name, ".tmp") ||
            fstatat(dirfd(d), de->d_name, &st, 0) != 0)
            continue;
        if (size) *size += (uint64_t)st.st_size;
        if (alloc) *alloc += (uint64_t)st.st_blocks * 512;
        (*n)++;
    }
    closedir(d);
}

static void disk_sample(const char *data_dir, disk *k)
{
    memset(k, 0, sizeof *k);
    char seg[4096];
    snprintf(seg, sizeof seg, "%s/segments", data_dir);
    dir_sum(data_dir, "log-", NULL, &k->log_bytes, &k->log_files);
    dir_sum(seg, "seg-", &k->seg_bytes, &k->seg_alloc, &k->seg_files);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* ---- sealing on a second thread ------------------------------------------------------ */

typedef struct sealer {
    ff_seal_job *job;
    pthread_t th;
    atomic_bool done;
    int rc;
    uint64_t jobs;
    double run_s; /* wall time of the jobs' run step */
} sealer;

static void *seal_thread(void *arg)
{
    sealer *s = arg;
    double t0 = mono_s();
    s->rc = ff_engine_seal_run(s->job);
    s->run_s += mono_s() - t0;
    atomic_store(&s->done, true);
    return NULL;
}

/* Ends the job in flight (waiting for it when wait) and begins the next one if due. */
static int seal_step(ff_engine *e, sealer *s, bool inline_seal, bool wait)
{
    if (s->job) {
        if (!wait && !atomic_load(&s->done)) return 0;
        pthread_join(s->th, NULL);
        int rc = ff_engine_seal_end(e, s->job, s->rc);
        s->job = NULL;
        if (rc < 0) return rc;
    }
    if (wait || ff_engine_seal_begin(e, &s->job) != 1) return 0;
    s->jobs++;
    if (inline_seal) {
        double t0 = mono_s();
        int rc = ff_engine_seal_run(s->job);
        s->run_s += mono_s() - t0;
        rc = ff_engine_seal_end(e, s->job, rc);
        s->job = NULL;
        return rc;
    }
    atomic_store(&s->done, false);
    return pthread_create(&s->th, NULL, seal_thread, s) ? -EAGAIN : 0;
}

/* ---- the checks ---------------------------------------------------------------------- */

static int cmp_srow(const void *a, const void *b)
{
    const srow *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    if (x->dpu != y->dpu) return x->dpu < y->dpu ? -1 : 1;
    if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
    return (x->dir > y->dir) - (x->dir < y->dir);
}

typedef struct checks {
    uint64_t spaces, points, failed;
    char first[256];
} checks;

static void fail(checks *c, const char *what, uint32_t space, int64_t at, int64_t got, int64_t want)
{
    if (!c->failed++)
        snprintf(c->first, sizeof c->first,
                 "%s: space %" PRIu32 " at %" PRId64 ": engine %" PRId64 ", fold %" PRId64, what,
                 space, at, got, want);
}

/* Every space's latest occupancy, and each sample space at NCHECK_AT times. */
static void check_answers(const ff_engine *e, truth *t, int64_t end, checks *c)
{
    for (uint32_t id = 1; id <= t->nspaces; id++) {
        ff_count cnt;
        int rc = ff_engine_count(e, id, false, 0, &cnt);
        c->spaces++;
        if (rc < 0 || cnt.occupancy != t->occ[id])
            fail(c, "latest", id, 0, cnt.occupancy, t->occ[id]);
    }
    for (unsigned k = 0; k < t->nsmp; k++) {
        sample *s = &t->smp[k];
        if (!s->space) continue;
        qsort(s->r, s->n, sizeof *s->r, cmp_srow);
        int64_t at[NCHECK_AT];
        for (int i = 0; i < NCHECK_AT; i++) /* random times, and a few rows' exact ts */
            at[i] = i % 4 == 3 && s->n ? s->r[rnd_below(s->n)].ts
                                       : START_US + (int64_t)rnd_below((uint64_t)(end - START_US));
        for (int i = 0; i < NCHECK_AT; i++) {
            int64_t want = 0;
            for (size_t j = 0; j < s->n && s->r[j].ts <= at[i]; j++) want += s->r[j].delta;
            ff_count cnt;
            int rc = ff_engine_count(e, s->space, true, at[i], &cnt);
            c->points++;
            if (rc < 0 || cnt.occupancy != want)
                fail(c, "count at T", s->space, at[i], cnt.occupancy, want);
        }
    }
}

/* ---- the run ------------------------------------------------------------------------- */

typedef struct run {
    const opts *o;
    ff_engine *e;
    ff_engine_opts eo;
    truth t;
    gen g;
    sealer sl;
    struct {
        uint64_t accepted, duplicates, late, refused;
    } tot; /* ff_ingest_result's counts, summed (they are 32-bit per batch) */
    uint64_t since_sync;
    uint64_t log_max; /* largest log seen on disk */
    double t0;
} run;

static int ingest(run *R, const ff_event *ev, size_t n)
{
    ff_ingest_result res;
    int rc = ff_engine_ingest(R->e, ev, n, NULL, &res);
    if (rc < 0) return rc;
    R->tot.accepted += res.accepted;
    R->tot.duplicates += res.duplicates;
    R->tot.late += res.late;
    R->tot.refused += res.refused;
    R->since_sync += n;
    if (R->since_sync >= R->o->sync_events) {
        R->since_sync = 0;
        return ff_engine_sync(R->e);
    }
    return 0;
}

/* One simulated second starting at sec: its events, the tick, sealing. */
static int second(run *R, int64_t sec, uint64_t late_sealed_now, ff_event *buf)
{
    const opts *o = R->o;
    int h_of_day = (int)((sec - START_US) % DAY_US / FF_HOUR);
    double want = (double)(o->dpus * o->per_dpu_day) / 86400.0 * shape_w[h_of_day] + R->g.carry;
    uint64_t n = (uint64_t)want;
    R->g.carry = want - (double)n;
    int64_t h = ff_engine_horizon(R->e);
    sim_now = sec + FF_SECOND;
    size_t k = 0;
    for (uint64_t i = 0; i < n + late_sealed_now; i++) {
        bool sl = i >= n;
        int64_t ts = sec + (int64_t)((i % (n ? n : 1)) * FF_SECOND / (n ? n : 1)) +
                     (int64_t)rnd_below((uint64_t)(FF_SECOND / (n ? n : 1)));
        gen_event(&R->g, &R->t, ts - ts % o->ts_unit, h, sl, &buf[k++]);
        if (k == FRAME || i + 1 == n + late_sealed_now) {
            int rc = ingest(R, buf, k);
            if (rc < 0) return rc;
            k = 0;
        }
    }
    ff_engine_tick(R->e);
    return seal_step(R->e, &R->sl, o->inline_seal, false);
}

static void progress(run *R, unsigned day, int64_t sec, uint64_t events)
{
    static double last;
    double now = mono_s();
    if (!R->o->progress || now - last < 2) return;
    last = now;
    mem m;
    mem_sample(&m);
    char ts[FF_TIME_STRLEN];
    ff_time_format(sec, ts);
    fprintf(stderr, "week: day %u %.16s  %" PRIu64 " events  %.0f ev/s  RSS %ld MiB  %.0f s\n",
            day + 1, ts, events, (double)events / (now - R->t0), m.rss / 1024, now - R->t0);
}

static void day_header(void)
{
    printf("%3s %12s %8s %9s %8s %8s %8s %8s %8s %8s %8s %9s %9s %12s %12s %7s %5s\n", "day",
           "events", "wall_s", "ev/s", "rss_MiB", "anon", "file", "hwm", "segmap", "logmap",
           "memrows", "log_MiB", "logmax", "seg_bytes", "seg_rows", "B/row", "segs");
}

static void day_row(run *R, unsigned day, uint64_t events, double wall)
{
    mem m;
    disk k;
    ff_engine_stats st;
    mem_sample(&m);
    disk_sample(R->eo.data_dir, &k);
    ff_engine_stats_get(R->e, &st);
    if (k.log_bytes > R->log_max) R->log_max = k.log_bytes;
    printf("%3u %12" PRIu64
           " %8.1f %9.0f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %9.1f %9.1f %12" PRIu64
           " %12" PRIu64 " %7.3f %5" PRIu32 "\n",
           day + 1, events, wall, (double)events / wall, m.rss / 1024.0, m.anon / 1024.0,
           m.file / 1024.0, m.hwm / 1024.0, m.seg_rss / 1024.0, m.log_rss / 1024.0,
           (double)((st.pending_rows + st.settled_rows) * st.pending_row_bytes) / (1 << 20),
           (double)k.log_bytes / (1 << 20), (double)R->log_max / (1 << 20), k.seg_bytes,
           st.sealed_rows, st.sealed_rows ? (double)k.seg_bytes / (double)st.sealed_rows : 0.0,
           st.segments);
    printf("result day=%u events=%" PRIu64 " wall_s=%.2f ev_per_s=%.0f rss_kib=%ld anon_kib=%ld "
           "file_kib=%ld hwm_kib=%ld segmap_kib=%ld logmap_kib=%ld log_bytes=%" PRIu64
           " log_files=%" PRIu32 " seg_bytes=%" PRIu64 " seg_alloc=%" PRIu64 " seg_files=%" PRIu32
           " sealed_rows=%" PRIu64 " settled_mem_rows=%" PRIu64 " pending_rows=%" PRIu64
           " segments=%" PRIu32 " bytes_per_row=%.4f rewritten=%" PRIu64 " discarded=%" PRIu64
           " log_released=%" PRIu64 " rows_kib=%" PRIu64
           " heap_used_kib=%ld heap_free_kib=%ld heap_mmap_kib=%ld\n",
           day + 1, events, wall, (double)events / wall, m.rss, m.anon, m.file, m.hwm, m.seg_rss,
           m.log_rss, k.log_bytes, k.log_files, k.seg_bytes, k.seg_alloc, k.seg_files,
           st.sealed_rows, st.settled_rows, st.pending_rows, st.segments,
           st.sealed_rows ? (double)k.seg_bytes / (double)st.sealed_rows : 0.0,
           st.segments_rewritten, st.seal_jobs_discarded, st.log_files_released,
           (st.pending_rows + st.settled_rows) * st.pending_row_bytes / 1024, m.heap_used,
           m.heap_free, m.heap_mmap);
    fflush(stdout);
}

/* Runs every simulated day; then the checks. Returns the exit status. */
static int simulate(run *R)
{
    const opts *o = R->o;
    ff_event *buf = ff_xmalloc(FRAME * sizeof *buf);
    day_header();
    R->t0 = mono_s();
    int rc = 0;
    uint64_t total = 0;
    for (unsigned day = 0; day < o->days && rc == 0; day++) {
        double d0 = mono_s();
        uint64_t before = R->t.made + R->t.dups;
        int64_t day_start = START_US + (int64_t)day * DAY_US;
        for (int64_t s = 0; s < 86400 && rc == 0; s++) {
            /* late events into sealed history: evenly over the day, from day 2 on */
            uint64_t ls = 0;
            if (day > 0 && o->late_sealed)
                ls = (uint64_t)((s + 1) * o->late_sealed / 86400) -
                     (uint64_t)(s * o->late_sealed / 86400);
            int64_t sec = day_start + s * FF_SECOND;
            rc = second(R, sec, ls, buf);
            if (s % 60 == 0) progress(R, day, sec, total + R->t.made + R->t.dups - before);
        }
        uint64_t events = R->t.made + R->t.dups - before;
        total += events;
        if (rc == 0) day_row(R, day, events, mono_s() - d0);
    }
    free(buf);
    if (rc == 0) rc = seal_step(R->e, &R->sl, o->inline_seal, true);
    if (rc < 0) {
        fprintf(stderr, "week: engine error: %s\n", ff_strerror(rc));
        return 2;
    }
    double wall = mono_s() - R->t0;
    printf("result total_events=%" PRIu64 " wall_s=%.1f ev_per_s=%.0f seal_jobs=%" PRIu64
           " seal_run_s=%.1f made=%" PRIu64 " duplicates=%" PRIu64 " late=%" PRIu64
           " late_sealed=%" PRIu64 " out_of_order=%" PRIu64 "\n",
           total, wall, (double)total / wall, R->sl.jobs, R->sl.run_s, R->t.made, R->t.dups,
           R->t.late, R->t.late_sealed, R->t.ooo);
    return 0;
}

static int verify(run *R, int64_t end)
{
    checks c = {0};
    const truth *t = &R->t;
    uint64_t late = t->late + t->late_sealed;
    if (R->tot.accepted != t->made || R->tot.duplicates != t->dups || R->tot.late != late ||
        R->tot.refused) {
        snprintf(c.first, sizeof c.first,
                 "outcomes: accepted %" PRIu64 " (want %" PRIu64 "), duplicates %" PRIu64
                 " (%" PRIu64 "), late %" PRIu64 " (%" PRIu64 "), refused %" PRIu64 " (0)",
                 R->tot.accepted, t->made, R->tot.duplicates, t->dups, R->tot.late, late,
                 R->tot.refused);
        c.failed++;
    }
    double t0 = mono_s();
    if (R->o->wrong) R->t.occ[R->t.nspaces / 2]++; /* a control: the checks must fail */
    check_answers(R->e, &R->t, end, &c);
    if (R->o->check_invariants) ff_engine_check(R->e);
    if (!c.failed && R->o->reopen) {
        ff_engine_close(R->e);
        R->e = NULL;
        ff_engine_recovery rec;
        int rc = ff_engine_open(&R->e, &R->eo, &rec);
        if (rc < 0) {
            printf("check FAILED: reopen: %s %s\n", ff_strerror(rc), rec.error);
            return 1;
        }
        printf("result reopen_s=%.2f segments=%" PRIu32 " events_replayed=%" PRIu64 "\n",
               rec.seconds, rec.segments, rec.events_replayed);
        check_answers(R->e, &R->t, end, &c);
        if (R->o->check_invariants) ff_engine_check(R->e);
    }
    if (c.failed) {
        printf("check FAILED: %" PRIu64 " wrong; first: %s\n", c.failed, c.first);
        return 1;
    }
    printf("check ok: outcomes match; %" PRIu64 " latest occupancies and %" PRIu64
           " counts at T equal the bench's fold (%.1f s)%s\n",
           c.spaces, c.points, mono_s() - t0, R->o->reopen ? ", before and after a reopen" : "");
    return 0;
}

/* ---- options ------------------------------------------------------------------------- */

static const char usage[] =
    "usage: week [options]\n"
    "\n"
    "A week of events for N DPUs through the engine in process (see the opening comment of\n"
    "bench/week.c): RSS, log and segment bytes per simulated day, then checks the answers.\n"
    "\n"
    "  --days N                 simulated days (default 7)\n"
    "  --dpus N                 DPUs, two per site of the sample floor plan (default 100000)\n"
    "  --events-per-dpu-day N   events per DPU per day, daily shape, peak 5x (default 500)\n"
    "  --data-dir DIR           engine data directory, created empty (default: a new\n"
    "                           directory under $TMPDIR or /tmp); removed unless --keep\n"
    "  --keep                   keep the data directory\n"
    "  --settle DUR             settle delay (default 5m)\n"
    "  --seal-rows N            seal once N rows have settled (default 1048576)\n"
    "  --seal-age DUR           ... or once this much time has passed (default 1h)\n"
    "  --seal-lag DUR           keep settled rows younger than H - this in memory (default 5m)\n"
    "  --seal-merge-rows N      largest merged segment (default 16 x seal-rows)\n"
    "  --inline-seal            run seal jobs on the main thread (default: a second thread)\n"
    "  --out-of-order F         fraction moved back up to 60 s (default 0.01)\n"
    "  --late F                 fraction 1 s..seal-lag behind H (default 0.001)\n"
    "  --duplicate F            fraction repeating a recent event (default 0.001)\n"
    "  --late-sealed N          events per day into sealed history, from day 2 (default 2)\n"
    "  --sync-events N          sync the log every N events (default 65536)\n"
    "  --check-spaces N         sample spaces whose history is checked (default 16)\n"
    "  --check-invariants       also ff_engine_check at the end (reads every segment)\n"
    "  --reopen                 close, reopen (recovery) and check again at the end\n"
    "  --ts-unit ms|us          timestamp precision (default ms, as the sample data's)\n"
    "  --seed N                 random seed (default 1)\n"
    "  --wrong-on-purpose       expect one space off by one (tests that the checks can fail)\n"
    "  --progress               a progress line on stderr every 2 s (default when a tty)\n"
    "  -h, --help               this text\n"
    "\n"
    "Exit status: 0 ok, 1 a check failed, 2 usage or engine error.\n";

enum {
    O_DAYS = 256,
    O_DPUS,
    O_EPD,
    O_DIR,
    O_KEEP,
    O_SETTLE,
    O_SROWS,
    O_SAGE,
    O_SLAG,
    O_SMERGE,
    O_INLINE,
    O_OOO,
    O_LATE,
    O_DUP,
    O_LSEALED,
    O_SYNC,
    O_CSPACES,
    O_CINV,
    O_REOPEN,
    O_SEED,
    O_PROGRESS,
    O_TSUNIT,
    O_WRONG
};

static const struct option longopts[] = {{"days", 1, 0, O_DAYS},
                                         {"dpus", 1, 0, O_DPUS},
                                         {"events-per-dpu-day", 1, 0, O_EPD},
                                         {"data-dir", 1, 0, O_DIR},
                                         {"keep", 0, 0, O_KEEP},
                                         {"settle", 1, 0, O_SETTLE},
                                         {"seal-rows", 1, 0, O_SROWS},
                                         {"seal-age", 1, 0, O_SAGE},
                                         {"seal-lag", 1, 0, O_SLAG},
                                         {"seal-merge-rows", 1, 0, O_SMERGE},
                                         {"inline-seal", 0, 0, O_INLINE},
                                         {"out-of-order", 1, 0, O_OOO},
                                         {"late", 1, 0, O_LATE},
                                         {"duplicate", 1, 0, O_DUP},
                                         {"late-sealed", 1, 0, O_LSEALED},
                                         {"sync-events", 1, 0, O_SYNC},
                                         {"check-spaces", 1, 0, O_CSPACES},
                                         {"check-invariants", 0, 0, O_CINV},
                                         {"reopen", 0, 0, O_REOPEN},
                                         {"seed", 1, 0, O_SEED},
                                         {"progress", 0, 0, O_PROGRESS},
                                         {"ts-unit", 1, 0, O_TSUNIT},
                                         {"wrong-on-purpose", 0, 0, O_WRONG},
                                         {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};

static bool u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool frac(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0 && v <= 1)) return false;
    *out = v;
    return true;
}

static bool dur(const char *s, int64_t *out)
{
    return ff_duration_parse(s, strlen(s), out) == 0;
}

static bool apply(opts *o, int c, const char *v)
{
    uint64_t n;
    switch (c) {
    case O_DAYS:
        return u64(v, 1, 365, &n) && (o->days = (unsigned)n, true);
    case O_DPUS:
        return u64(v, 1, 10000000, &o->dpus);
    case O_EPD:
        return u64(v, 1, 1000000, &o->per_dpu_day);
    case O_DIR:
        return (o->data_dir = v), true;
    case O_KEEP:
        return (o->keep = true);
    case O_SETTLE:
        return dur(v, &o->settle_us) && o->settle_us > 0;
    case O_SROWS:
        return u64(v, 1, UINT64_MAX / 64, &o->seal_rows);
    case O_SAGE:
        return dur(v, &o->seal_age_us) && o->seal_age_us > 0;
    case O_SLAG:
        return dur(v, &o->seal_lag_us);
    case O_SMERGE:
        return u64(v, 1, UINT64_MAX, &o->seal_merge_rows);
    case O_INLINE:
        return (o->inline_seal = true);
    case O_OOO:
        return frac(v, &o->ooo);
    case O_LATE:
        return frac(v, &o->late);
    case O_DUP:
        return frac(v, &o->dup);
    case O_LSEALED:
        return u64(v, 0, 86400, &n) && (o->late_sealed = (unsigned)n, true);
    case O_SYNC:
        return u64(v, 1, UINT64_MAX, &o->sync_events);
    case O_CSPACES:
        return u64(v, 0, 100000, &n) && (o->check_spaces = (unsigned)n, true);
    case O_CINV:
        return (o->check_invariants = true);
    case O_REOPEN:
        return (o->reopen = true);
    case O_SEED:
        return u64(v, 0, UINT64_MAX, &o->seed);
    case O_PROGRESS:
        return (o->progress = true);
    case O_WRONG:
        return (o->wrong = true);
    case O_TSUNIT:
        o->ts_unit = !strcmp(v, "ms") ? 1000 : !strcmp(v, "us") ? 1 : 0;
        return o->ts_unit != 0;
    }
    return false;
}

/* A new empty data directory: --data-dir (must be absent or empty) or a temp one. */
static char *make_data_dir(const opts *o)
{
    if (o->data_dir) {
        if (mkdir(o->data_dir, 0755) != 0 && errno != EEXIST) return NULL;
        DIR *d = opendir(o->data_dir);
        if (!d) return NULL;
        struct dirent *de;
        bool empty = true;
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) empty = false;
        closedir(d);
        if (!empty) errno = ENOTEMPTY;
        return empty ? ff_xstrdup(o->data_dir) : NULL;
    }
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/ff-week-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(path) ? ff_xstrdup(path) : NULL;
}

/* What is on disk at the end, for scripts that compare it with the files. */
static void final_line(run *R)
{
    disk k;
    ff_engine_stats st;
    disk_sample(R->eo.data_dir, &k);
    ff_engine_stats_get(R->e, &st);
    printf("result final seg_bytes=%" PRIu64 " seg_files=%" PRIu32 " sealed_rows=%" PRIu64
           " segments=%" PRIu32 " bytes_per_row=%.4f log_bytes=%" PRIu64 " log_max=%" PRIu64 "\n",
           k.seg_bytes, k.seg_files, st.sealed_rows, st.segments,
           st.sealed_rows ? (double)k.seg_bytes / (double)st.sealed_rows : 0.0, k.log_bytes,
           R->log_max);
}

static int run_week(const opts *o)
{
    run R = {.o = o};
    char *dir = make_data_dir(o);
    if (!dir) {
        fprintf(stderr, "week: data dir %s: %s\n", o->data_dir ? o->data_dir : "(temp)",
                strerror(errno));
        return 2;
    }
    ff_engine_opts_default(&R.eo);
    R.eo.data_dir = dir;
    R.eo.settle_us = o->settle_us;
    R.eo.seal_rows = o->seal_rows;
    R.eo.seal_age_us = o->seal_age_us;
    R.eo.seal_lag_us = o->seal_lag_us;
    R.eo.seal_merge_rows = o->seal_merge_rows;
    R.eo.seal_async = true;
    R.eo.clock = sim_clock;
    sim_now = START_US;
    rng_state = o->seed;
    shape_init();
    truth_init(&R.t, o);
    R.g = (gen){.o = o, .seq = ff_xcalloc(o->dpus, sizeof(uint16_t))};
    printf("week: %u days, %" PRIu64 " DPUs (%" PRIu64 " spaces), %" PRIu64
           " events per DPU per day = %" PRIu64
           " events, %s timestamps; data dir %s; seal jobs %s\n",
           o->days, o->dpus, R.t.nspaces, o->per_dpu_day, o->days * o->dpus * o->per_dpu_day,
           o->ts_unit == 1 ? "us" : "ms", dir, o->inline_seal ? "inline" : "on a second thread");
    int status = 2;
    double t0 = mono_s();
    ff_engine_recovery rec;
    int rc = ff_engine_open(&R.e, &R.eo, &rec);
    if (rc == 0) rc = build_topology(R.e, o->dpus);
    if (rc < 0) {
        fprintf(stderr, "week: engine: %s %s\n", ff_strerror(rc), R.e ? "" : rec.error);
    } else {
        mem m;
        mem_sample(&m);
        printf("topology: %.1f s, RSS %.1f MiB\n", mono_s() - t0, m.rss / 1024.0);
        fflush(stdout);
        status = simulate(&R);
        if (status == 0) status = verify(&R, START_US + (int64_t)o->days * DAY_US);
    }
    if (R.e) final_line(&R);
    if (R.e) ff_engine_close(R.e);
    truth_free(&R.t);
    free(R.g.seq);
    if (!o->keep) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
    return status;
}

int main(int argc, char **argv)
{
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 256 * 1024); /* footfalld's malloc tuning */
    mallopt(M_ARENA_MAX, 2);
#endif
    opts o = {.days = 7,
              .dpus = 100000,
              .per_dpu_day = 500,
              .settle_us = 5 * FF_MINUTE,
              .seal_rows = FF_SEAL_ROWS,
              .seal_age_us = FF_SEAL_AGE,
              .seal_lag_us = 5 * FF_MINUTE,
              .sync_events = 65536,
              .seed = 1,
              .ooo = 0.01,
              .late = 0.001,
              .dup = 0.001,
              .late_sealed = 2,
              .check_spaces = 16,
              .ts_unit = 1000,
              .progress = isatty(2)};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h') return fputs(usage, stdout), 0;
        if (c == '?' || !apply(&o, c, optarg)) {
            if (c != '?')
                fprintf(stderr, "week: bad value for --%s: %s\n", longopts[c - O_DAYS].name,
                        optarg);
            fputs("(see week --help)\n", stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "week: unexpected argument '%s' (see week --help)\n", argv[optind]);
        return 2;
    }
    return run_week(&o);
}
